//! The conformance suite on both implementations, and what only the real
//! client can get wrong: a socket nobody serves, and a server that hangs.

use std::time::{Duration, Instant};

use railyard_podresources::server::TestServer;
use railyard_podresources::{conformance, Error, Kubelet, Memory, PodResources};

#[test]
fn memory_conforms() {
    conformance::run(|pods: &Memory| pods.clone());
}

/// The gRPC client against the test server: the kubelet's protocol, built
/// from its own proto, on a real unix socket.
#[test]
fn kubelet_client_conforms_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let servers = std::sync::Mutex::new(Vec::new());
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::run(|pods: &Memory| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = dir.path().join(format!("kubelet-{i}.sock"));
        let server = TestServer::start(&socket, pods.clone()).unwrap();
        servers.lock().unwrap().push(server);
        Kubelet::new(socket, Duration::from_secs(5))
    });
}

#[test]
fn a_missing_socket_is_a_connect_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let err = Kubelet::new(&socket, Duration::from_secs(5))
        .pod_devices("ml", "p")
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");
}

/// A socket that accepts and never answers: the deadline fails the call.
#[test]
fn a_hung_kubelet_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hung.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let started = Instant::now();
    let err = Kubelet::new(&socket, Duration::from_millis(300))
        .pod_devices("ml", "p")
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { millis: 300, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
