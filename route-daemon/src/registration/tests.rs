//! Registration against `MemStore`: written once, rewritten only on change,
//! re-registered under a new lease when the old one is lost.

use std::sync::Mutex;

use async_trait::async_trait;
use railyard_core::Nic;
use railyard_store::{KeyValue, MemStore};
use tokio::task::JoinHandle;

use super::*;
use crate::error::Result;

#[derive(Debug)]
struct Fixed(Mutex<HostInventory>);

#[async_trait]
impl InventorySource for Fixed {
    async fn inventory(&self) -> Result<HostInventory> {
        Ok(self.0.lock().map(|g| g.clone()).unwrap_or_default())
    }
}

fn inventory(addr: &str) -> HostInventory {
    HostInventory {
        name: "node-1".into(),
        nics: vec![Nic {
            name: "eth1".into(),
            addresses: vec![addr.parse().expect("addr")],
            up: true,
            ..Nic::default()
        }],
    }
}

struct Running {
    store: MemStore,
    source: Arc<Fixed>,
    links: Arc<Notify>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn start(store: &MemStore) -> Running {
    let source = Arc::new(Fixed(Mutex::new(inventory("10.0.1.5/24"))));
    let links = Arc::new(Notify::new());
    let metrics = Arc::new(Metrics::default());
    let (stop, shutdown) = watch::channel(false);
    let cfg = RegistrationConfig {
        node_name: "node-1".into(),
        lease_ttl_secs: 2,
        debounce: Duration::from_millis(20),
    };
    let task = tokio::spawn(run_registration(
        Arc::new(store.clone()),
        Arc::clone(&source) as Arc<dyn InventorySource>,
        cfg,
        Arc::clone(&links),
        Arc::clone(&metrics),
        shutdown,
    ));
    Running {
        store: store.clone(),
        source,
        links,
        metrics,
        stop,
        task,
    }
}

impl Running {
    async fn key(&self) -> Option<KeyValue> {
        self.store.get(&keys::host("node-1")).await.ok().flatten()
    }

    /// Waits for the key to satisfy `check`.
    async fn until(&self, what: &str, check: impl Fn(&KeyValue) -> bool) -> KeyValue {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(kv) = self.key().await.filter(|kv| check(kv)) {
                return kv;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

fn holds(kv: &KeyValue, addr: &str) -> bool {
    kv.decode_json::<HostInventory>().ok() == Some(inventory(addr))
}

#[tokio::test]
async fn registers_under_a_lease_and_rewrites_only_on_change() {
    let r = start(&MemStore::new());
    let first = r.until("registration", |kv| holds(kv, "10.0.1.5/24")).await;
    assert!(first.lease.is_some());
    assert_eq!(
        r.metrics.registration_state(),
        RegistrationState::Registered
    );

    // A link event that changed nothing registrable: no write.
    r.links.notify_one();
    sleep(Duration::from_millis(150)).await;
    let same = r.key().await.expect("still registered");
    assert_eq!(same.version, 1, "unchanged inventory must not be rewritten");

    // A burst of events after a real change: one write.
    if let Ok(mut g) = r.source.0.lock() {
        *g = inventory("10.0.1.6/24");
    }
    for _ in 0..5 {
        r.links.notify_one();
        sleep(Duration::from_millis(5)).await;
    }
    let changed = r.until("new address", |kv| holds(kv, "10.0.1.6/24")).await;
    assert_eq!(changed.version, 2);
    assert_eq!(changed.lease, first.lease, "same lease");
    sleep(Duration::from_millis(100)).await;
    assert_eq!(r.metrics.registrations.get(), 2);
    r.stop().await;
}

#[tokio::test]
async fn a_lost_lease_means_a_new_lease_and_a_new_registration() {
    let r = start(&MemStore::new());
    let first = r.until("registration", |kv| kv.lease.is_some()).await;
    let lease = first.lease.expect("leased");
    r.store.revoke(lease).await.expect("revoke");
    let again = r
        .until("re-registration", |kv| kv.lease.is_some_and(|l| l != lease))
        .await;
    assert!(holds(&again, "10.0.1.5/24"));
    r.stop().await;
}

#[tokio::test]
async fn an_unreachable_etcd_only_delays_the_registration() {
    let store = MemStore::new();
    store.set_available(false);
    let r = start(&store);
    sleep(Duration::from_millis(300)).await;
    assert_eq!(
        r.metrics.registration_state(),
        RegistrationState::Unregistered
    );
    assert!(r.metrics.store_errors.get() >= 1);
    store.set_available(true);
    r.until("registration after the outage", |kv| {
        holds(kv, "10.0.1.5/24")
    })
    .await;
    r.stop().await;
}

#[tokio::test]
async fn shutdown_leaves_the_registration_to_its_lease() {
    let r = start(&MemStore::new());
    r.until("registration", |kv| kv.lease.is_some()).await;
    let store = r.store.clone();
    r.stop().await;
    assert!(
        store
            .get(&keys::host("node-1"))
            .await
            .expect("get")
            .is_some(),
        "a restarting daemon must not look departed"
    );
}
