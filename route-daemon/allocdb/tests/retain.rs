//! StatefulSet pods keep their addresses across a delete and recreate on the
//! same host: the DEL leaves a retained attachment holding them (no other pod
//! gets them, CNI GC leaves it), the next ADD of that name takes them over,
//! durably across a restart. Other pods' DELs free as before.

mod common;

use std::net::IpAddr;

use common::*;
use railyard_allocdb::{is_retained, retained_id, AddArgs, AllocDb, STATEFUL_SET};

fn sts_pod(c: &str, name: &str) -> AddArgs {
    let mut a = args(c);
    a.pod.namespace = "db".into();
    a.pod.name = name.into();
    a.pod.uid = format!("uid-{c}");
    a.pod.controller = Some(STATEFUL_SET.into());
    a
}

#[tokio::test]
async fn a_statefulset_pod_recreated_on_its_host_gets_its_addresses_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), dual_stack()).await;
    let two = nics(&["eth0", "eth1"]);
    let first = addrs(&db.add(&sts_pod("c1", "pg-0"), &two, &[]).await.unwrap());
    assert_eq!(first.len(), 4);
    db.del(&id("c1")).await.unwrap();
    let kept = retained_id("net1", "db", "pg-0", "net1");
    let all = db.attachments(None).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].id, kept);
    assert!(is_retained(&all[0].id) && all[0].pod.uid.is_empty());
    // Nobody else gets them meanwhile, and GC (which never lists it) keeps them.
    for c in ["d1", "d2", "d3"] {
        let got: Vec<IpAddr> = addrs(&db.add(&args(c), &two, &[]).await.unwrap());
        assert!(!got.iter().any(|a| first.contains(a)), "{got:?}");
    }
    for c in ["d1", "d2", "d3"] {
        db.del(&id(c)).await.unwrap();
    }
    assert_eq!(db.gc("net1", &[]).await.unwrap(), 0);
    assert_consistent(&db).await;
    drop(db);

    // After a restart, the recreated pod (another container, another UID)
    // takes them over; the retained attachment is gone.
    let db = AllocDb::open(dir.path(), opts()).unwrap();
    db.set_network(dual_stack()).await.unwrap();
    let again = addrs(&db.add(&sts_pod("c2", "pg-0"), &two, &[]).await.unwrap());
    assert_eq!(again, first);
    let ids: Vec<_> = db
        .attachments(None)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id.container_id.clone())
        .collect();
    assert_eq!(ids, ["c2"]);
    assert_consistent(&db).await;
}

#[tokio::test]
async fn other_pods_free_on_del_and_another_name_does_not_take_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let two = nics(&["eth0", "eth1"]);
    // A Deployment's pod: freed by its DEL.
    let mut plain = sts_pod("c1", "web-abc");
    plain.pod.controller = Some("ReplicaSet".into());
    db.add(&plain, &two, &[]).await.unwrap();
    db.del(&id("c1")).await.unwrap();
    assert!(db.attachments(None).await.unwrap().is_empty());
    // pg-0 keeps; pg-1 gets other addresses, and a pod asking for pg-0's
    // addresses explicitly is refused naming the retained holder.
    let pg0 = addrs(&db.add(&sts_pod("c2", "pg-0"), &two, &[]).await.unwrap());
    db.del(&id("c2")).await.unwrap();
    let pg1 = addrs(&db.add(&sts_pod("c3", "pg-1"), &two, &[]).await.unwrap());
    assert!(!pg1.iter().any(|a| pg0.contains(a)));
    let mut thief = args("c4");
    thief.selection.ips = vec![pg0[0]];
    let e = db.add(&thief, &two, &[]).await.unwrap_err().to_string();
    assert!(e.contains("retained:db:pg-0"), "{e}");
    assert_consistent(&db).await;
}

#[tokio::test]
async fn a_successor_added_before_the_old_pods_del_leaves_nothing_retained() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let two = nics(&["eth0", "eth1"]);
    let old = addrs(&db.add(&sts_pod("c1", "pg-0"), &two, &[]).await.unwrap());
    // The runtime adds the new sandbox first: fresh addresses.
    let new = addrs(&db.add(&sts_pod("c2", "pg-0"), &two, &[]).await.unwrap());
    assert!(!new.iter().any(|a| old.contains(a)));
    // The old one's DEL then frees its addresses: nobody would take them over.
    db.del(&id("c1")).await.unwrap();
    let all = db.attachments(None).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].id.container_id, "c2");
    assert_consistent(&db).await;
}

#[tokio::test]
async fn retained_addresses_the_pod_cannot_have_now_are_freed_for_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let two = nics(&["eth0", "eth1"]);
    let before = addrs(&db.add(&sts_pod("c1", "pg-0"), &two, &[]).await.unwrap());
    db.del(&id("c1")).await.unwrap();
    // Recreated asking for rail 1 only: rail 0's retained address cannot be
    // its, so it gets a fresh rail-1 address and nothing stays retained.
    let mut narrow = sts_pod("c2", "pg-0");
    narrow.selection.masters = vec!["eth1".into()];
    let got = addrs(&db.add(&narrow, &two, &[]).await.unwrap());
    assert_eq!(got.len(), 1);
    let all = db.attachments(None).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(!is_retained(&all[0].id));
    assert!(db.stats().attachments == 1 && before.len() == 2);
    assert_consistent(&db).await;
}
