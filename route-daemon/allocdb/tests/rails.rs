//! A pod never silently gets fewer rails or families than this host is planned
//! for: a rail whose NIC lost its address (and whose block the planner then
//! withdrew), lost only its IPv6 address, or is down fails the ADD with an error
//! naming the NIC and what is missing. A pod that asked for a subset still works.

mod common;

use common::*;
use railyard_allocdb::{AllocDb, DbError, NetworkConfig, Options};
use railyard_core::ipam::codes;

fn without(cfg: &NetworkConfig, nic: &str, v6: bool) -> NetworkConfig {
    let mut c = cfg.clone();
    c.blocks
        .retain(|b| !(b.nic.as_str() == nic && (!v6 || b.cidr.addr().is_ipv6())));
    c
}

fn message(e: &DbError) -> String {
    e.to_string()
}

#[tokio::test]
async fn a_rail_withdrawn_from_the_plan_fails_the_add_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    // eth1 lost its address; the planner withdrew the host's rail-1 block.
    db.set_network(without(&two_rails(), "eth1", false))
        .await
        .unwrap();
    let mut lost = nics(&["eth0", "eth1"]);
    lost[1].addresses.clear();
    let e = db.add(&args("c1"), &lost, &[]).await.unwrap_err();
    assert!(
        matches!(&e, DbError::Select(s) if s.code() == codes::NO_NIC),
        "{e}"
    );
    let m = message(&e);
    assert!(m.contains("eth1") && m.contains("no IPv4 block"), "{m}");
    assert_eq!(db.stats().attachments, 0, "nothing allocated");
    // A pod that asks for one NIC is served from the rail that works.
    let mut one = args("c2");
    one.selection.nics = Some(1);
    assert_eq!(db.add(&one, &lost, &[]).await.unwrap().len(), 1);
    // The address and the block come back: every rail again.
    db.set_network(two_rails()).await.unwrap();
    let all = db
        .add(&args("c1"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn a_nic_without_its_planned_address_fails_before_the_plan_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let mut lost = nics(&["eth0", "eth1"]);
    lost[1].addresses.clear();
    let e = db.add(&args("c1"), &lost, &[]).await.unwrap_err();
    let m = message(&e);
    assert!(
        m.contains("eth1") && m.contains("does not hold 10.0.1.1"),
        "{m}"
    );
}

#[tokio::test]
async fn dual_stack_lost_ipv6_on_one_rail_fails_the_add() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), dual_stack()).await;
    db.set_network(without(&dual_stack(), "eth1", true))
        .await
        .unwrap();
    let e = db
        .add(&args("c1"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap_err();
    let m = message(&e);
    assert!(m.contains("eth1") && m.contains("no IPv6 block"), "{m}");
    db.set_network(dual_stack()).await.unwrap();
    let got = db
        .add(&args("c1"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert_eq!(addrs(&got).len(), 4, "both rails, both families");
}

#[tokio::test]
async fn a_down_link_fails_the_default_add_and_the_next_one_gets_every_rail() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let mut down = nics(&["eth0", "eth1"]);
    down[1].up = false;
    let e = db.add(&args("c1"), &down, &[]).await.unwrap_err();
    assert!(message(&e).contains("eth1 (down)"), "{e}");
    let got = db
        .add(&args("c1"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
}

/// What the host is owed survives a restart after compaction (it is in the
/// snapshot), so a daemon restarted while a rail is broken still fails the ADD.
#[tokio::test]
async fn the_rails_owed_survive_a_restart_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_with(dir.path(), two_rails()).await;
        // Only the memory says rail 1 is owed now; the snapshot must keep it.
        db.set_network(without(&two_rails(), "eth1", false))
            .await
            .unwrap();
        db.compact().await.unwrap();
    }
    let db = AllocDb::open(dir.path(), Options::default()).unwrap();
    let e = db
        .add(&args("c1"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap_err();
    assert!(message(&e).contains("eth1"), "{e}");
    // A NIC removed from the host (not just broken) is not owed any more.
    let got = db.add(&args("c1"), &nics(&["eth0"]), &[]).await.unwrap();
    assert_eq!(got.len(), 1);
}
