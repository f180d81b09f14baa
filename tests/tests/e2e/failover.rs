//! Two planners: killing the leader hands the plan to the standby, which keeps
//! every host's index and blocks.

use std::time::{Duration, Instant};

use crate::common::{spec, TestCluster, CONVERGE};

#[test]
fn a_killed_leader_is_replaced_and_nothing_is_renumbered() {
    let mut s = spec("e2e-failover", 206);
    s.planners = 2;
    s.pods = 1;
    let mut c = TestCluster::up(s);
    let before = c.wait_converged(&[0, 1], CONVERGE).expect("plan");
    let prefix = c.spec().prefix.clone();
    let leader = c.observer().unwrap().leader().unwrap().expect("a leader");
    let n: usize = leader
        .strip_prefix(&format!("{prefix}planner-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("leader {leader:?} is not one of ours"));
    c.kill_planner(n);

    // The standby takes over once the dead leader's lease expires.
    let start = Instant::now();
    let new_leader = loop {
        match c.observer().unwrap().leader() {
            Ok(Some(l)) if l != leader => break l,
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no new leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "{new_leader} took over from {leader} after {:?}",
        start.elapsed()
    );

    // The new leader plans: a host joins, and everyone else keeps its blocks.
    let joined = c.add_host().expect("join");
    let after = c
        .wait_converged(&[0, 1, joined], CONVERGE)
        .expect("plan by the new leader");
    for (name, host) in &before.hosts {
        assert_eq!(after.hosts[name].index, host.index, "{name} renumbered");
        assert_eq!(
            after.hosts[name].blocks, host.blocks,
            "{name}'s blocks changed"
        );
    }
    c.prepare_hosts(&[joined]).expect("prepare");
    c.attach_pods(&[(joined, 0)], 1)
        .expect("pod on the new host");
    c.wait_mirrored(CONVERGE).expect("mirrored");
    c.distinct_addresses();
    c.assert_connected(None);
}
