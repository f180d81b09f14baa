//! Shared pieces of the planner's etcd tests: a real etcd (Debian's etcd-server,
//! started on a loopback port; the tests fail if it cannot start), an in-process
//! planner service, and helpers to register hosts and read the plan.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_core::status::NetworkStatus;
use railyard_core::{keys, HostInventory, HostPlan, Nic};
use railyard_planner::metrics::Metrics;
use railyard_planner::service::{self, ServiceConfig};
use railyard_store::testing::EtcdServer;
use railyard_store::{LeaseId, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Cluster {
    pub etcd: EtcdServer,
    pub store: Arc<dyn Store>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let etcd = EtcdServer::start()
            .expect("a real etcd must start for this test (install etcd-server)");
        let store: Arc<dyn Store> = Arc::new(etcd.store().await.expect("connect to the test etcd"));
        Cluster { etcd, store }
    }

    pub fn planner(&self, cfg: ServiceConfig) -> Planner {
        let metrics = Arc::new(Metrics::default());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(service::run(
            Arc::clone(&self.store),
            cfg,
            Arc::clone(&metrics),
            rx,
        ));
        Planner {
            stop,
            task,
            metrics,
        }
    }

    pub async fn apply(&self, name: &str, ipam: &str, extra: &str) {
        let yaml = format!(
            "metadata: {{name: {name}}}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{ipam}'\n{extra}"
        );
        self.apply_yaml(name, &yaml).await;
    }

    pub async fn apply_yaml(&self, name: &str, yaml: &str) {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("test yaml");
        let json = serde_json::to_vec(&value).expect("json");
        self.store
            .put(&keys::network(name), json, None)
            .await
            .expect("put network");
    }

    /// Registers `host` the way a route-daemon does: under a lease.
    pub async fn register(&self, host: &HostInventory, ttl: i64) -> LeaseId {
        let lease = self.store.grant(ttl).await.expect("grant");
        let value = serde_json::to_vec(host).expect("json");
        self.store
            .put(&keys::host(&host.name), value, Some(lease))
            .await
            .expect("register");
        lease
    }

    pub async fn plan_hosts(&self, net: &str) -> Vec<(String, HostPlan)> {
        let r = self
            .store
            .range(&keys::plan_hosts_prefix(net))
            .await
            .expect("range");
        r.kvs
            .iter()
            .map(|kv| {
                (
                    keys::last_segment(&kv.key).to_string(),
                    kv.decode_json().expect("host plan"),
                )
            })
            .collect()
    }

    pub async fn status(&self, net: &str) -> Option<NetworkStatus> {
        let kv = self.store.get(&keys::status(net)).await.expect("get")?;
        Some(kv.decode_json().expect("status"))
    }
}

pub struct Planner {
    stop: watch::Sender<bool>,
    pub task: JoinHandle<railyard_planner::Result<()>>,
    pub metrics: Arc<Metrics>,
}

impl Planner {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

pub fn fast_config(identity: &str, grace: Duration) -> ServiceConfig {
    ServiceConfig {
        identity: identity.to_string(),
        lease_ttl_secs: 2,
        grace,
        ..ServiceConfig::default()
    }
}

/// Host `n` with `rails` NICs: NIC k is eth{k} at 10.{k}.x.y/16.
pub fn host(name: &str, n: u32, rails: u32) -> HostInventory {
    HostInventory {
        name: name.to_string(),
        nics: (0..rails)
            .map(|k| Nic {
                name: format!("eth{k}"),
                addresses: vec![format!("10.{k}.{}.{}/16", n / 250, n % 250 + 1)
                    .parse()
                    .expect("addr")],
                up: true,
                ..Nic::default()
            })
            .collect(),
    }
}

/// Polls `check` until it returns Some or `timeout` passes; panics with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
