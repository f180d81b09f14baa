//! The reconcile loop against `MemStore` and `MemoryRoutes`: fast, no root.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use railyard_core::{keys, route_table_for, HostInventory, NetworkManifest, Nic, Planner, Route};
use railyard_store::{MemStore, Store};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Reconciler, ReconcilerConfig};
use crate::kernel_routes::{RoutingMode, MAIN_TABLE};
use crate::memory::MemoryRoutes;
use crate::metrics::Metrics;
use crate::policy::PolicyRule;
use crate::watch::KernelEvent;

const NET: &str = "rails";

fn manifest(name: &str, subnet: &str) -> Vec<u8> {
    format!(
        r#"{{"metadata":{{"name":"{name}"}},"spec":{{"subnet":"{subnet}","ipam":{{"hostBlock":6,"interfaceBlock":2}}}}}}"#
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
    store
        .put(&keys::network(NET), manifest(NET, "192.168.0.0/16"), None)
        .await
        .expect("spec");
    let m: NetworkManifest =
        serde_json::from_slice(&manifest(NET, "192.168.0.0/16")).expect("manifest");
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
    store
        .put(&keys::network(name), manifest(name, subnet), None)
        .await
        .expect("spec");
    let m: NetworkManifest = serde_json::from_slice(&manifest(name, subnet)).expect("manifest");
    let meta = railyard_core::PlanMeta {
        network: name.to_owned(),
        spec: Some(m.spec),
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
    use crate::policy::PolicyRules as _;
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
