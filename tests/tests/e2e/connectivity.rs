//! The default cluster, smaller, is fully connected on every rail and family,
//! with every pod holding its own addresses.

use crate::common::{spec, TestCluster};
use railyard_e2e::{Cluster, Delegate, Error, Family};

#[test]
fn the_default_cluster_is_fully_connected_with_distinct_addresses() {
    let mut s = spec("e2e-conn", 201);
    s.hosts = 3;
    let mut c = TestCluster::up(s.clone());
    assert_eq!(c.state.pods.len(), 6);
    c.distinct_addresses();
    c.assert_connected(None);

    // A second `up` on the running cluster refuses and leaves it alone.
    match Cluster::up(s.clone(), &mut |_| {}) {
        Err(Error::AlreadyRunning(m)) => assert!(m.contains("etcd"), "{m}"),
        other => panic!("second up: {other:?}"),
    }
    assert!(c.processes().iter().all(|(_, _, alive)| *alive));

    // `down` leaves nothing behind.
    let problems = c.down();
    assert!(problems.is_empty(), "{problems:?}");
    let netns = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_else(|_| Vec::new());
    let left: Vec<&String> = netns.iter().filter(|n| n.starts_with(&s.prefix)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(!std::path::Path::new("/sys/class/net")
        .join(s.mgmt_bridge())
        .exists());
    assert!(!s.state_dir.exists(), "state dir left");
    assert!(
        !s.socket(0).parent().expect("dir").exists(),
        "socket dir left"
    );
    assert!(c.processes().iter().all(|(_, _, alive)| !*alive));
}

#[test]
fn dual_stack_pods_reach_each_other_over_both_families() {
    let mut s = spec("e2e-dual", 202);
    s.family = Family::Dual;
    let c = TestCluster::up(s);
    let addrs = c.distinct_addresses();
    assert!(addrs.iter().any(|a| a.is_ipv6()) && addrs.iter().any(|a| a.is_ipv4()));
    c.assert_connected(None);
}

/// IPv6-only rails, and macvlan instead of ptp: the pods sit on the rail's L2
/// and reach the host through its gateway shim.
#[test]
fn ipv6_only_macvlan_pods_are_connected() {
    let mut s = spec("e2e-v6mv", 203);
    s.family = Family::V6;
    s.delegate = Delegate::Macvlan;
    let c = TestCluster::up(s);
    let addrs = c.distinct_addresses();
    assert!(addrs.iter().all(|a| a.is_ipv6()), "{addrs:?}");
    c.assert_connected(None);
}
