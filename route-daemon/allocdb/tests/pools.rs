//! Workload pools through the engine: a pool's pods get its addresses on
//! every rail, dynamic pods never do, a full or unknown pool is refused naming
//! it with nothing allocated, Kube-OVN's `ip_pool` list takes the first free
//! listed address per rail, and everything survives a restart.

mod common;

use std::net::IpAddr;

use common::*;
use railyard_allocdb::{AddArgs, AllocDb, DbError, NetworkConfig};
use railyard_core::pools::{Pool, PoolMembers};

fn pooled() -> NetworkConfig {
    let mut cfg = two_rails();
    cfg.pools = vec![
        Pool {
            name: "db".into(),
            members: PoolMembers::Offsets { first: 2, last: 3 },
        },
        Pool {
            name: "lic".into(),
            members: PoolMembers::Addresses(vec!["192.168.1.200/32".parse().unwrap()]),
        },
    ];
    cfg
}

fn in_pool(c: &str, pool: &str) -> AddArgs {
    let mut a = args(c);
    a.selection.pool = Some(pool.into());
    a
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_pool_serves_only_its_pods_on_every_rail_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), pooled()).await;
    let two = nics(&["eth0", "eth1"]);
    let a = addrs(&db.add(&in_pool("p1", "db"), &two, &[]).await.unwrap());
    assert_eq!(a, [ip("192.168.1.2"), ip("192.168.65.2")]);
    // Dynamic pods skip offsets 2 and 3 on both rails.
    for c in ["d1", "d2", "d3"] {
        let d = addrs(&db.add(&args(c), &two, &[]).await.unwrap());
        for x in &d {
            let last = match x {
                IpAddr::V4(v) => v.octets()[3],
                IpAddr::V6(_) => unreachable!(),
            };
            assert!(!(2..=3).contains(&last), "dynamic pod {c} got pooled {x}");
        }
    }
    let b = addrs(&db.add(&in_pool("p2", "db"), &two, &[]).await.unwrap());
    assert_eq!(b, [ip("192.168.1.3"), ip("192.168.65.3")]);
    let before = db.stats();
    let full = db.add(&in_pool("p3", "db"), &two, &[]).await.unwrap_err();
    assert!(
        matches!(full, DbError::Invalid(_)) && full.to_string().contains("pool \"db\""),
        "{full}"
    );
    assert_eq!(
        db.stats().nic_allocations,
        before.nic_allocations,
        "nothing kept"
    );
    assert_consistent(&db).await;
    drop(db);

    let db = AllocDb::open(dir.path(), opts()).unwrap();
    db.set_network(pooled()).await.unwrap();
    // Still full after the restart; a release frees one for the pool again.
    assert!(db.add(&in_pool("p3", "db"), &two, &[]).await.is_err());
    db.del(&id("p1")).await.unwrap();
    let c = addrs(&db.add(&in_pool("p3", "db"), &two, &[]).await.unwrap());
    assert_eq!(c, a);
    assert_consistent(&db).await;
}

#[tokio::test]
async fn unknown_and_absent_pools_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), pooled()).await;
    let two = nics(&["eth0", "eth1"]);
    let e = db
        .add(&in_pool("p1", "web"), &two, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"web\"") && e.contains("db, lic"), "{e}");
    // "lic" lists an address of rail 0's block only: a two-rail pod cannot
    // have it on rail 1, and rail 0's address is given back.
    let e = db
        .add(&in_pool("p1", "lic"), &two, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("192.168.65.0/24") && e.contains("\"lic\""),
        "{e}"
    );
    let mut one = in_pool("p1", "lic");
    one.selection.masters = vec!["eth0".into()];
    let got = addrs(&db.add(&one, &two, &[]).await.unwrap());
    assert_eq!(got, [ip("192.168.1.200")]);
    assert_consistent(&db).await;
}

#[tokio::test]
async fn an_ip_pool_list_takes_the_first_free_listed_address_per_rail() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let two = nics(&["eth0", "eth1"]);
    let list: Vec<IpAddr> = ["192.168.1.50", "192.168.1.51", "192.168.65.50"]
        .iter()
        .map(|s| ip(s))
        .collect();
    let listed = |c: &str| {
        let mut a = args(c);
        a.selection.pool_ips = list.clone();
        a
    };
    let a = addrs(&db.add(&listed("r1"), &two, &[]).await.unwrap());
    assert_eq!(a, [ip("192.168.1.50"), ip("192.168.65.50")]);
    // Rail 1 has one listed address, held now: the second replica is refused
    // naming it, and keeps nothing of rail 0.
    let e = db
        .add(&listed("r2"), &two, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("ip_pool") && e.contains("192.168.65.50"), "{e}");
    assert_eq!(db.stats().attachments, 1);
    db.del(&id("r1")).await.unwrap();
    let b = addrs(&db.add(&listed("r2"), &two, &[]).await.unwrap());
    assert_eq!(b, a, "freed listed addresses are taken again");
    assert_consistent(&db).await;
}
