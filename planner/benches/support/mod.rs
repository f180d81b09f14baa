//! What the planner benchmarks share: a network of 8 rails (`hostBlock` 14, so
//! up to 16,384 hosts), the planner service over a store, registrations written
//! as route-daemons write them, and waiting for the network's status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use railyard_benches::host;
use railyard_core::keys;
use railyard_core::status::NetworkStatus;
use railyard_planner::metrics::Metrics;
use railyard_planner::service::{self, ServiceConfig};
use railyard_store::{LeaseId, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const NET: &str = "bench";
pub const RAILS: u32 = 8;

/// The planner service, leading, with the bench network written and its
/// empty plan in etcd.
pub struct Running {
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<railyard_planner::error::Result<()>>,
}

impl Running {
    pub async fn start(store: &Arc<dyn Store>) -> Running {
        let spec = serde_json::json!({
            "metadata": {"name": NET},
            "spec": {"subnet": "10.0.0.0/8", "ipam": "{\"hostBlock\": 14, \"interfaceBlock\": 3}"}
        });
        let spec = serde_json::to_vec(&spec).expect("json");
        store
            .put(&keys::network(NET), spec, None)
            .await
            .expect("put network");
        let metrics = Arc::new(Metrics::default());
        let (stop, rx) = watch::channel(false);
        let cfg = ServiceConfig {
            identity: "bench".into(),
            ..ServiceConfig::default()
        };
        let task = tokio::spawn(service::run(Arc::clone(store), cfg, metrics.clone(), rx));
        // Let the planner win the election and write the empty plan first.
        wait_status(store.as_ref(), |s| s.interfaces == 0).await;
        Running {
            metrics,
            stop,
            task,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Registers hosts `0..count` with [`RAILS`] NICs each, 256 puts in flight,
/// each its own put under `lease`, as route-daemons do.
pub async fn register(store: &Arc<dyn Store>, lease: LeaseId, count: u32) {
    let values: Vec<(String, Vec<u8>)> = (0..count)
        .map(|n| {
            let h = host(n, RAILS, false);
            (keys::host(&h.name), serde_json::to_vec(&h).expect("json"))
        })
        .collect();
    futures::stream::iter(values)
        .for_each_concurrent(256, |(k, v)| {
            let store = Arc::clone(store);
            async move {
                store.put(&k, v, Some(lease)).await.expect("register");
            }
        })
        .await;
}

/// Waits (up to 5 minutes) until the bench network's status satisfies `done`.
pub async fn wait_status(store: &dyn Store, done: impl Fn(&NetworkStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(s) = status(store).await {
            if done(&s) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "plan did not converge within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn status(store: &dyn Store) -> Option<NetworkStatus> {
    let kv = store.get(&keys::status(NET)).await.ok()??;
    kv.decode_json::<NetworkStatus>().ok()
}
