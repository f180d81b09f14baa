//! DeviceClass objects → etcd, against a mocked API server.
//!
//! No kube-apiserver can be installed on these machines, so kube's `Client` runs
//! over a `tower_test::mock` service answered by `support/fake_api.rs` (LIST and
//! WATCH of DeviceClasses; the test pushes watch events). etcd is the in-memory
//! store, as in `k8s_controller`: the tests read the keys the route-daemons follow.
//! The reason an invalid class is refused goes to the log (the CRD has no status),
//! so the tests capture the log.

#[path = "support/fake_api.rs"]
mod fake_api;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_api::{settle, start_controller, Server, DEVICE_CLASSES, WAIT};
use railyard_core::{attach, keys};
use railyard_store::{Compare, MemStore, Store};
use serde_json::{json, Value};
use tokio::time::timeout;
use tracing_subscriber::fmt::MakeWriter;

fn class(name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "railyard.dev/v1", "kind": "DeviceClass",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "3"},
        "spec": {"rules": rules},
    })
}

fn fast() -> Value {
    class(
        "fast",
        json!([{"vendor": "0x15b3", "products": ["1017", "101b"], "driver": "mlx5_core", "minSpeedMbps": 100000}]),
    )
}

async fn stored(store: &dyn Store, name: &str) -> Option<Value> {
    let kv = store.get(&keys::device_class(name)).await.unwrap()?;
    Some(serde_json::from_slice(&kv.value).expect("stored JSON"))
}

/// Waits until `name`'s key satisfies `pred` (`None`: absent).
async fn wait_for_key(
    store: &dyn Store,
    name: &str,
    what: &str,
    pred: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    timeout(WAIT, async {
        loop {
            let v = stored(store, name).await;
            if pred(v.as_ref()) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {WAIT:?}"))
}

/// The log, captured (the controller runs on this test's thread: current-thread
/// runtime).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_device_class_reaches_etcd_and_leaves_with_its_object() {
    let (server, client, mut seen) = Server::start_with(vec![(DEVICE_CLASSES, vec![fast()])]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);
    let value = wait_for_key(store.as_ref(), "fast", "the class in etcd", |v| v.is_some())
        .await
        .unwrap();
    assert_eq!(
        value,
        json!({
            "name": "fast",
            "rules": [{"vendor": "0x15b3", "products": ["1017", "101b"], "driver": "mlx5_core", "minSpeedMbps": 100000}],
            "k8sUid": "uid-fast",
        })
    );
    // What the route-daemon decodes (it ignores the ownership marker).
    let daemon: attach::DeviceClass = serde_json::from_value(value).unwrap();
    assert_eq!(daemon.name, "fast");
    assert_eq!(daemon.rules[0].min_speed_mbps, Some(100_000));

    // Edited: rewritten.
    server.wait_watching(DEVICE_CLASSES).await;
    let mut edited = fast();
    edited["spec"]["rules"][0]["minSpeedMbps"] = json!(200_000);
    edited["metadata"]["resourceVersion"] = json!("4");
    server.push(DEVICE_CLASSES, "MODIFIED", &edited);
    wait_for_key(store.as_ref(), "fast", "the edit in etcd", |v| {
        v.is_some_and(|v| v["rules"][0]["minSpeedMbps"] == 200_000)
    })
    .await;

    // Overwritten by hand in etcd: the object wins again.
    store
        .put(
            &keys::device_class("fast"),
            br#"{"name":"fast","rules":[{"driver":"e1000"}]}"#.to_vec(),
            None,
        )
        .await
        .unwrap();
    wait_for_key(store.as_ref(), "fast", "the object's version back", |v| {
        v.is_some_and(|v| v["rules"][0]["minSpeedMbps"] == 200_000 && v["k8sUid"] == "uid-fast")
    })
    .await;

    // Deleted: the key goes.
    server.push(DEVICE_CLASSES, "DELETED", &edited);
    wait_for_key(store.as_ref(), "fast", "the key deleted", |v| v.is_none()).await;

    // The controller only reads DeviceClasses.
    let requests = settle(&mut seen, Duration::from_millis(200)).await;
    assert!(
        !requests.iter().any(|s| s.path.starts_with(DEVICE_CLASSES)),
        "{requests:?}"
    );
    task.abort();
}

#[tokio::test]
async fn an_invalid_device_class_writes_nothing_and_the_log_names_field_and_value() {
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let broken = class("broken", json!([{"vendor": "nvidia"}]));
    let pruned = class("pruned", json!([{"driver": "mlx5_core"}, {}]));
    let (_server, client, _seen) =
        Server::start_with(vec![(DEVICE_CLASSES, vec![broken, pruned, fast()])]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    // `pruned` was valid before: its last valid version stays.
    let previous = br#"{"name":"pruned","rules":[{"driver":"mlx5_core"}],"k8sUid":"uid-pruned"}"#;
    store
        .put(&keys::device_class("pruned"), previous.to_vec(), None)
        .await
        .unwrap();
    let task = start_controller(client, Arc::clone(&store), None);
    wait_for_key(store.as_ref(), "fast", "the valid class in etcd", |v| {
        v.is_some()
    })
    .await;
    timeout(WAIT, async {
        while !(log.text().contains("spec.rules[0].vendor: \\\"nvidia\\\"")
            && log.text().contains("spec.rules[1]: \\\"{}\\\""))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no refusal naming field and value in the log:\n{}",
            log.text()
        )
    });
    let text = log.text();
    assert!(text.contains("DeviceClass broken"), "{text}");
    assert!(text.contains("4-digit hexadecimal PCI ID"), "{text}");
    assert!(stored(store.as_ref(), "broken").await.is_none());
    let kept = store
        .get(&keys::device_class("pruned"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.value, previous.to_vec());
    // Reported once, not on every sync.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log.text().matches("DeviceClass broken").count(),
        1,
        "{}",
        log.text()
    );
    task.abort();
}

#[tokio::test]
async fn at_start_only_classes_the_controller_wrote_are_removed() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    // Written by a controller for an object deleted while none ran...
    store
        .put(
            &keys::device_class("orphan"),
            br#"{"name":"orphan","rules":[{"driver":"ice"}],"k8sUid":"uid-orphan"}"#.to_vec(),
            None,
        )
        .await
        .unwrap();
    // ...and by hand, without the marker.
    let by_hand = br#"{"name":"by-hand","rules":[{"driver":"ice"}]}"#;
    store
        .put(&keys::device_class("by-hand"), by_hand.to_vec(), None)
        .await
        .unwrap();
    let (_server, client, _seen) = Server::start_with(vec![(DEVICE_CLASSES, vec![fast()])]);
    let task = start_controller(client, Arc::clone(&store), None);
    wait_for_key(store.as_ref(), "orphan", "the orphan deleted", |v| {
        v.is_none()
    })
    .await;
    assert!(stored(store.as_ref(), "fast").await.is_some());
    let kept = store
        .get(&keys::device_class("by-hand"))
        .await
        .unwrap()
        .expect("a class written by hand stays");
    assert_eq!(kept.value, by_hand.to_vec());
    task.abort();
}

#[tokio::test]
async fn a_deposed_leader_writes_no_device_class() {
    let (_server, client, _seen) = Server::start_with(vec![(DEVICE_CLASSES, vec![fast()])]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let orphan = br#"{"name":"orphan","rules":[{"driver":"ice"}],"k8sUid":"uid-orphan"}"#;
    store
        .put(&keys::device_class("orphan"), orphan.to_vec(), None)
        .await
        .unwrap();
    let stale = Compare::CreateRevision {
        key: format!("{}0000000000000001", keys::ELECTION),
        rev: 1,
    };
    let task = start_controller(client, Arc::clone(&store), Some(stale));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(stored(store.as_ref(), "fast").await.is_none());
    assert!(stored(store.as_ref(), "orphan").await.is_some());
    task.abort();
}

/// The apiserver does not enforce integer formats: under a CRD without bounds a
/// speed beyond any integer type is stored. That object is skipped and named in
/// the log; it must not fail the listing and stall every other class.
#[tokio::test]
async fn an_object_that_does_not_decode_is_skipped_and_named_the_others_sync() {
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let huge = class(
        "huge",
        json!([{"minSpeedMbps": 18_446_744_073_709_551_615_u64}]),
    );
    let (_server, client, _seen) = Server::start_with(vec![(DEVICE_CLASSES, vec![huge, fast()])]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);
    wait_for_key(store.as_ref(), "fast", "the readable class in etcd", |v| {
        v.is_some()
    })
    .await;
    timeout(WAIT, async {
        while !log.text().contains("DeviceClass huge: cannot be read") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line naming the object:\n{}", log.text()));
    assert!(stored(store.as_ref(), "huge").await.is_none());
    task.abort();
}
