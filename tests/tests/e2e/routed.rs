//! Routed rails end to end (`docs/design/routed-rails.md`): a leaf per rail
//! running BIRD, each host's rail NIC on a /31 of its own to it, a BIRD per
//! host whose configuration the host's route-daemon writes. Pods on every
//! host reach pods on every other host on every rail through the leaves; a
//! leaf restart reconverges; a host leaving is withdrawn from the leaves and
//! its peers' tables. The times are printed (`--nocapture`).
//!
//!     sudo -E cargo test -p railyard-e2e --test e2e -- routed --nocapture

use std::time::{Duration, Instant};

use railyard_core::route_table_for;

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
