//! Routed rails end to end (`docs/design/routed-rails.md`): a leaf per rail
//! running BIRD, each host's rail NIC on a /31 of its own to it, a BIRD per
//! host whose configuration the host's route-daemon writes. Pods on every
//! host reach pods on every other host on every rail through the leaves; a
//! leaf restart reconverges; a host leaving is withdrawn from the leaves and
//! its peers' tables; IPv6 only and dual stack; a leaf offering routes
//! that are not railyard's (a rogue or misconfigured one) is refused by the
//! hosts' filters; a dead daemon's blocks are withdrawn by its BIRD guard
//! when the grace ends, and a restarted one's are not. The times are
//! printed (`--nocapture`).
//!
//!     sudo -E cargo test -p railyard-e2e --test e2e -- routed --nocapture

use std::time::{Duration, Instant};

use railyard_core::route_table_for;
use railyard_e2e::cluster::Family;

use crate::common::{self, TestCluster};

/// Whether host `i`'s table holds a route to any block of host `peer`.
fn routes_to(c: &mut TestCluster, i: usize, peer: usize) -> bool {
    let spec = c.spec().clone();
    let table = route_table_for(&spec.network).to_string();
    let have = railyard_e2e::cluster::cmd::ip_in(
        &spec.host(i),
        &["route", "show", "table", &table, "proto", "167"],
    )
    .unwrap_or_default();
    (0..spec.rails).any(|j| {
        c.leaf_wants(&[peer], j)
            .unwrap_or_default()
            .iter()
            .filter_map(|w| w.split(' ').next())
            .any(|block| have.lines().any(|l| l.starts_with(&format!("{block} "))))
    })
}

#[test]
fn routed_fabric_pods_reach_every_host_through_the_leaves() {
    let mut s = common::spec("routed", 29);
    s.routed = true;
    s.hosts = 3;
    let mut c = TestCluster::up(s);
    // `up` waited for the daemons' routes through their leaves and for every
    // leaf to learn every host's block of its rail.
    c.assert_connected(None);

    // A leaf restart: its sessions come back and it learns every block again.
    let t = Instant::now();
    c.restart_leaf(0).expect("restart leaf 0");
    let back = c
        .wait_leaves(&[0, 1, 2], &[], Duration::from_secs(30))
        .expect("leaf 0 learns the blocks again");
    eprintln!("leaf restart: leaf 0 held every block again {:?} after it was killed ({back:?} of waiting)", t.elapsed());
    c.assert_connected(None);

    // A host leaving: its daemon and its BIRD stop, its lease is revoked.
    // Both times count from the start of the leave (stopping the daemon
    // included).
    let t = Instant::now();
    c.leave(2).expect("leave");
    c.wait_leaves(&[0, 1], &[2], Duration::from_secs(20))
        .expect("the leaves withdraw the host's blocks");
    let leaves = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    while routes_to(&mut c, 0, 2) || routes_to(&mut c, 1, 2) {
        assert!(
            Instant::now() < deadline,
            "peers kept their routes to the departed host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let peers = t.elapsed();
    eprintln!("host left: the leaves withdrew its blocks after {leaves:?}, its peers' routes were gone after {peers:?}");
    // The others keep their routes, through their leaves.
    c.wait_converged(&[0, 1], Duration::from_secs(20))
        .expect("the remaining hosts' routes");
}

/// IPv6 only and dual stack: the links are /127s, one BGP session per link
/// and family, a source table and rule per NIC address.
fn pods_reach_every_host(name: &str, mgmt_id: u8, family: Family) {
    let mut s = common::spec(name, mgmt_id);
    s.routed = true;
    s.family = family;
    let mut c = TestCluster::up(s);
    c.assert_connected(None);
    // Every leaf holds every host's blocks of its rail, in each family.
    for j in 0..c.spec().rails {
        let learned = c.leaf_routes(j).expect("leaf routes");
        let want = c.leaf_wants(&[0, 1], j).expect("plan");
        assert_eq!(want.len(), if family == Family::Dual { 4 } else { 2 });
        for w in want {
            assert!(learned.contains(&w), "leaf{j} lacks {w}: {learned}");
        }
    }
}

#[test]
fn routed_fabric_ipv6_pods_are_connected() {
    pods_reach_every_host("routed-v6", 28, Family::V6);
}

#[test]
fn routed_fabric_dual_stack_pods_are_connected() {
    pods_reach_every_host("routed-dual", 27, Family::Dual);
}

/// `Import updates:` of a host's session: received, rejected, filtered,
/// ignored, accepted.
fn import_updates(c: &TestCluster, i: usize, protocol: &str) -> [u64; 5] {
    let out = c
        .host_birdc(i, &["show", "protocols", "all", protocol])
        .expect("birdc");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("Import updates:"))
        .unwrap_or_else(|| panic!("no import statistics: {out}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(2)
        .filter_map(|w| w.parse().ok())
        .collect();
    n.try_into().expect("five counters")
}

#[test]
fn a_rogue_leafs_routes_are_refused_by_every_host() {
    let mut s = common::spec("routed-rogue", 26);
    s.routed = true;
    let mut c = TestCluster::up(s);
    let before: Vec<[u64; 5]> = (0..2)
        .map(|i| import_updates(&c, i, "ry_rail0_v4"))
        .collect();
    // Leaf 0 announces a default, a foreign prefix, a /25 inside rail 0's
    // range, rail 1's range and the whole pod subnet.
    let rogue: Vec<String> = [
        "0.0.0.0/0",
        "10.99.0.0/16",
        "192.168.0.128/25",
        "192.168.64.0/18",
        "192.168.0.0/16",
    ]
    .map(String::from)
    .to_vec();
    c.offer_from_leaf(0, &rogue).expect("leaf 0 turns rogue");
    for (i, before) in before.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = import_updates(&c, i, "ry_rail0_v4");
            if now[2] >= before[2] + rogue.len() as u64 {
                assert_eq!(
                    now[4], before[4],
                    "host {i} accepted a rogue route: {now:?}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "host {i}: {now:?}, before {before:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let host = c.spec().host(i);
        let bird_routes = railyard_e2e::cluster::cmd::ip_in(
            &host,
            &["route", "show", "table", "all", "proto", "bird"],
        )
        .expect("ip route");
        assert_eq!(bird_routes, "", "{host}'s kernel took routes from BIRD");
        let table = c
            .host_birdc(i, &["show", "route", "protocol", "ry_rail0_v4"])
            .expect("birdc");
        assert!(!table.contains("0.0.0.0/0"), "{host}: {table}");
    }
    c.assert_connected(None);
}

/// One host joining: the time until every peer routes to its blocks (through
/// its own leaf on a routed fabric, via the new host's NIC on l2) and, on a
/// routed fabric, until every leaf learned them. `RAILYARD_JOIN_BENCH_HOSTS`
/// hosts are up before the join (default 6); `docs/benchmarks.md` has the
/// figures at the largest size measured.
fn join(name: &str, mgmt_id: u8, routed: bool, hosts: usize) -> (Duration, Option<Duration>) {
    let mut s = common::spec(name, mgmt_id);
    s.routed = routed;
    s.hosts = hosts;
    s.pods = 0;
    let mut c = TestCluster::up(s);
    let t = Instant::now();
    let joined = c.add_host().expect("a host joins");
    let all: Vec<usize> = (0..=joined).collect();
    c.wait_converged(&all, Duration::from_secs(60))
        .expect("every peer routes to the new host");
    let routes = t.elapsed();
    let leaves = routed.then(|| {
        c.wait_leaves(&all, &[], Duration::from_secs(60))
            .expect("every leaf learns the new host's blocks");
        t.elapsed()
    });
    (routes, leaves)
}

#[test]
fn a_join_reaches_every_peer_through_the_leaves() {
    let hosts = std::env::var("RAILYARD_JOIN_BENCH_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let (l2, _) = join("routed-join-l2", 25, false, hosts);
    let (routed, leaves) = join("routed-join", 24, true, hosts);
    let leaves = leaves.expect("routed");
    eprintln!(
        "join into {hosts} hosts x 2 rails: l2 every peer's route {l2:?}; routed every peer's route through its leaf {routed:?}, every leaf holding the new blocks {leaves:?}"
    );
}

/// A route-daemon that dies while its BIRD lives (the BIRD guard's case,
/// `route-daemon/src/bgp/guard`): a daemon restart (an upgrade) withdraws
/// nothing from the leaves; a daemon dead for the planner's grace has its
/// blocks withdrawn by its guard then, not before (after the grace the
/// planner may give them to another host); the daemon back announces them
/// again.
#[test]
fn a_dead_daemons_blocks_leave_the_leaves_when_the_grace_ends() {
    let grace = Duration::from_secs(6);
    let mut s = common::spec("routed-guard", 23);
    s.routed = true;
    s.grace = format!("{}s", grace.as_secs());
    let mut c = TestCluster::up(s);
    c.assert_connected(None);
    let rails = c.spec().rails;
    let blocks: Vec<(usize, String)> = (0..rails)
        .flat_map(|j| {
            let want = c.leaf_wants(&[1], j).expect("plan");
            want.into_iter().map(move |w| (j, w))
        })
        .collect();
    assert_eq!(blocks.len(), rails, "one block of host 1 per rail");
    let held = |c: &TestCluster| {
        blocks
            .iter()
            .filter(|(j, w)| c.leaf_routes(*j).unwrap_or_default().contains(w.as_str()))
            .count()
    };
    assert_eq!(held(&c), blocks.len());

    // A restart withdraws nothing: BIRD and its sessions stay.
    c.stop_daemon(1);
    c.start_daemon(1).expect("daemon back");
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(held(&c), blocks.len(), "a daemon restart withdrew a block");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Dead for good: announced through half the grace, withdrawn after it.
    let t = Instant::now();
    c.crash_daemon(1);
    std::thread::sleep(grace / 2);
    assert_eq!(held(&c), blocks.len(), "withdrawn before the grace ended");
    let deadline = t + grace + Duration::from_secs(10);
    while held(&c) > 0 {
        assert!(
            Instant::now() < deadline,
            "the leaves still hold the dead daemon's blocks {:?} after it died (grace {grace:?})",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = t.elapsed();
    eprintln!(
        "dead daemon: the leaves withdrew its blocks {gone:?} after it died (grace {grace:?})"
    );
    // The last beat is about a second before the kill (more if the loop
    // was starved of CPU); "held at half the grace" above is the real check.
    assert!(gone >= grace - Duration::from_secs(2), "{gone:?}");

    // The daemon back: its guard starts BIRD, the leaves learn its blocks.
    let t = Instant::now();
    c.start_daemon(1).expect("daemon back");
    c.wait_leaves(&[0, 1], &[], Duration::from_secs(60))
        .expect("announced again");
    eprintln!(
        "daemon back: every leaf holds its blocks again {:?} after it started",
        t.elapsed()
    );
}
