//! The default cluster, smaller, is fully connected on every rail and family,
//! with every pod holding its own addresses.

use crate::common::{spec, TestCluster};
use railyard_e2e::{Delegate, Family};

#[test]
fn the_default_cluster_is_fully_connected_with_distinct_addresses() {
    let mut s = spec("e2e-conn", 201);
    s.hosts = 3;
    let c = TestCluster::up(s);
    assert_eq!(c.state.pods.len(), 6);
    c.distinct_addresses();
    c.assert_connected(None);
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
