//! The planner and format versions, over the in-memory store and the values
//! the previous release wrote (`fixtures/format-v1/etcd/`): it takes over
//! that release's plan without rewriting it, refuses to lead (the process
//! stops) over a plan written by a newer release, leaving it as it is, and
//! refuses a `/networks` spec of a newer format as a spec, planning on.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_core::keys;
use railyard_core::status::NetworkStatus;
use railyard_planner::metrics::Metrics;
use railyard_planner::service::{self, ServiceConfig};
use railyard_planner::PlannerError;
use railyard_store::{MemStore, Store, StoreError};
use tokio::sync::watch;

const NET: &str = "rails";
const HOST: &str = "fxhost-0";

fn fixture(file: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/format-v1/etcd");
    std::fs::read(dir.join(file)).unwrap()
}

/// The previous release's network, registration, plan and status, with
/// `meta` as the plan meta's value.
async fn seed(meta: Vec<u8>) -> Arc<dyn Store> {
    seed_with(fixture("network.json"), meta).await
}

/// [`seed`] with `network` as the `/networks` value.
async fn seed_with(network: Vec<u8>, meta: Vec<u8>) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let lease = store.grant(30).await.unwrap();
    for (key, value, lease) in [
        (keys::network(NET), network, None),
        (keys::host(HOST), fixture("host.json"), Some(lease)),
        (keys::plan_meta(NET), meta, None),
        (keys::plan_host(NET, HOST), fixture("plan-host.json"), None),
        (keys::status(NET), fixture("status.json"), None),
    ] {
        store.put(&key, value, lease).await.unwrap();
    }
    store
}

fn start(
    store: &Arc<dyn Store>,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<railyard_planner::Result<()>>,
) {
    let (stop, rx) = watch::channel(false);
    let cfg = ServiceConfig {
        identity: "p1".into(),
        lease_ttl_secs: 2,
        ..ServiceConfig::default()
    };
    let metrics = Arc::new(Metrics::default());
    let task = tokio::spawn(service::run(Arc::clone(store), cfg, metrics, rx));
    (stop, task)
}

async fn value(store: &Arc<dyn Store>, key: &str) -> (Vec<u8>, i64) {
    let kv = store.get(key).await.unwrap().expect(key);
    (kv.value, kv.mod_revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_of_the_previous_release_is_taken_over_unchanged() {
    let store = seed(fixture("plan-meta.json")).await;
    let before_meta = value(&store, &keys::plan_meta(NET)).await;
    let before_host = value(&store, &keys::plan_host(NET, HOST)).await;
    let (stop, task) = start(&store);
    // The new leader judged the network: its status names the plan it loaded.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = store.get(&keys::status(NET)).await.unwrap();
        let judged = status
            .and_then(|kv| kv.decode_json::<NetworkStatus>().ok())
            .is_some_and(|s| s.hosts_planned == 1 && s.observed_revision > 0);
        if judged {
            // Give the first flush time to land.
            tokio::time::sleep(Duration::from_millis(300)).await;
            break;
        }
        assert!(Instant::now() < deadline, "the planner never judged {NET}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Read and kept: the same bytes, never rewritten.
    assert_eq!(value(&store, &keys::plan_meta(NET)).await, before_meta);
    assert_eq!(
        value(&store, &keys::plan_host(NET, HOST)).await,
        before_host
    );
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_of_a_newer_release_stops_the_planner_untouched() {
    let mut meta: serde_json::Value = serde_json::from_slice(&fixture("plan-meta.json")).unwrap();
    meta["formatVersion"] = 2.into();
    // A field this build has never heard of, as a newer release might add.
    meta["railGroups"] = serde_json::json!([[0, 1]]);
    let store = seed(serde_json::to_vec(&meta).unwrap()).await;
    let before_meta = value(&store, &keys::plan_meta(NET)).await;
    let before_host = value(&store, &keys::plan_host(NET, HOST)).await;
    let before_status = value(&store, &keys::status(NET)).await;
    let (_stop, task) = start(&store);
    let outcome = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the planner kept running over a newer plan")
        .unwrap();
    let err = outcome.unwrap_err();
    assert!(
        matches!(
            &err,
            PlannerError::Store(StoreError::NewerFormat { key, found: 2, supported: 1 })
                if *key == keys::plan_meta(NET)
        ),
        "{err}"
    );
    assert_eq!(value(&store, &keys::plan_meta(NET)).await, before_meta);
    assert_eq!(
        value(&store, &keys::plan_host(NET, HOST)).await,
        before_host
    );
    assert_eq!(value(&store, &keys::status(NET)).await, before_status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_of_a_newer_format_is_refused_as_a_spec_and_planning_goes_on() {
    let mut network: serde_json::Value = serde_json::from_slice(&fixture("network.json")).unwrap();
    network["formatVersion"] = 2.into();
    let store = seed_with(
        serde_json::to_vec(&network).unwrap(),
        fixture("plan-meta.json"),
    )
    .await;
    let before_meta = value(&store, &keys::plan_meta(NET)).await;
    let before_host = value(&store, &keys::plan_host(NET, HOST)).await;
    let (stop, task) = start(&store);
    let deadline = Instant::now() + Duration::from_secs(15);
    let error = loop {
        let status = store.get(&keys::status(NET)).await.unwrap();
        if let Some(e) = status
            .and_then(|kv| kv.decode_json::<NetworkStatus>().ok())
            .and_then(|s| s.last_error)
        {
            break e;
        }
        assert!(Instant::now() < deadline, "no status names the refusal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for part in [keys::network(NET).as_str(), "format version 2", "up to 1"] {
        assert!(error.contains(part), "{error} lacks {part}");
    }
    // The accepted spec stays in force: the plan is kept as it was.
    assert_eq!(value(&store, &keys::plan_meta(NET)).await, before_meta);
    assert_eq!(
        value(&store, &keys::plan_host(NET, HOST)).await,
        before_host
    );
    assert!(!task.is_finished(), "the planner stopped");
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
