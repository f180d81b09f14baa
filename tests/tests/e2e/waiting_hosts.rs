//! A host the planner left unplanned (no free host index) is planned as soon
//! as an index frees, without a planner restart, on the real cluster: real
//! etcd, the planner binary, route-daemons registering real NICs.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{spec, TestCluster, CONVERGE};

/// A second network with room for two hosts only (hostBlock 1), on its own
/// range so it overlaps nothing.
const TINY: &str = r#"{
  "apiVersion": "multinic.fms.io/v1",
  "kind": "MultiNicNetwork",
  "metadata": {"name": "tiny"},
  "spec": {"subnet": "10.77.0.0/24", "ipam": {"type": "multi-nic-ipam", "hostBlock": 1, "interfaceBlock": 1}}
}"#;

#[test]
fn a_waiting_host_is_planned_when_a_departed_hosts_index_frees() {
    let mut s = spec("e2e-waiting", 212);
    s.hosts = 3;
    s.pods = 0;
    let mut c = TestCluster::up(s);
    let file = c.spec().state_dir.join("tiny.json");
    std::fs::write(&file, TINY).expect("write manifest");
    let out = Command::new(c.spec().bin_dir.join("railyard"))
        .args(["apply", "-f"])
        .arg(&file)
        .args(["--etcd-endpoints", &c.spec().local_endpoint()])
        .output()
        .expect("railyard apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Two of three hosts get the two indexes; the third waits.
    let planned = |c: &mut TestCluster| -> Vec<String> {
        c.observer()
            .expect("observer")
            .plan("tiny")
            .expect("plan")
            .map(|p| {
                p.hosts
                    .iter()
                    .filter(|(_, h)| h.departed_at.is_none())
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let start = Instant::now();
    while planned(&mut c).len() < 2 {
        assert!(start.elapsed() < CONVERGE, "tiny never planned two hosts");
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = planned(&mut c);
    let waiting = c.spec().host(2);
    assert!(!first.contains(&waiting), "{first:?}");

    // Host 0 leaves for good: after the grace period (2 s) its index frees,
    // and the waiting host takes it with no restart of anything.
    c.leave(0).expect("host 0 leaves");
    let start = Instant::now();
    loop {
        let now = planned(&mut c);
        if now.contains(&waiting) {
            assert!(!now.contains(&c.spec().host(0)), "{now:?}");
            break;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "the waiting host was never planned: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
