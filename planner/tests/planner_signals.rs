//! `railyard-planner` stops on SIGTERM and SIGINT at any time, also while it is
//! still waiting for etcd at startup (a pod being deleted must not hang until
//! its kill grace period runs out).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stops_on(signal: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_railyard-planner"))
        .args([
            // Nothing listens there: the planner keeps retrying.
            "--etcd-endpoints",
            "http://127.0.0.1:1",
            "--metrics-addr",
            "off",
            "--kubernetes",
            "off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("railyard-planner starts");
    // Long enough to be in the retry loop (and to have installed its handlers).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "the planner must still be waiting for etcd"
    );
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll") {
            assert!(status.success(), "exit after {signal}: {status}");
            return;
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("railyard-planner ignored SIG{signal} while waiting for etcd");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_a_planner_waiting_for_etcd() {
    stops_on("TERM");
}

#[test]
fn sigint_stops_a_planner_waiting_for_etcd() {
    stops_on("INT");
}
