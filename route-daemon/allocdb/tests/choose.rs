//! External IPAM's `choose`: the NICs an ADD would get and their blocks, by
//! the same attach policy, with nothing allocated or logged.

mod common;

use std::net::IpAddr;

use common::*;
use ipnet::IpNet;
use railyard_allocdb::{AllocDb, DbError};
use railyard_core::ipam::{ChosenBlock, NicChoice, PodRoute};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn choice_of(c: &NicChoice) -> (String, u32, Vec<IpNet>) {
    (
        c.nic.to_string(),
        c.interface,
        c.blocks.iter().map(|b| b.cidr).collect(),
    )
}

#[tokio::test]
async fn choose_names_the_nics_and_blocks_an_add_would_use_and_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = two_rails();
    cfg.excludes = vec![net("192.168.1.0/28"), net("192.168.128.0/24")];
    let db = open_with(dir.path(), cfg).await;
    let host = nics(&["eth0", "eth1"]);

    let chosen = db.choose(&args("c1"), &host, &[]).unwrap();
    assert_eq!(chosen.len(), 2);
    assert_eq!(chosen[0].nic.as_str(), "eth0");
    assert_eq!(chosen[0].interface, 0);
    assert_eq!(
        chosen[0].blocks,
        vec![ChosenBlock {
            cidr: net("192.168.1.0/24"),
            gateway: Some(ip("192.168.1.1")),
            excludes: vec![net("192.168.1.0/28")],
        }],
        "the network's excludes inside the block, and only those"
    );
    assert_eq!(
        chosen[1].blocks,
        vec![ChosenBlock {
            cidr: net("192.168.65.0/24"),
            gateway: Some(ip("192.168.65.1")),
            excludes: vec![],
        }]
    );
    assert_eq!(
        chosen[1].routes,
        vec![PodRoute {
            dst: net("192.168.64.0/18"),
            gw: ip("192.168.65.1").into(),
        }],
        "the rail's route via the block's gateway, as an ADD gives it"
    );
    // Nothing held, nothing logged: a reopened log has no attachment either.
    assert!(db.attachments(None).await.unwrap().is_empty());
    assert!(db.stats().nic_allocations.values().all(|n| *n == 0));
    drop(db);
    let db = AllocDb::open(dir.path(), opts()).unwrap();
    assert!(db.attachments(None).await.unwrap().is_empty());

    // The same NICs and blocks an ADD then allocates in.
    let added = db.add(&args("c2"), &host, &[]).await.unwrap();
    let again = db.choose(&args("c1"), &host, &[]).unwrap();
    assert_eq!(
        added.iter().map(|n| n.nic.to_string()).collect::<Vec<_>>(),
        again.iter().map(|c| c.nic.to_string()).collect::<Vec<_>>()
    );
    for (a, c) in added.iter().zip(&again) {
        assert!(c.blocks[0].cidr.contains(&a.addresses[0].addr()));
        assert_eq!(a.routes, c.routes);
    }
}

#[tokio::test]
async fn the_pods_selection_narrows_choose_as_it_narrows_add() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), dual_stack()).await;
    let host = nics(&["eth0", "eth1"]);

    let mut one = args("c1");
    one.selection.nics = Some(1);
    let chosen = db.choose(&one, &host, &[]).unwrap();
    assert_eq!(
        chosen.iter().map(choice_of).collect::<Vec<_>>(),
        vec![(
            "eth0".to_string(),
            0,
            vec![net("192.168.1.0/24"), net("fd00:0:0:1::/64")]
        )],
        "both families, the primary first"
    );
    let mut named = args("c1");
    named.selection.masters = vec!["eth1".into()];
    let chosen = db.choose(&named, &host, &[]).unwrap();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].nic.as_str(), "eth1");

    // A planned NIC the host lacks fails Choose as it fails ADD, by name.
    let short = nics(&["eth0"]);
    let by_choose = db.choose(&args("c1"), &short, &[]).unwrap_err();
    let by_add = db.add(&args("c1"), &short, &[]).await.unwrap_err();
    assert!(matches!(by_choose, DbError::Select(_)), "{by_choose}");
    assert_eq!(by_choose.to_string(), by_add.to_string());
    assert!(by_choose.to_string().contains("eth1"), "{by_choose}");
}

#[tokio::test]
async fn static_addresses_and_unknown_networks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let host = nics(&["eth0", "eth1"]);
    let mut statics = args("c1");
    statics.selection.ips = vec![ip("192.168.1.77")];
    let err = db.choose(&statics, &host, &[]).unwrap_err();
    assert!(matches!(err, DbError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("external IPAM"), "{err}");
    let mut pooled = args("c1");
    pooled.selection.pool = Some("db".into());
    assert!(matches!(
        db.choose(&pooled, &host, &[]).unwrap_err(),
        DbError::Invalid(_)
    ));
    let mut other = args("c1");
    other.attachment.network = "nope".into();
    assert!(matches!(
        db.choose(&other, &host, &[]).unwrap_err(),
        DbError::UnknownNetwork(n) if n == "nope"
    ));
    let mut bad = args("c1");
    bad.attachment.container_id = "a/b".into();
    assert!(matches!(
        db.choose(&bad, &host, &[]).unwrap_err(),
        DbError::Invalid(_)
    ));
    assert!(db.attachments(None).await.unwrap().is_empty());
}
