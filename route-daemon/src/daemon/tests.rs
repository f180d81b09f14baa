//! The reconcile loop against `MemStore` and `MemoryRoutes`: fast, no root.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use railyard_allocdb::{AllocDb, Options};
use railyard_core::{
    keys, route_table_for, HostInventory, IfName, NetworkManifest, Nic, Planner, Route,
};
use railyard_store::{
    KeyValue, LeaseId, MemStore, Range, Store, StoreError, Txn, TxnOutcome, WatchStream,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{shim_name, Reconciler, ReconcilerConfig};
use crate::kernel::memory::MemoryRoutes;
use crate::kernel::{GatewayShims, PolicyRule, RoutingMode, MAIN_TABLE};
use crate::metrics::Metrics;
use crate::watch::KernelEvent;

const NET: &str = "rails";

fn manifest(name: &str, subnet: &str) -> Vec<u8> {
    manifest_with(name, subnet, None)
}

/// With `spec.plugin.type` set to `plugin`.
fn manifest_with(name: &str, subnet: &str, plugin: Option<&str>) -> Vec<u8> {
    let plugin = plugin.map_or(String::new(), |p| format!(r#","plugin":{{"type":"{p}"}}"#));
    format!(
        r#"{{"metadata":{{"name":"{name}"}},"spec":{{"subnet":"{subnet}","ipam":{{"hostBlock":6,"interfaceBlock":2}}{plugin}}}}}"#
    )
    .into_bytes()
}

/// Host `n`: eth1 at 10.0.1.(n+1)/24 and eth2 at 10.0.2.(n+1)/24.
fn inventory(name: &str, n: u32) -> HostInventory {
    HostInventory {
        name: name.to_owned(),
        nics: (1..=2)
            .map(|k| Nic {
                name: format!("eth{k}"),
                addresses: vec![format!("10.0.{k}.{}/24", n + 1).parse().expect("addr")],
                up: true,
                ..Nic::default()
            })
            .collect(),
    }
}

/// Writes the spec and a plan of `hosts` the way the planner lays it out.
async fn write_network(store: &MemStore, hosts: &[&str]) -> Planner {
    write_network_with(store, hosts, None).await
}

/// [`write_network`] with the spec's delegate plugin.
async fn write_network_with(store: &MemStore, hosts: &[&str], plugin: Option<&str>) -> Planner {
    let manifest = manifest_with(NET, "192.168.0.0/16", plugin);
    store
        .put(&keys::network(NET), manifest.clone(), None)
        .await
        .expect("spec");
    let m: NetworkManifest = serde_json::from_slice(&manifest).expect("manifest");
    let mut planner = Planner::new(&m.validate().expect("valid"), None);
    let invs: Vec<HostInventory> = (0u32..).zip(hosts).map(|(n, h)| inventory(h, n)).collect();
    planner.register_rails(&invs);
    for inv in &invs {
        planner.upsert_host(inv);
    }
    // The planner publishes the spec it accepted with the plan; daemons follow that.
    let mut meta = planner.meta();
    meta.spec = Some(m.spec.clone());
    meta.spec_revision = 1;
    let meta = serde_json::to_vec(&meta).expect("json");
    store
        .put(&keys::plan_meta(NET), meta, None)
        .await
        .expect("meta");
    for (name, plan) in planner.hosts() {
        let value = serde_json::to_vec(plan).expect("json");
        store
            .put(&keys::plan_host(NET, name), value, None)
            .await
            .expect("host");
    }
    planner
}

/// The spec and an empty plan that publishes it, as the planner writes a
/// network no host is planned in yet.
async fn write_spec_only(store: &MemStore, name: &str, subnet: &str) {
    let m: NetworkManifest = serde_json::from_slice(&manifest(name, subnet)).expect("manifest");
    write_spec_and_meta(store, &m).await;
}

/// The network's spec, and a plan meta that accepted it (no host planned).
async fn write_spec_and_meta(store: &MemStore, m: &NetworkManifest) {
    let name = &m.metadata.name;
    store
        .put(
            &keys::network(name),
            serde_json::to_vec(m).expect("json"),
            None,
        )
        .await
        .expect("spec");
    let meta = railyard_core::PlanMeta {
        network: name.clone(),
        spec: Some(m.spec.clone()),
        spec_revision: 1,
        ..railyard_core::PlanMeta::default()
    };
    store
        .put(
            &keys::plan_meta(name),
            serde_json::to_vec(&meta).expect("json"),
            None,
        )
        .await
        .expect("meta");
}

/// Deletes a network the way the planner does: the spec, then its whole plan.
/// Daemons act on the plan going, not on the spec.
async fn delete_network(store: &MemStore, name: &str) {
    store
        .delete(&keys::network(name))
        .await
        .expect("delete spec");
    let txn = railyard_store::Txn::new().then(railyard_store::Op::DeletePrefix {
        prefix: keys::plan_prefix(name),
    });
    store.txn(txn).await.expect("delete plan");
}

struct Daemon {
    kernel: Arc<MemoryRoutes>,
    metrics: Arc<Metrics>,
    events: mpsc::Sender<KernelEvent>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Daemon {
    fn start(store: &MemStore, me: &str, routing: RoutingMode) -> Daemon {
        Daemon::start_on(store, me, routing, MemoryRoutes::default())
    }

    fn start_on(store: &MemStore, me: &str, routing: RoutingMode, kernel: MemoryRoutes) -> Daemon {
        let kernel = Arc::new(kernel);
        let metrics = Arc::new(Metrics::default());
        let (events, rx) = mpsc::channel(16);
        let (stop, shutdown) = watch::channel(false);
        let cfg = ReconcilerConfig {
            node_name: me.to_owned(),
            routing,
            rule_priority: 3000,
            quiet: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        };
        let store: Arc<dyn Store> = Arc::new(store.clone());
        let r = Reconciler::new(cfg, store, Arc::clone(&kernel), Arc::clone(&metrics));
        let task = tokio::spawn(r.run(rx, shutdown));
        Daemon {
            kernel,
            metrics,
            events,
            stop,
            task,
        }
    }

    /// Our routes, sorted by destination.
    fn routes(&self) -> Vec<Route> {
        let mut r: Vec<Route> = self
            .kernel
            .snapshot()
            .into_iter()
            .filter(|a| a.owned)
            .map(|a| a.route)
            .collect();
        r.sort_by_key(|r| (r.table, r.dst));
        r
    }

    fn dsts(&self) -> Vec<String> {
        self.routes().iter().map(|r| r.dst.to_string()).collect()
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("loop stops on shutdown")
            .expect("loop did not panic");
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Gives the loop time to do something it must not do.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

fn rule(table: u32) -> PolicyRule {
    PolicyRule {
        from: "192.168.0.0/16".parse().expect("net"),
        table,
        priority: 3000,
    }
}

#[tokio::test]
async fn a_plan_brings_routes_and_the_rule() {
    let store = MemStore::new();
    let d = Daemon::start(&store, "a", RoutingMode::OwnTable);
    write_network(&store, &["a", "b", "c"]).await;
    let t = route_table_for(NET);
    eventually("routes to b and c on both rails", || async {
        d.routes().len() == 4
    })
    .await;
    assert_eq!(
        d.dsts(),
        [
            "192.168.1.0/24",
            "192.168.2.0/24",
            "192.168.65.0/24",
            "192.168.66.0/24"
        ]
    );
    let r = &d.routes()[0];
    assert_eq!(
        (r.table, r.gateway.to_string(), &*r.dev),
        (t, "10.0.1.2".into(), "eth1")
    );
    assert_eq!(d.kernel.rules(), [rule(t)]);
    let m = d.metrics.render();
    assert!(
        m.contains(r#"railyard_route_daemon_routes_desired{network="rails"} 4"#),
        "{m}"
    );
    assert!(
        m.contains(r#"railyard_route_daemon_routes_applied{network="rails"} 4"#),
        "{m}"
    );
    d.stop().await;
    // Shutdown leaves routes in place.
}

#[tokio::test]
async fn a_departed_or_removed_host_loses_its_routes_and_gets_them_back() {
    let store = MemStore::new();
    let d = Daemon::start(&store, "a", RoutingMode::OwnTable);
    let mut planner = write_network(&store, &["a", "b", "c"]).await;
    eventually("4 routes", || async { d.routes().len() == 4 }).await;

    planner.remove_host("c", 1);
    let departed = serde_json::to_vec(planner.host("c").expect("c")).expect("json");
    store
        .put(&keys::plan_host(NET, "c"), departed, None)
        .await
        .expect("put");
    eventually("routes to c gone", || async { d.routes().len() == 2 }).await;
    assert_eq!(d.dsts(), ["192.168.1.0/24", "192.168.65.0/24"]);

    planner.upsert_host(&inventory("c", 2));
    let back = serde_json::to_vec(planner.host("c").expect("c")).expect("json");
    store
        .put(&keys::plan_host(NET, "c"), back, None)
        .await
        .expect("put");
    eventually("routes to c back", || async { d.routes().len() == 4 }).await;

    store
        .delete(&keys::plan_host(NET, "b"))
        .await
        .expect("delete");
    eventually("routes to b gone", || async { d.routes().len() == 2 }).await;
    assert_eq!(d.dsts(), ["192.168.2.0/24", "192.168.66.0/24"]);
    d.stop().await;
}

#[tokio::test]
async fn a_deleted_spec_takes_its_routes_and_rule_along() {
    let store = MemStore::new();
    let d = Daemon::start(&store, "a", RoutingMode::OwnTable);
    write_network(&store, &["a", "b"]).await;
    eventually("routes", || async { d.routes().len() == 2 }).await;
    let foreign = PolicyRule {
        from: "10.99.0.0/16".parse().expect("net"),
        ..rule(route_table_for(NET))
    };
    d.kernel.add_foreign_rule(foreign);

    delete_network(&store, NET).await;
    eventually("routes and rule gone", || async {
        d.routes().is_empty() && d.kernel.rules() == [foreign]
    })
    .await;
    let m = d.metrics.render();
    assert!(
        !m.contains(r#"network="rails""#),
        "series of a gone network stay: {m}"
    );
    d.stop().await;
}

/// This host's shims, as (name, parent, addresses).
async fn shims(kernel: &MemoryRoutes) -> Vec<(String, String, Vec<String>)> {
    kernel
        .owned_shims()
        .await
        .expect("memory never fails")
        .into_iter()
        .map(|s| {
            let parent = s.parent.map(|p| p.to_string()).unwrap_or_default();
            let addrs = s.addresses.iter().map(ToString::to_string).collect();
            (s.name.to_string(), parent, addrs)
        })
        .collect()
}

#[tokio::test]
async fn macvlan_shims_follow_this_hosts_blocks_and_come_back_when_deleted() {
    let store = MemStore::new();
    let kernel = MemoryRoutes::default();
    for nic in ["eth1", "eth2"] {
        kernel.add_device(nic.parse().expect("nic"));
    }
    let d = Daemon::start_on(&store, "a", RoutingMode::OwnTable, kernel);
    let planner = write_network_with(&store, &["a", "b"], Some("macvlan")).await;
    // Host a (index 0) has 192.168.0.0/24 on eth1 (rail 0), 192.168.64.0/24 on eth2.
    let want = vec![
        (
            shim_name(NET, "eth1", 0).to_string(),
            "eth1".to_owned(),
            vec!["192.168.0.1/24".to_owned()],
        ),
        (
            shim_name(NET, "eth2", 1).to_string(),
            "eth2".to_owned(),
            vec!["192.168.64.1/24".to_owned()],
        ),
    ];
    let mut sorted = want.clone();
    sorted.sort();
    let want = sorted;
    eventually("a shim per rail", || async {
        shims(&d.kernel).await == want
    })
    .await;
    assert_eq!(d.routes().len(), 2, "and the routes to b as ever");

    // Deleted by hand: the link event brings it back.
    let eth1: IfName = want[0].0.parse().expect("name");
    d.kernel.delete_link(&eth1);
    d.events
        .send(KernelEvent::LinksChanged)
        .await
        .expect("send");
    eventually("the shim back", || async { shims(&d.kernel).await == want }).await;

    // This host's blocks go (it left the plan): so do its shims; back with them.
    store
        .delete(&keys::plan_host(NET, "a"))
        .await
        .expect("delete");
    eventually("shims gone with the blocks", || async {
        shims(&d.kernel).await.is_empty()
    })
    .await;
    let entry = serde_json::to_vec(planner.host("a").expect("a")).expect("json");
    store
        .put(&keys::plan_host(NET, "a"), entry, None)
        .await
        .expect("put");
    eventually("shims back with the blocks", || async {
        shims(&d.kernel).await == want
    })
    .await;

    // Another plugin (the spec changed to ipvlan): no shims.
    let mut meta = planner.meta();
    let m: NetworkManifest =
        serde_json::from_slice(&manifest_with(NET, "192.168.0.0/16", Some("ipvlan")))
            .expect("manifest");
    meta.spec = Some(m.spec);
    store
        .put(
            &keys::plan_meta(NET),
            serde_json::to_vec(&meta).expect("json"),
            None,
        )
        .await
        .expect("meta");
    eventually("no shims for ipvlan", || async {
        shims(&d.kernel).await.is_empty()
    })
    .await;
    write_network_with(&store, &["a", "b"], Some("macvlan")).await;
    eventually("macvlan again", || async { shims(&d.kernel).await == want }).await;

    // A link of someone else's is never touched, even under a shim's name.
    let foreign: IfName = "ry-0-operator".parse().expect("name");
    d.kernel
        .add_foreign_link(foreign, "eth1".parse().expect("nic"), None);

    // The network deleted: its shims go, the foreign link stays.
    delete_network(&store, NET).await;
    eventually("shims gone with the network", || async {
        shims(&d.kernel).await.is_empty() && d.routes().is_empty()
    })
    .await;
    assert!(d.kernel.link(&foreign).is_some(), "a foreign link stays");
    d.stop().await;
}

#[tokio::test]
async fn etcd_unavailable_deletes_nothing_and_drift_is_still_repaired() {
    let store = MemStore::new();
    let d = Daemon::start(&store, "a", RoutingMode::OwnTable);
    let mut planner = write_network(&store, &["a", "b", "c"]).await;
    eventually("routes", || async { d.routes().len() == 4 }).await;
    let before = d.routes();

    store.set_available(false);
    d.events.send(KernelEvent::Overrun).await.expect("send");
    settle().await;
    assert_eq!(d.routes(), before, "an outage must not change routes");

    // Drift during the outage is repaired from the last known plan.
    d.kernel.remove(&before[1]);
    let table = before[1].table;
    d.events
        .send(KernelEvent::RoutesChanged { table })
        .await
        .expect("send");
    eventually("route restored", || async { d.routes() == before }).await;
    assert_eq!(d.metrics.routes_repaired.get(), 1);

    // Back: a change made by then is picked up.
    store.set_available(true);
    store
        .delete(&keys::plan_host(NET, "c"))
        .await
        .expect("delete");
    planner.remove_host("c", 1);
    eventually("routes to c gone after the outage", || async {
        d.routes().len() == 2
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn nothing_is_touched_before_the_first_listing() {
    let store = MemStore::new();
    write_network(&store, &["a", "b"]).await;
    let t = route_table_for(NET);
    let stale = Route {
        dst: "192.168.9.0/24".parse().expect("net"),
        gateway: "10.0.1.10".parse().expect("ip"),
        dev: "eth1".parse().expect("valid name"),
        table: t,
    };
    // A route of ours left by a previous run, for a host no longer planned.
    let kernel = MemoryRoutes::default();
    crate::reconcile(vec![stale.clone()], &[t], &kernel)
        .await
        .expect("seed");
    store.set_available(false);
    let d = Daemon::start_on(&store, "a", RoutingMode::OwnTable, kernel);
    settle().await;
    assert_eq!(d.routes(), [stale], "no listing yet: hands off");
    store.set_available(true);
    eventually("stale route replaced by the plan's", || async {
        d.dsts() == ["192.168.1.0/24", "192.168.65.0/24"]
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn a_network_deleted_while_down_is_cleaned_up_through_its_rule() {
    let store = MemStore::new();
    write_spec_only(&store, "other", "10.64.0.0/16").await;
    let gone = route_table_for("vanished");
    let kernel = MemoryRoutes::default();
    let leftover = Route {
        dst: "192.168.1.0/24".parse().expect("net"),
        gateway: "10.0.1.2".parse().expect("ip"),
        dev: "eth1".parse().expect("valid name"),
        table: gone,
    };
    crate::reconcile(vec![leftover], &[gone], &kernel)
        .await
        .expect("seed");
    use crate::kernel::PolicyRules as _;
    kernel.ensure_policy_rule(rule(gone)).await.expect("rule");
    let d = Daemon::start_on(&store, "a", RoutingMode::OwnTable, kernel);
    let other = PolicyRule {
        from: "10.64.0.0/16".parse().expect("net"),
        ..rule(route_table_for("other"))
    };
    eventually("old table emptied and its rule replaced", || async {
        d.routes().is_empty() && d.kernel.rules() == [other]
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn main_table_mode_shares_table_254_without_rules() {
    let store = MemStore::new();
    let d = Daemon::start(&store, "b", RoutingMode::MainTable);
    write_network(&store, &["a", "b", "c"]).await;
    eventually("routes in main", || async { d.routes().len() == 4 }).await;
    assert!(d.routes().iter().all(|r| r.table == MAIN_TABLE));
    assert!(d.kernel.rules().is_empty());
    delete_network(&store, NET).await;
    eventually("main table emptied of ours", || async {
        d.routes().is_empty()
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn refused_routes_are_retried() {
    let store = MemStore::new();
    let kernel = MemoryRoutes::default();
    kernel.refuse_dev("eth2", "Network is down");
    let d = Daemon::start_on(&store, "a", RoutingMode::OwnTable, kernel);
    write_network(&store, &["a", "b"]).await;
    eventually("rail 0 route", || async { d.routes().len() == 1 }).await;
    let m = d.metrics.render();
    assert!(
        m.contains(r#"railyard_route_daemon_route_failures{network="rails"} 1"#),
        "{m}"
    );
    // The device comes up without any event reaching the loop: the retry finds it.
    d.kernel.accept_dev("eth2");
    eventually("rail 1 route after a retry", || async {
        d.routes().len() == 2
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn bursts_of_peer_changes_end_exactly_at_the_full_computation() {
    let store = MemStore::new();
    let names: Vec<String> = (0..12).map(|i| format!("h{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut planner = write_network(&store, &refs).await;
    let d = Daemon::start(&store, "h00", RoutingMode::OwnTable);
    eventually("initial routes", || async { d.routes().len() == 22 }).await;

    // Joins, departures, returns and removals of peers, in bursts that land in
    // one coalescing window and across windows; the table must end where a full
    // computation from the final plan puts it.
    let mut seed: u64 = 7;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for round in 0..40u32 {
        let n = 1 + next() % (names.len() - 1);
        let host = &names[n];
        let key = keys::plan_host(NET, host);
        match next() % 3 {
            0 => {
                planner.remove_host(host, u64::from(round));
            }
            1 => {
                planner.upsert_host(&inventory(host, n as u32));
            }
            _ => {
                planner.remove_host(host, 0);
                planner.expire(u64::MAX / 2, 1);
            }
        }
        match planner.host(host) {
            Some(plan) => {
                let value = serde_json::to_vec(plan).expect("json");
                store.put(&key, value, None).await.expect("put");
            }
            None => {
                store.delete(&key).await.expect("delete");
            }
        }
        if next() % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let t = route_table_for(NET);
    let want = railyard_core::desired_routes(&planner.to_plan(), "h00", t);
    eventually("routes of the final plan", || async { d.routes() == want }).await;
    d.stop().await;
}

/// `MemStore` whose open watches can be cut: each then ends, or fails with an
/// error `watch_or_relist` does not retry (its stream ends after it), as etcd
/// may do to a watch. Counts the watches opened per prefix.
struct Cutting {
    inner: MemStore,
    cuts: watch::Sender<u64>,
    fatal: Arc<AtomicBool>,
    opened: Mutex<Vec<String>>,
}

impl Cutting {
    fn new(inner: MemStore) -> Cutting {
        Cutting {
            inner,
            cuts: watch::channel(0).0,
            fatal: Arc::new(AtomicBool::new(false)),
            opened: Mutex::new(Vec::new()),
        }
    }

    fn cut(&self, fatal: bool) {
        self.fatal.store(fatal, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn opened(&self, prefix: &str) -> usize {
        let opened = self.opened.lock().expect("lock");
        opened.iter().filter(|p| *p == prefix).count()
    }
}

#[async_trait::async_trait]
impl Store for Cutting {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        self.inner.range(prefix).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.inner.txn(txn).await
    }
    async fn grant(&self, ttl_secs: i64) -> Result<LeaseId, StoreError> {
        self.inner.grant(ttl_secs).await
    }
    async fn keep_alive_once(&self, lease: LeaseId) -> Result<i64, StoreError> {
        self.inner.keep_alive_once(lease).await
    }
    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke(lease).await
    }
    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        self.opened.lock().expect("lock").push(prefix.to_owned());
        let inner = self.inner.watch(prefix, from_revision).await?;
        let mut cuts = self.cuts.subscribe();
        let opened_at = *cuts.borrow_and_update();
        let fatal = Arc::clone(&self.fatal);
        let stream =
            futures::stream::unfold((inner, cuts, false), move |(mut inner, mut cuts, done)| {
                let fatal = Arc::clone(&fatal);
                async move {
                    if done {
                        return None;
                    }
                    let item = tokio::select! {
                        biased;
                        _ = cuts.wait_for(|n| *n != opened_at) => None,
                        item = inner.next() => Some(item),
                    };
                    match item {
                        Some(item) => item.map(|i| (i, (inner, cuts, false))),
                        None if fatal.load(Ordering::SeqCst) => {
                            let e = StoreError::Other {
                                context: "watch".into(),
                                message: "canceled by the server".into(),
                            };
                            Some((Err(e), (inner, cuts, true)))
                        }
                        None => None,
                    }
                }
            });
        Ok(stream.boxed())
    }
}

/// The blocks the allocation database holds as planned, sorted.
fn planned_blocks(db: &AllocDb) -> Vec<String> {
    let mut b: Vec<String> = db
        .stats()
        .blocks
        .iter()
        .filter(|b| b.in_plan)
        .map(|b| b.cidr.to_string())
        .collect();
    b.sort();
    b
}

/// The IPAM side follows the plans through the reconciler's watch: when that
/// watch ends, or fails with an error the store's follower gives up on, it is
/// opened again and a later change of this host's plan still reaches the
/// allocation database.
#[tokio::test]
async fn ipam_follows_plans_through_a_watch_that_ends_or_fails() {
    for fatal in [false, true] {
        let mem = MemStore::new();
        let store = Arc::new(Cutting::new(mem.clone()));
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(AllocDb::open(dir.path(), Options::default()).expect("open"));
        let (configs, rx) = mpsc::unbounded_channel();
        let (stop, shutdown) = watch::channel(false);
        let applier = tokio::spawn(crate::ipam::apply_networks(
            rx,
            Arc::clone(&db),
            shutdown.clone(),
        ));
        let cfg = ReconcilerConfig {
            node_name: "a".to_owned(),
            routing: RoutingMode::OwnTable,
            rule_priority: 3000,
            quiet: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        };
        let kernel = Arc::new(MemoryRoutes::default());
        let shared: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
        let r = Reconciler::new(cfg, shared, kernel, Arc::new(Metrics::default()))
            .feeding_ipam(configs);
        let (_events, events_rx) = mpsc::channel(16);
        let task = tokio::spawn(r.run(events_rx, shutdown));

        let planner = write_network(&mem, &["a", "b"]).await;
        let first = ["192.168.0.0/24", "192.168.64.0/24"];
        eventually("a's blocks in the allocation database", || async {
            planned_blocks(&db) == first
        })
        .await;
        assert_eq!(store.opened(keys::PLANS), 1);

        store.cut(fatal);
        // This host moves to index 5: new blocks on both rails.
        let mut moved = planner.host("a").expect("a").clone();
        moved.index = 5;
        for b in &mut moved.blocks {
            b.cidr = format!("192.168.{}.0/24", 64 * b.interface + 5)
                .parse()
                .expect("net");
        }
        mem.put(
            &keys::plan_host(NET, "a"),
            serde_json::to_vec(&moved).expect("json"),
            None,
        )
        .await
        .expect("put");
        eventually("a's new blocks after the watch was resumed", || async {
            planned_blocks(&db) == ["192.168.5.0/24", "192.168.69.0/24"]
        })
        .await;
        assert!(
            store.opened(keys::PLANS) >= 2,
            "the plan watch was not cut (fatal: {fatal})"
        );
        let _ = stop.send(true);
        task.await.expect("reconciler");
        applier.await.expect("applier");
    }
}

/// The plan meta of a network whose accepted spec asks for `ifacer` (YAML),
/// with masterNets 10.0.0.0/16 and no host planned.
async fn write_ifacer_spec(store: &MemStore, ifacer: &str) {
    let yaml = format!(
        "metadata: {{name: {NET}}}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: {{hostBlock: 6, interfaceBlock: 2}}\n  masterNets: [10.0.0.0/16]\n{ifacer}"
    );
    let m: NetworkManifest = serde_yaml::from_str(&yaml).expect("manifest");
    m.validate().expect("valid");
    write_spec_and_meta(store, &m).await;
}

#[tokio::test]
async fn the_ifacer_makes_the_rail_vlan_and_moves_the_address_again_after_drift() {
    let store = MemStore::new();
    let kernel = MemoryRoutes::default();
    let rail0: IfName = "rail0".parse().expect("name");
    let vlan: IfName = "rail0.42".parse().expect("name");
    let addr: ipnet::IpNet = "10.0.0.5/16".parse().expect("addr");
    kernel.add_device(rail0);
    kernel.add_address(&rail0, addr);
    let d = Daemon::start_on(&store, "a", RoutingMode::OwnTable, kernel);
    write_ifacer_spec(&store, "  ifacer: {vlanID: 42}\n").await;
    eventually("the VLAN holding the rail address", || async {
        d.kernel
            .link(&vlan)
            .is_some_and(|l| l.up && l.addresses == [addr] && l.vlan_id == Some(42))
    })
    .await;
    assert!(d.kernel.link(&rail0).expect("kept").addresses.is_empty());
    assert_eq!(
        d.kernel.link(&vlan).and_then(|l| l.alias).as_deref(),
        Some("railyard:ifacer rails")
    );

    // Someone puts the address back on the parent: the link event moves it again.
    d.kernel.add_address(&rail0, addr);
    d.events
        .send(KernelEvent::LinksChanged)
        .await
        .expect("send");
    eventually("the address moved again", || async {
        d.kernel
            .link(&rail0)
            .is_some_and(|l| l.addresses.is_empty())
    })
    .await;

    // ifacer removed from the spec: the VLAN stays, holding the rail.
    write_ifacer_spec(&store, "").await;
    settle().await;
    assert_eq!(
        d.kernel.link(&vlan).map(|l| l.addresses),
        Some(vec![addr]),
        "never deleted"
    );
    d.stop().await;
}
