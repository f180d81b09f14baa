//! The network's gateway choice (`spec.ipam.gateway`) in the engine: the
//! gateway is never a pod's, `none` frees offset 1 and gives device routes,
//! and the choice is logged (format version 2) so a restart, before etcd
//! answers, allocates as before it.

mod common;

use std::net::IpAddr;

use common::*;
use railyard_allocdb::{AllocDb, NetworkConfig, LOG_FORMAT};
use railyard_core::Gateway;

const LOG: &str = "allocations.log";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn with(gateway: Gateway) -> NetworkConfig {
    NetworkConfig {
        gateway,
        ..dual_stack()
    }
}

#[tokio::test]
async fn without_a_gateway_pods_get_offset_1_and_device_routes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), with(Gateway::None)).await;
    let got = db
        .add(&args("a"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert_eq!(
        addrs(&got),
        [
            ip("192.168.1.1"),
            ip("fd00:0:0:1::1"),
            ip("192.168.65.1"),
            ip("fd00:1:0:1::1")
        ]
    );
    for n in &got {
        assert!(n.gateways.is_empty(), "{n:?}");
        assert!(!n.routes.is_empty());
        assert!(n.routes.iter().all(|r| r.gw.is_none()), "{n:?}");
    }
    // The wire form leaves `gw` out, so a device route reads as one.
    let wire = serde_json::to_string(&got[0]).unwrap();
    assert!(!wire.contains("\"gw\""), "{wire}");
    // Logged, in this build's format: a restart allocates the same way.
    drop(db);
    let bytes = std::fs::read(dir.path().join(LOG)).unwrap();
    assert_eq!(&bytes[..8], format!("RYALOG{LOG_FORMAT:02}").as_bytes());
    assert!(String::from_utf8_lossy(&bytes).contains(r#""gateway":"none""#));
    let db = AllocDb::open(dir.path(), opts()).unwrap();
    let next = db
        .add(&args("b"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert_eq!(addrs(&next)[..2], [ip("192.168.1.2"), ip("fd00:0:0:1::2")]);
    assert!(next[0].gateways.is_empty());
    // And after a compaction (the snapshot carries the config).
    db.compact().await.unwrap();
    drop(db);
    let db = AllocDb::open(dir.path(), opts()).unwrap();
    let third = db
        .add(&args("c"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert!(third[0].gateways.is_empty() && third[0].routes[0].gw.is_none());
    assert_consistent(&db).await;
}

#[tokio::test]
async fn a_chosen_gateway_is_every_pods_next_hop_and_nobodys_address() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = NetworkConfig {
        gateway: Gateway::Offset(-2),
        ..config(&[("eth0", 0, "192.168.1.0/29")])
    };
    let db = open_with(dir.path(), cfg).await;
    let mut held = Vec::new();
    for i in 0..5 {
        let got = db
            .add(&args(&format!("p{i}")), &nics(&["eth0"]), &[])
            .await
            .unwrap();
        assert_eq!(got[0].gateways, [ip("192.168.1.6")]);
        assert_eq!(got[0].routes[0].gw, Some(ip("192.168.1.6")));
        held.extend(addrs(&got));
    }
    // Offsets 1 to 5: offset 1 is a pod's, the gateway (offset 6) nobody's.
    let want: Vec<IpAddr> = (1..=5).map(|i| ip(&format!("192.168.1.{i}"))).collect();
    assert_eq!(held, want);
    let err = db
        .add(&args("full"), &nics(&["eth0"]), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("192.168.1.0/29"), "{err}");
    // Restarted: the choice came back from the log.
    drop(db);
    let db = AllocDb::open(dir.path(), opts()).unwrap();
    db.del(&id("p0")).await.unwrap();
    let again = db.add(&args("q"), &nics(&["eth0"]), &[]).await.unwrap();
    assert_eq!(addrs(&again), [ip("192.168.1.1")]);
    assert_eq!(again[0].gateways, [ip("192.168.1.6")]);
}

#[tokio::test]
async fn the_default_logs_exactly_what_version_1_did() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), dual_stack()).await;
    db.add(&args("a"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    drop(db);
    let text = String::from_utf8_lossy(&std::fs::read(dir.path().join(LOG)).unwrap()).into_owned();
    assert!(!text.contains("gateway\":"), "{text}");
    assert!(
        text.contains(r#""gateways":["192.168.1.1","fd00:0:0:1::1"]"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_new_gateway_on_a_held_address_leaves_it_with_its_pod() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), with(Gateway::None)).await;
    let first = db
        .add(&args("a"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert_eq!(addrs(&first)[0], ip("192.168.1.1"));
    // The network is given a gateway at offset 1, which pod a holds.
    db.set_network(dual_stack()).await.unwrap();
    // Pod a keeps its address (as under a new exclude; the daemon warns),
    // and nobody else gets it.
    assert!(db
        .attachments(None)
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == id("a")));
    let next = db
        .add(&args("b"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert_eq!(next[0].gateways, [ip("192.168.1.1"), ip("fd00:0:0:1::1")]);
    assert!(!addrs(&next).contains(&ip("192.168.1.1")));
    // Released, the address is the gateway's again: never handed out.
    db.del(&id("a")).await.unwrap();
    assert_consistent(&db).await;
    for i in 0..3 {
        let got = db
            .add(&args(&format!("c{i}")), &nics(&["eth0", "eth1"]), &[])
            .await
            .unwrap();
        assert_ne!(addrs(&got)[0], ip("192.168.1.1"));
    }
}
