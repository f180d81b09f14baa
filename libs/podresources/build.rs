//! Generates the pod-resources client (and, for the `server` feature, the
//! kubelet's side) from the vendored kubelet proto. protoc comes from
//! `make deps` (protobuf-compiler), as for etcd-client.

fn main() -> std::io::Result<()> {
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(server)
        .compile_protos(&["proto/kubelet/podresources/v1/api.proto"], &["proto"])
}
