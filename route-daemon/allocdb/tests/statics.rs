//! Static addresses (the pod's `ips`): taken exactly, durably and
//! idempotently in the block that holds them; refused, naming the address and
//! its holder, when taken or outside the pod's blocks, with nothing allocated.

mod common;

use std::net::IpAddr;

use common::*;
use railyard_allocdb::{AddArgs, AllocDb, DbError};

fn with_ips(c: &str, ips: &[&str]) -> AddArgs {
    let mut a = args(c);
    a.selection.ips = ips.iter().map(|i| i.parse().unwrap()).collect();
    a
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_static_address_is_taken_exactly_the_other_rails_get_free_ones_and_it_survives_a_restart()
{
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), dual_stack()).await;
    let two = nics(&["eth0", "eth1"]);
    let got = db
        .add(
            &with_ips("c1", &["192.168.65.77", "fd00:0:0:1::99"]),
            &two,
            &[],
        )
        .await
        .unwrap();
    let held = addrs(&got);
    assert!(held.contains(&ip("192.168.65.77")) && held.contains(&ip("fd00:0:0:1::99")));
    assert_eq!(held.len(), 4, "{held:?}");
    // The same ADD again: the same answer, nothing new held.
    let again = db
        .add(
            &with_ips("c1", &["192.168.65.77", "fd00:0:0:1::99"]),
            &two,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(addrs(&again), held);
    // A dynamic pod never gets it.
    for c in ["d1", "d2", "d3"] {
        let other = addrs(&db.add(&args(c), &two, &[]).await.unwrap());
        assert!(!other.iter().any(|a| held.contains(a)), "{other:?}");
    }
    assert_consistent(&db).await;
    drop(db);

    // Reopened from the log: still held by c1.
    let db = AllocDb::open(dir.path(), opts()).unwrap();
    db.set_network(dual_stack()).await.unwrap();
    let e = db
        .add(&with_ips("c9", &["192.168.65.77"]), &two, &[])
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(
        matches!(e, DbError::Invalid(_))
            && m.contains("192.168.65.77")
            && m.contains("container c1"),
        "{m}"
    );
    assert_consistent(&db).await;
}

#[tokio::test]
async fn refusals_name_the_address_and_leave_nothing_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let two = nics(&["eth0", "eth1"]);
    let before = db.stats();
    // Outside every block of the pod.
    let e = db
        .add(&with_ips("c1", &["192.168.65.5", "10.9.9.9"]), &two, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("10.9.9.9") && e.contains("192.168.1.0/24 (eth0)"),
        "{e}"
    );
    // The block's gateway (its first address) is reserved.
    let e = db
        .add(&with_ips("c1", &["192.168.1.1"]), &two, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("192.168.1.1"), "{e}");
    // Two addresses for one family of one rail: the second has no block left.
    let e = db
        .add(&with_ips("c1", &["192.168.1.7", "192.168.1.8"]), &two, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("192.168.1.8") && e.contains("second address"),
        "{e}"
    );
    // On a rail the pod does not get (it asked for eth0 only).
    let mut only0 = with_ips("c1", &["192.168.65.5"]);
    only0.selection.masters = vec!["eth0".into()];
    let e = db.add(&only0, &two, &[]).await.unwrap_err().to_string();
    assert!(e.contains("192.168.65.5") && e.contains("masters"), "{e}");

    assert_eq!(db.stats().attachments, before.attachments);
    assert!(assert_consistent(&db).await.is_empty());
    // Nothing was left half-taken: every one of those addresses can be had.
    let ok = db
        .add(&with_ips("c2", &["192.168.1.7", "192.168.65.5"]), &two, &[])
        .await
        .unwrap();
    assert_eq!(addrs(&ok), [ip("192.168.1.7"), ip("192.168.65.5")]);
}
