//! The planner service over the in-memory store: decisions that need time to
//! pass (grace periods) or ranges to free, end to end through the service loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_core::status::{Condition, NetworkStatus};
use railyard_core::{keys, HostInventory, HostPlan, Nic};
use railyard_planner::metrics::Metrics;
use railyard_planner::service::{self, ServiceConfig};
use railyard_store::{LeaseId, MemStore, Store};
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

async fn register(store: &Arc<dyn Store>, h: &HostInventory) -> LeaseId {
    let lease = store.grant(30).await.unwrap();
    store
        .put(
            &keys::host(&h.name),
            serde_json::to_vec(h).unwrap(),
            Some(lease),
        )
        .await
        .unwrap();
    lease
}

async fn apply(store: &Arc<dyn Store>, name: &str, subnet: &str, ipam: &str) {
    let v =
        serde_json::json!({"metadata": {"name": name}, "spec": {"subnet": subnet, "ipam": ipam}});
    store
        .put(&keys::network(name), serde_json::to_vec(&v).unwrap(), None)
        .await
        .unwrap();
}

async fn planned(store: &Arc<dyn Store>, net: &str, host: &str) -> Option<HostPlan> {
    let kv = store.get(&keys::plan_host(net, host)).await.unwrap()?;
    kv.decode_json().ok()
}

async fn status(store: &Arc<dyn Store>, net: &str) -> Option<NetworkStatus> {
    let kv = store.get(&keys::status(net)).await.unwrap()?;
    kv.decode_json().ok()
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start(
    store: &Arc<dyn Store>,
    grace: Duration,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<railyard_planner::Result<()>>,
) {
    let (stop, rx) = watch::channel(false);
    let cfg = ServiceConfig {
        identity: "p1".into(),
        lease_ttl_secs: 2,
        grace,
        ..ServiceConfig::default()
    };
    let task = tokio::spawn(service::run(
        Arc::clone(store),
        cfg,
        Arc::new(Metrics::default()),
        rx,
    ));
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_host_is_planned_when_an_index_frees_without_a_restart() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    // Two host indexes.
    apply(
        &store,
        "tiny",
        "192.168.0.0/24",
        r#"{"hostBlock": 1, "interfaceBlock": 0}"#,
    )
    .await;
    let (stop, task) = start(&store, Duration::from_secs(1));
    let a = register(&store, &host("a", 0)).await;
    register(&store, &host("b", 1)).await;
    eventually("a and b planned", || async {
        planned(&store, "tiny", "b")
            .await
            .and(planned(&store, "tiny", "a").await)
    })
    .await;
    register(&store, &host("zz-waited", 2)).await;
    eventually("zz-waited unplanned", || async {
        status(&store, "tiny")
            .await
            .filter(|s| s.hosts_unplanned.len() == 1)
    })
    .await;
    // A later joiner that sorts first.
    register(&store, &host("aa-later", 3)).await;
    eventually("two waiting", || async {
        status(&store, "tiny")
            .await
            .filter(|s| s.hosts_unplanned.len() == 2)
    })
    .await;
    // a leaves; after its grace period its index goes to the host that waited longest.
    store.revoke(a).await.unwrap();
    let got = eventually("zz-waited planned", || async {
        planned(&store, "tiny", "zz-waited").await
    })
    .await;
    assert_eq!(got.index, 0);
    assert!(planned(&store, "tiny", "aa-later").await.is_none());
    let s = status(&store, "tiny").await.unwrap();
    let waiting: Vec<&str> = s.hosts_unplanned.iter().map(|u| u.host.as_str()).collect();
    assert_eq!(waiting, ["aa-later"]);
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_network_waits_for_the_deleted_ones_pods() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let ipam = r#"{"hostBlock": 6, "interfaceBlock": 2}"#;
    let (stop, task) = start(&store, Duration::from_secs(600));
    register(&store, &host("h0", 0)).await;
    apply(&store, "first", "192.168.0.0/16", ipam).await;
    eventually("first planned", || async {
        planned(&store, "first", "h0").await
    })
    .await;
    store
        .put(
            &keys::allocation("first", "h0", "c1", "net1-0"),
            b"{}".to_vec(),
            None,
        )
        .await
        .unwrap();
    apply(&store, "second", "192.168.0.0/17", ipam).await;
    let s = eventually("second refused", || async {
        status(&store, "second").await
    })
    .await;
    assert_eq!(s.condition, Condition::Invalid);
    let err = s.last_error.unwrap();
    assert!(
        err.contains("network first") && err.contains("network second"),
        "{err}"
    );
    assert!(planned(&store, "second", "h0").await.is_none());

    // first is deleted while its pod still holds an address: its plan goes
    // (daemons drop its routes), its range stays reserved.
    store.delete(&keys::network("first")).await.unwrap();
    eventually("first's plan deleted", || async {
        store
            .range(&keys::plan_prefix("first"))
            .await
            .unwrap()
            .kvs
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(store
        .get(&keys::tombstone("first"))
        .await
        .unwrap()
        .is_some());
    let s = eventually("second still refused, over the tombstone", || async {
        status(&store, "second").await.filter(|s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("deleted network first"))
        })
    })
    .await;
    assert_eq!(s.condition, Condition::Invalid);

    // The pod goes: the tombstone goes and second is planned.
    store
        .delete(&keys::allocation("first", "h0", "c1", "net1-0"))
        .await
        .unwrap();
    eventually("second planned", || async {
        planned(&store, "second", "h0").await
    })
    .await;
    assert!(store
        .get(&keys::tombstone("first"))
        .await
        .unwrap()
        .is_none());
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
