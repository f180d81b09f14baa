//! A rail NIC that loses its address for a moment (issue 14, item 6): within the
//! planner's `--nic-grace` its host keeps the block, peers keep their routes and
//! nothing is renumbered; past it, the block is withdrawn on the peers, and the
//! NIC's return brings back the same block.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use railyard_core::{route_table_for, HostPlan, Plan};
use railyard_e2e::cluster::topology::{self, kernel_routes};
use railyard_e2e::Cluster;

use crate::common::{spec, TestCluster, CONVERGE};

/// The host whose NIC flaps, and the rail.
const HOST: usize = 1;
const RAIL: usize = 1;

/// Removes (`"del"`) or re-adds (`"add"`) host `i`'s addresses on rail `j`.
fn rail_addresses(c: &Cluster, op: &str, i: usize, j: usize) {
    topology::rail_addresses(c.spec(), op, i, j)
        .unwrap_or_else(|e| panic!("ip addr {op} on host {i} rail {j}: {e}"));
}

fn plan(c: &mut Cluster) -> Plan {
    let network = c.spec().network.clone();
    c.observer()
        .expect("observer")
        .plan(&network)
        .expect("read the plan")
        .expect("a plan")
}

/// Every host's (index, blocks): what must not change across a short flap.
fn numbering(p: &Plan) -> BTreeMap<String, (u32, Vec<railyard_core::Block>)> {
    p.hosts
        .iter()
        .map(|(n, h)| (n.clone(), (h.index, h.blocks.clone())))
        .collect()
}

fn host_plan<'a>(p: &'a Plan, c: &Cluster, i: usize) -> &'a HostPlan {
    p.hosts.get(&c.spec().host(i)).expect("host planned")
}

/// Waits until every host's routes match the plan, the plan holds no
/// missing-NIC mark and its numbering is `want` (the NIC is registered again);
/// returns that plan.
fn wait_numbering(c: &mut Cluster, want: &Plan) -> Plan {
    let start = Instant::now();
    loop {
        let p = c.wait_converged(&[0, 1], CONVERGE).expect("converged");
        let unmarked = p.hosts.values().all(|h| h.nic_missing_since.is_empty());
        if unmarked && numbering(&p) == numbering(want) {
            return p;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "after the NIC came back the plan is {:?}, not {:?}",
            p.hosts,
            want.hosts
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_three_second_nic_flap_withdraws_no_route_and_renumbers_nothing() {
    let mut s = spec("e2e-nic-flap", 236);
    s.nic_grace = Some("30s".into());
    let mut c = TestCluster::up(s);
    c.assert_connected(None);
    let before = c.wait_converged(&[0, 1], CONVERGE).expect("converged");
    let table = route_table_for(&c.spec().network);
    let peer_routes: BTreeSet<_> = kernel_routes(c.spec(), 0, table);
    let flapping = c.spec().host(HOST);
    let nic = format!("rail{RAIL}");

    rail_addresses(&c, "del", HOST, RAIL);
    let start = Instant::now();
    let (mut dropped, mut marked) = (false, false);
    while start.elapsed() < Duration::from_secs(3) {
        let held = kernel_routes(c.spec(), 0, table);
        let lost: Vec<_> = peer_routes.difference(&held).collect();
        assert!(
            lost.is_empty(),
            "host 0 lost routes {lost:?} {:?} into a 3 s flap of {flapping}'s {nic}",
            start.elapsed()
        );
        let reg = c
            .observer()
            .expect("observer")
            .registration(&flapping)
            .expect("read the registration");
        // The NIC is still listed, with no address to put it on a rail.
        dropped |= reg.is_some_and(|r| {
            r.nics
                .iter()
                .all(|n| n.name != nic || n.addresses.is_empty())
        });
        let p = plan(&mut c);
        marked |= !host_plan(&p, &c, HOST).nic_missing_since.is_empty();
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without these the test would prove nothing: the NIC did drop out.
    assert!(dropped, "{flapping}'s registration never lost {nic}");
    assert!(
        marked,
        "the plan never marked {flapping}'s {nic} block missing"
    );
    rail_addresses(&c, "add", HOST, RAIL);

    // A short flap renumbers nothing.
    wait_numbering(&mut c, &before);
    assert_eq!(kernel_routes(c.spec(), 0, table), peer_routes);
    // The flapping host's own routes over the NIC are back and pods reconnect.
    c.assert_connected(None);
}

#[test]
fn a_nic_flap_longer_than_the_grace_withdraws_the_block_on_peers() {
    let mut s = spec("e2e-nic-gone", 237);
    s.nic_grace = Some("3s".into());
    let mut c = TestCluster::up(s);
    let before = c.wait_converged(&[0, 1], CONVERGE).expect("converged");
    let held = host_plan(&before, &c, HOST).clone();
    let on_rail: BTreeSet<String> = held
        .blocks
        .iter()
        .filter(|b| b.interface as usize == RAIL)
        .map(|b| b.cidr.to_string())
        .collect();
    assert!(!on_rail.is_empty(), "{held:?} has a block on rail {RAIL}");
    let table = route_table_for(&c.spec().network);
    let routes_to = |c: &Cluster| -> Vec<String> {
        kernel_routes(c.spec(), 0, table)
            .into_iter()
            .filter(|(dst, _, _)| on_rail.contains(dst))
            .map(|(dst, _, _)| dst)
            .collect()
    };
    assert_eq!(routes_to(&c).len(), on_rail.len(), "host 0 routes there");

    rail_addresses(&c, "del", HOST, RAIL);
    let start = Instant::now();
    while !routes_to(&c).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "host 0 still routes to {on_rail:?} {:?} after the NIC went",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    // The grace is counted in whole seconds: not before 2 s, never at once.
    assert!(
        took >= Duration::from_secs(2),
        "withdrawn after {took:?}, inside the 3 s grace"
    );
    println!("block on rail {RAIL} withdrawn on the peer after {took:?}");
    let p = plan(&mut c);
    let withdrawn = host_plan(&p, &c, HOST);
    assert_eq!(withdrawn.index, held.index, "the host keeps its index");
    assert!(
        withdrawn
            .blocks
            .iter()
            .all(|b| b.interface as usize != RAIL),
        "{withdrawn:?}"
    );
    assert!(withdrawn.nic_missing_since.is_empty());

    rail_addresses(&c, "add", HOST, RAIL);
    // The NIC's return brings back the same block.
    wait_numbering(&mut c, &before);
    c.assert_connected(None);
}
