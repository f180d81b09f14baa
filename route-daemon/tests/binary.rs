//! The `railyard-route-daemon` binary: flags, the metrics endpoint, and a clean
//! exit on SIGTERM while still waiting for etcd. No root needed: without etcd
//! the daemon never gets as far as the kernel.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_railyard-route-daemon");

#[test]
fn help_lists_the_flags() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--node-name",
        "--etcd-endpoints",
        "--etcd-ca",
        "--lease-ttl",
        "--routing",
        "--include",
        "--exclude",
        "--static-inventory",
        "--metrics-addr",
        "--log-json",
        "--kubernetes",
        "--kubeconfig",
        "--leak-grace",
        "--leak-sweep-every",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

/// Runs the binary to completion, killing it (and failing) after 10 s.
fn run(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("railyard-route-daemon {args:?} still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn bad_flags_fail_with_a_readable_message() {
    let out = run(&["--metrics-addr", "nowhere"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics-addr") && err.contains("nowhere"),
        "{err}"
    );
    let out = run(&[
        "--node-name",
        "no/slashes",
        "--etcd-endpoints",
        "http://127.0.0.1:1",
        "--metrics-addr",
        "off",
    ]);
    assert!(
        !out.status.success(),
        "an invalid node name must stop the daemon"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/slashes"), "{err}");
}

#[test]
fn a_kubeconfig_that_cannot_be_read_stops_the_daemon() {
    // The leak sweep's configuration is checked before anything starts, as a
    // bad flag is: a daemon that silently ran without it would leak.
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("ipam.sock");
    let out = run(&[
        "--node-name",
        "h1",
        "--etcd-endpoints",
        "http://127.0.0.1:1",
        "--metrics-addr",
        "off",
        "--ipam-socket",
        socket.to_str().expect("utf-8 path"),
        "--state-dir",
        dir.path().to_str().expect("utf-8 path"),
        "--kubeconfig",
        "/nonexistent/railyard.kubeconfig",
    ]);
    assert!(
        !out.status.success(),
        "an unreadable kubeconfig must stop the daemon"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("leak sweep") && text.contains("/nonexistent/railyard.kubeconfig"),
        "{text}"
    );
    assert!(!socket.exists(), "nothing was served");
}

fn free_port() -> u16 {
    railyard_test_support::free_port()
}

fn scrape(port: u16) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn serves_metrics_while_waiting_for_etcd_and_exits_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--node-name", "node-1"])
        // Nothing listens on port 1: the daemon keeps retrying.
        .args(["--etcd-endpoints", "http://127.0.0.1:1"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .arg("--log-json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let start = Instant::now();
    let body = loop {
        if let Some(b) = scrape(port) {
            break b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no metrics endpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(r#"railyard_route_daemon_registration_state{state="Unregistered"} 1"#),
        "{body}"
    );

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("etcd not reachable yet"), "{log}");
    assert!(log.lines().all(|l| l.starts_with('{')), "--log-json: {log}");
}
