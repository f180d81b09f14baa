//! railyard's Kubernetes controller against a real API server: the local control
//! plane of `railyard_e2e::kube` (etcd, kube-apiserver with RBAC,
//! kube-controller-manager's garbage collector), the real `railyard-planner
//! --kubernetes` with a token of the ServiceAccount in deploy/kubernetes/rbac.yaml,
//! and kubectl. One control plane and one planner serve every test of this binary
//! (each test uses its own namespaces and object names); the RBAC test starts a
//! second plane because its crippled controller must not touch the others'
//! objects.
//!
//! Needs `make deps` (the upstream binaries) and `cargo build --bins`; fails,
//! never skips, without them. Root only for `multus` (the demo's core path in
//! network namespaces); the others need none.

mod check_in_cluster;
mod common;
mod crds;
mod demo;
mod leak_sweep;
mod loud;
mod multus;
mod nads;
mod rbac;
mod routed_rails;
mod scale;
mod status_views;
