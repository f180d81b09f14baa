//! The engine's behaviour as the daemon sees it: ADD, DEL, CHECK, GC, policies,
//! plan changes and the change feed.

mod common;

use std::sync::Arc;

use common::*;
use railyard_allocdb::{AllocDb, Change, DbError, Options};
use railyard_core::attach::{DeviceClass, DeviceMatch};
use railyard_core::ipam::{codes, Selection};
use railyard_core::{NetworkManifest, Strategy};

#[tokio::test]
async fn add_is_idempotent_and_del_releases() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let nics = nics(&["eth0", "eth1"]);
    let first = db.add(&args("c1"), &nics, &[]).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(
        addrs(&first),
        [
            "192.168.1.2".parse::<std::net::IpAddr>().unwrap(),
            "192.168.65.2".parse().unwrap()
        ]
    );
    // A repeated ADD, even with another selection, gets the same answer.
    let mut again = args("c1");
    again.selection.nics = Some(1);
    assert_eq!(db.add(&again, &nics, &[]).await.unwrap(), first);
    assert_eq!(db.stats().attachments, 1);
    assert!(db.stats().blocks.iter().all(|b| b.allocated == 1));

    db.del(&id("c1")).await.unwrap();
    db.del(&id("c1")).await.unwrap();
    db.del(&id("never-added")).await.unwrap();
    assert!(db.stats().blocks.iter().all(|b| b.allocated == 0));
    // Delayed reuse: a new ADD does not get the address just released.
    let next = db.add(&args("c1"), &nics, &[]).await.unwrap();
    assert_eq!(
        addrs(&next)[0],
        "192.168.1.3".parse::<std::net::IpAddr>().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_of_one_attachment_get_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open_with(dir.path(), two_rails()).await);
    let nics = Arc::new(nics(&["eth0", "eth1"]));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (db, nics) = (db.clone(), nics.clone());
            tokio::spawn(async move { db.add(&args("same"), &nics, &[]).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(db.stats().attachments, 1);
}

#[tokio::test]
async fn exhausting_the_second_nic_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // eth1's /30 has a single usable address.
    let cfg = config(&[
        ("eth0", 0, "192.168.1.0/24"),
        ("eth1", 1, "192.168.65.0/30"),
    ]);
    let db = open_with(dir.path(), cfg.clone()).await;
    let nics = nics(&["eth0", "eth1"]);
    db.add(&args("a"), &nics, &[]).await.unwrap();
    let err = db.add(&args("b"), &nics, &[]).await.unwrap_err();
    assert!(matches!(err, DbError::Exhausted { .. }), "{err}");
    assert!(
        err.to_string().contains("192.168.65.0/30 of NIC eth1"),
        "{err}"
    );
    let used: Vec<u32> = db.stats().blocks.iter().map(|b| b.allocated).collect();
    assert_eq!(used, [1, 1], "the eth0 address taken for b was given back");
    assert_eq!(db.stats().attachments, 1);
    assert!(db.drain_changes().events.len() == 1);
    drop(db);
    let db = AllocDb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.stats().attachments, 1, "nothing of b reached the log");
    assert_consistent(&db).await;
}

#[tokio::test]
async fn gc_releases_exactly_the_attachments_not_valid() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let mut other = two_rails();
    other.name = "net2".into();
    db.set_network(other).await.unwrap();
    let nics = nics(&["eth0", "eth1"]);
    for i in 0..5 {
        db.add(&args(&format!("c{i}")), &nics, &[]).await.unwrap();
    }
    let mut on_net2 = args("c0");
    on_net2.attachment.network = "net2".into();
    db.add(&on_net2, &nics, &[]).await.unwrap();
    db.drain_changes();

    let valid = [id("c1"), id("c3"), id("not-here")];
    assert_eq!(db.gc(NET, &valid).await.unwrap(), 3);
    let left: Vec<String> = db
        .attachments(Some(NET))
        .await
        .unwrap()
        .iter()
        .map(|a| a.id.container_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(left, ["c1", "c3"]);
    assert_eq!(db.attachments(Some("net2")).await.unwrap().len(), 1);
    let released: Vec<String> = db
        .drain_changes()
        .events
        .into_iter()
        .map(|e| match e.change {
            Change::Released(id) => id.container_id,
            Change::Added(a) => panic!("unexpected add of {:?}", a.id),
        })
        .collect();
    assert_eq!(released, ["c0", "c2", "c4"]);
    assert_eq!(db.gc(NET, &valid).await.unwrap(), 0);
    assert_eq!(db.gc("no-such-net", &[]).await.unwrap(), 0);
    assert_consistent(&db).await;
}

#[tokio::test]
async fn check_and_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let nics = nics(&["eth0", "eth1"]);
    let got = db.add(&args("c1"), &nics, &[]).await.unwrap();
    assert_eq!(db.check(&id("c1")).await.unwrap().nics, got);
    let e = db.check(&id("c2")).await.unwrap_err();
    assert!(matches!(e, DbError::UnknownAttachment(_)), "{e}");
    let mut elsewhere = args("c3");
    elsewhere.attachment.network = "unplanned".into();
    let e = db.add(&elsewhere, &nics, &[]).await.unwrap_err();
    assert!(matches!(e, DbError::UnknownNetwork(_)), "{e}");
    let e = db.add(&args(""), &nics, &[]).await.unwrap_err();
    assert!(matches!(e, DbError::Invalid(_)), "{e}");
    // No NIC of the plan is present on the host.
    let e = db
        .add(&args("c4"), &common::nics(&["ens9"]), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DbError::Select(s) if s.code() == codes::NO_NIC),
        "{e}"
    );
    assert!(db.status(NET).is_ok());
    let e = db.status("unplanned").unwrap_err();
    assert!(matches!(e, DbError::UnknownNetwork(_)), "{e}");
}

#[tokio::test]
async fn pod_routes_and_addresses_follow_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), dual_stack()).await;
    let got = db
        .add(&args("c1"), &nics(&["eth1", "eth0"]), &[])
        .await
        .unwrap();
    assert_eq!(got[0].nic, "eth0");
    assert_eq!(got[1].interface, 1);
    let text: Vec<String> = got[1].addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(text, ["192.168.65.2/24", "fd00:1:0:1::2/64"]);
    let gws: Vec<String> = got[1].gateways.iter().map(|a| a.to_string()).collect();
    assert_eq!(gws, ["192.168.65.1", "fd00:1:0:1::1"]);
    let routes: Vec<String> = got[1]
        .routes
        .iter()
        .map(|r| format!("{} via {}", r.dst, r.gw.expect("a gateway")))
        .collect();
    assert_eq!(
        routes,
        [
            "192.168.64.0/18 via 192.168.65.1",
            "fd00:1::/48 via fd00:1:0:1::1"
        ]
    );
}

#[tokio::test]
async fn policies_see_the_load_and_the_pods_selection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = two_rails();
    cfg.strategy = Strategy::Balance;
    let db = open_with(dir.path(), cfg).await;
    let mut host = nics(&["eth0", "eth1"]);
    let one = |c: &str| {
        let mut a = args(c);
        a.selection = Selection {
            nics: Some(1),
            ..Selection::default()
        };
        a
    };
    let mut picked = Vec::new();
    for i in 0..4 {
        picked.push(db.add(&one(&format!("b{i}")), &host, &[]).await.unwrap()[0].nic);
    }
    assert_eq!(
        picked,
        ["eth0", "eth1", "eth0", "eth1"],
        "balance spreads the load"
    );
    assert_eq!(db.stats().nic_allocations["eth0"], 2);

    // Standalone mode: only the master's block.
    let mut standalone = args("s1");
    standalone.master = Some("eth1".into());
    let got = db.add(&standalone, &host, &[]).await.unwrap();
    assert_eq!((got.len(), got[0].nic.as_str()), (1, "eth1"));

    // A down NIC named by the pod is refused by name.
    host[1].up = false;
    let mut named = args("m1");
    named.selection.masters = vec!["eth1".into()];
    let e = db.add(&named, &host, &[]).await.unwrap_err();
    assert!(
        matches!(&e, DbError::Select(s) if s.code() == codes::NO_NIC),
        "{e}"
    );
    assert!(e.to_string().contains("eth1 (down)"), "{e}");
}

#[tokio::test]
async fn dev_class_comes_from_the_known_classes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = two_rails();
    cfg.strategy = Strategy::DevClass;
    cfg.policy_target = "fast".into();
    let db = open_with(dir.path(), cfg).await;
    let mut host = nics(&["eth0", "eth1"]);
    host[1].speed_mbps = Some(200_000);
    let fast = DeviceClass {
        name: "fast".into(),
        rules: vec![DeviceMatch {
            min_speed_mbps: Some(100_000),
            ..DeviceMatch::default()
        }],
    };
    let got = db
        .add(&args("c1"), &host, std::slice::from_ref(&fast))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].nic, "eth1");
    let e = db.add(&args("c2"), &host, &[]).await.unwrap_err();
    assert!(
        matches!(&e, DbError::Select(s) if s.code() == codes::INVALID_CONFIG),
        "{e}"
    );
}

#[tokio::test]
async fn a_block_leaving_the_plan_keeps_its_addresses_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let nics = nics(&["eth0", "eth1"]);
    db.add(&args("old"), &nics, &[]).await.unwrap();
    db.set_network(config(&[("eth0", 0, "192.168.1.0/24")]))
        .await
        .unwrap();
    let blocks = db.stats().blocks;
    assert_eq!(blocks.len(), 2);
    assert!(!blocks[1].in_plan && blocks[1].allocated == 1);
    let got = db.add(&args("new"), &nics, &[]).await.unwrap();
    assert_eq!(got.len(), 1, "no new address from a block the plan dropped");
    // It survives a restart as a leftover, then goes with its last address.
    drop(db);
    let db = AllocDb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.stats().blocks.len(), 2);
    db.del(&id("old")).await.unwrap();
    assert_eq!(db.stats().blocks.len(), 1);
    // A bigger block overlapping an old one never hands out what the old one holds.
    db.set_network(config(&[("eth0", 0, "192.168.1.0/25")]))
        .await
        .unwrap();
    db.set_network(config(&[("eth0", 0, "192.168.0.0/23")]))
        .await
        .unwrap();
    for i in 0..20 {
        db.add(&args(&format!("n{i}")), &nics, &[]).await.unwrap();
    }
    assert_consistent(&db).await;
}

#[tokio::test]
async fn a_real_plan_feeds_the_engine() {
    let manifest: NetworkManifest = serde_json::from_str(
        r#"{"metadata":{"name":"net1"},"spec":{"subnet":"192.168.0.0/16",
            "ipam":"{\"hostBlock\":6,\"interfaceBlock\":2}",
            "attachPolicy":{"strategy":"costOpt"}}}"#,
    )
    .unwrap();
    let network = manifest.validate().unwrap();
    let hosts: Vec<railyard_core::HostInventory> = (0..3)
        .map(|h| railyard_core::HostInventory {
            name: format!("host-{h}"),
            nics: (0..2)
                .map(|k| railyard_core::Nic {
                    name: format!("eth{k}"),
                    addresses: vec![format!("10.0.{k}.{}/24", h + 1).parse().unwrap()],
                    up: true,
                    ..Default::default()
                })
                .collect(),
        })
        .collect();
    let plan = railyard_core::plan(&network, &hosts, None, 0, 0);
    let cfg = railyard_allocdb::NetworkConfig::from_plan(&network, &plan, "host-1");
    assert_eq!(cfg.strategy, Strategy::Balance);
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), cfg).await;
    let got = db.add(&args("c1"), &hosts[1].nics, &[]).await.unwrap();
    let text: Vec<String> = got.iter().map(|n| n.addresses[0].to_string()).collect();
    assert_eq!(text, ["192.168.1.2/24", "192.168.65.2/24"]);
    assert_eq!(got[0].routes[0].dst.to_string(), "192.168.0.0/18");
}

#[tokio::test]
async fn the_change_feed_is_ordered_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = AllocDb::open(
        dir.path(),
        Options {
            change_capacity: 3,
            ..Options::default()
        },
    )
    .unwrap();
    db.set_network(two_rails()).await.unwrap();
    let nics = nics(&["eth0", "eth1"]);
    db.add(&args("a"), &nics, &[]).await.unwrap();
    db.del(&id("a")).await.unwrap();
    let c = db.drain_changes();
    assert!(!c.overflowed);
    assert!(matches!(&c.events[0].change, Change::Added(a) if a.id == id("a")));
    assert_eq!(c.events[1].change, Change::Released(id("a")));
    assert!(c.events[0].lsn < c.events[1].lsn);
    assert!(db.drain_changes().events.is_empty());
    for i in 0..5 {
        db.add(&args(&format!("b{i}")), &nics, &[]).await.unwrap();
    }
    let c = db.drain_changes();
    assert!(c.overflowed, "the daemon must resync");
    assert_eq!(c.events.len(), 3);
}
