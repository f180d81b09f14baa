//! `departed_tombstone.rs` through the service loop on the in-memory store:
//! the tombstone's records counted by host from the store's keys, a departed
//! holder's records deleted after the grace period, the range freed when the
//! live holder's pod goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_core::{keys, HostInventory, Nic};
use railyard_planner::metrics::Metrics;
use railyard_planner::service::{self, ServiceConfig};
use railyard_store::{MemStore, Store};
use tokio::sync::watch;

fn host(name: &str, n: u32) -> HostInventory {
    HostInventory {
        name: name.into(),
        nics: vec![Nic {
            name: "eth0".into(),
            addresses: vec![format!("10.0.0.{}/24", n + 1).parse().unwrap()],
            up: true,
            ..Nic::default()
        }],
    }
}

async fn put(store: &Arc<dyn Store>, key: &str, value: Vec<u8>) {
    store.put(key, value, None).await.unwrap();
}

async fn exists(store: &Arc<dyn Store>, key: &str) -> bool {
    store.get(key).await.unwrap().is_some()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_holder_does_not_keep_a_deleted_networks_range_forever() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let (stop, rx) = watch::channel(false);
    let cfg = ServiceConfig {
        identity: "p1".into(),
        lease_ttl_secs: 2,
        grace: Duration::from_secs(2),
        ..ServiceConfig::default()
    };
    let task = tokio::spawn(service::run(
        Arc::clone(&store),
        cfg,
        Arc::new(Metrics::default()),
        rx,
    ));
    for (name, n) in [("gone", 0), ("live", 1)] {
        put(
            &store,
            &keys::host(name),
            serde_json::to_vec(&host(name, n)).unwrap(),
        )
        .await;
    }
    let spec = serde_json::json!({"metadata": {"name": "first"},
        "spec": {"subnet": "192.168.0.0/16", "ipam": r#"{"hostBlock": 6, "interfaceBlock": 2}"#}});
    put(
        &store,
        &keys::network("first"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .await;
    eventually("both hosts planned", || async {
        exists(&store, &keys::plan_host("first", "gone")).await
            && exists(&store, &keys::plan_host("first", "live")).await
    })
    .await;
    let gone_record = keys::allocation("first", "gone", "c1", "net1-0");
    let live_record = keys::allocation("first", "live", "c2", "net1-0");
    put(&store, &gone_record, b"{}".to_vec()).await;
    put(&store, &live_record, b"{}".to_vec()).await;

    // "gone" is removed without a drain; then the network is deleted.
    store.delete(&keys::host("gone")).await.unwrap();
    let departed = Instant::now();
    store.delete(&keys::network("first")).await.unwrap();
    eventually("the tombstone", || async {
        exists(&store, &keys::tombstone("first")).await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        exists(&store, &gone_record).await,
        "released within the grace period"
    );

    eventually("the departed host's records deleted", || async {
        !exists(&store, &gone_record).await
    })
    .await;
    assert!(
        departed.elapsed() >= Duration::from_secs(1),
        "the grace is 2 s, in whole seconds"
    );
    assert!(
        exists(&store, &live_record).await,
        "a registered host's records stay"
    );
    assert!(
        exists(&store, &keys::tombstone("first")).await,
        "the live pod still holds its address"
    );

    // The live host's pod goes (its daemon's DEL): the range frees.
    store.delete(&live_record).await.unwrap();
    eventually("the tombstone cleared", || async {
        !exists(&store, &keys::tombstone("first")).await
    })
    .await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
