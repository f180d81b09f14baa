//! The loop on a routed network, against `MemStore`, `MemoryRoutes` and
//! `MemoryBird`: routes through the own leaves, source tables and rules, and
//! BIRD's configuration following the plan.

use std::sync::Arc;
use std::time::Duration;

use railyard_core::fabric::SOURCE_TABLE_FIRST;
use railyard_core::{keys, route_table_for, HostInventory, IfName, NetworkManifest, Nic, Planner};
use railyard_store::{MemStore, Store};
use tokio::sync::{mpsc, watch};

use super::super::{Reconciler, ReconcilerConfig};
use super::BEAT_EVERY;
use crate::bgp::{BirdControl, MemoryBird};
use crate::kernel::memory::MemoryRoutes;
use crate::kernel::RoutingMode;
use crate::metrics::Metrics;

const NET: &str = "routed";

fn manifest() -> NetworkManifest {
    serde_json::from_str(&format!(
        r#"{{"metadata":{{"name":"{NET}"}},"spec":{{"subnet":"192.168.0.0/16","ipam":{{"hostBlock":6,"interfaceBlock":2}},"masterNets":["10.10.0.0/16","10.11.0.0/16"],"fabric":{{"mode":"routed","bgp":{{"peerAsn":65000}}}}}}}}"#
    ))
    .expect("manifest")
}

/// Host `n`: `rail<k>` at `10.1k.0.(2n+1)/31`, its leaf the even address.
fn inventory(name: &str, n: u32) -> HostInventory {
    HostInventory {
        name: name.to_owned(),
        nics: (0..2)
            .map(|k| Nic {
                name: format!("rail{k}"),
                addresses: vec![format!("10.1{k}.0.{}/31", 2 * n + 1).parse().expect("addr")],
                up: true,
                ..Nic::default()
            })
            .collect(),
    }
}

/// The spec and the plan, as the planner writes them; `departed` marks one.
async fn write_network(store: &MemStore, hosts: &[&str], departed: Option<&str>) {
    let m = manifest();
    store
        .put(
            &keys::network(NET),
            serde_json::to_vec(&m).expect("json"),
            None,
        )
        .await
        .expect("spec");
    let mut planner = Planner::new(&m.validate().expect("valid"), None);
    let invs: Vec<HostInventory> = (0u32..).zip(hosts).map(|(n, h)| inventory(h, n)).collect();
    for inv in &invs {
        planner.upsert_host(inv);
    }
    if let Some(h) = departed {
        planner.remove_host(h, 1);
    }
    let mut meta = planner.meta();
    meta.spec = Some(m.spec.clone());
    meta.spec_revision = 1;
    store
        .put(
            &keys::plan_meta(NET),
            serde_json::to_vec(&meta).expect("json"),
            None,
        )
        .await
        .expect("meta");
    for (name, plan) in planner.hosts() {
        store
            .put(
                &keys::plan_host(NET, name),
                serde_json::to_vec(plan).expect("json"),
                None,
            )
            .await
            .expect("host");
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn name(s: &str) -> IfName {
    s.parse().expect("name")
}

/// Host a's daemon loop on `store`, with rail NICs `rail0` and `rail1` on
/// their /31s and `bird`; stopped through the sender.
struct Daemon {
    kernel: Arc<MemoryRoutes>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _events: mpsc::Sender<crate::watch::KernelEvent>,
}

fn spawn_daemon(store: &MemStore, bird: &Arc<MemoryBird>) -> Daemon {
    let kernel = MemoryRoutes::default();
    for k in 0..2 {
        let nic = name(&format!("rail{k}"));
        kernel.add_device(nic);
        kernel.add_address(&nic, format!("10.1{k}.0.1/31").parse().expect("addr"));
    }
    let kernel = Arc::new(kernel);
    let (events, rx) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    let cfg = ReconcilerConfig {
        node_name: "a".into(),
        routing: RoutingMode::OwnTable,
        rule_priority: 3000,
        quiet: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    };
    let store_dyn: Arc<dyn Store> = Arc::new(store.clone());
    let metrics = Arc::new(Metrics::default());
    let r = Reconciler::new(cfg, store_dyn, Arc::clone(&kernel), Arc::clone(&metrics))
        .with_bird(Arc::clone(bird) as Arc<dyn BirdControl>);
    let task = tokio::spawn(r.run(rx, shutdown));
    Daemon {
        kernel,
        metrics,
        stop,
        task,
        _events: events,
    }
}

impl Daemon {
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("loop stops")
            .expect("no panic");
    }
}

#[tokio::test]
async fn a_routed_host_routes_through_its_leaves_and_announces_its_blocks() {
    let store = MemStore::new();
    let bird = Arc::new(MemoryBird::new("router id 0.0.0.1;\n"));
    let daemon = spawn_daemon(&store, &bird);
    let (kernel, metrics) = (Arc::clone(&daemon.kernel), Arc::clone(&daemon.metrics));

    write_network(&store, &["a", "b", "c"], None).await;
    let table = route_table_for(NET);
    let owned = |t: u32| -> Vec<String> {
        let mut v: Vec<String> = kernel
            .snapshot()
            .into_iter()
            .filter(|a| a.owned && a.route.table == t)
            .map(|a| {
                format!(
                    "{} via {} dev {}",
                    a.route.dst, a.route.gateway, a.route.dev
                )
            })
            .collect();
        v.sort();
        v
    };
    eventually("routes to b and c through a's leaves", || {
        owned(table).len() == 4
    })
    .await;
    for r in owned(table) {
        let leaf = if r.ends_with("rail0") {
            "10.10.0.0"
        } else {
            "10.11.0.0"
        };
        assert!(r.contains(&format!("via {leaf} ")), "{r}");
    }
    eventually("a source table per rail NIC", || {
        owned(SOURCE_TABLE_FIRST) == ["0.0.0.0/0 via 10.10.0.0 dev rail0"]
            && owned(SOURCE_TABLE_FIRST + 1) == ["0.0.0.0/0 via 10.11.0.0 dev rail1"]
    })
    .await;
    let rules: Vec<String> = kernel.rules().iter().map(ToString::to_string).collect();
    assert!(
        rules.contains(&format!(
            "from 10.10.0.1/32 lookup {SOURCE_TABLE_FIRST} priority 3000"
        )),
        "{rules:?}"
    );
    assert!(
        rules.contains(&format!("from 192.168.0.0/16 lookup {table} priority 3000")),
        "{rules:?}"
    );
    let want = [
        "ry_own_rail0_v4",
        "ry_own_rail1_v4",
        "ry_rail0_v4",
        "ry_rail1_v4",
    ];
    let mut protocols = Vec::new();
    for _ in 0..200 {
        protocols = bird.protocols().await.expect("bird");
        if protocols == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(protocols, want);
    let reloads = bird.reloads();
    assert_eq!(metrics.bird_reloads.get(), reloads);
    assert_eq!(metrics.bird_failures.get(), 0);
    assert_eq!(metrics.routed_links_missing.get(), 0);

    // A peer leaving changes neither a's announcements nor its BIRD.
    write_network(&store, &["a", "b", "c"], Some("c")).await;
    eventually("the route to c gone", || owned(table).len() == 2).await;
    assert_eq!(bird.reloads(), reloads);

    // a itself leaving, while its BIRD does not answer: the failure is
    // counted and retried; once BIRD is back nothing is announced, and the
    // source rules and tables are gone.
    bird.stop();
    write_network(&store, &["a", "b", "c"], Some("a")).await;
    eventually("a failure counted", || metrics.bird_failures.get() > 0).await;
    bird.start();
    eventually("a's announcements withdrawn", || bird.reloads() > reloads).await;
    assert_eq!(metrics.bird_reloads.get(), bird.reloads());
    assert!(bird.protocols().await.expect("bird").is_empty());
    eventually("source tables emptied", || {
        owned(SOURCE_TABLE_FIRST).is_empty() && owned(SOURCE_TABLE_FIRST + 1).is_empty()
    })
    .await;
    eventually("source rules removed", || {
        kernel.rules().iter().all(|r| r.table < SOURCE_TABLE_FIRST)
    })
    .await;

    daemon.stop().await;
}

/// The heartbeat the BIRD guard watches (`bgp::guard`): none before a pass
/// has written BIRD's file (a BIRD the guard started then would read a file
/// a previous run left), then every second, also while BIRD is down (the
/// guard starts BIRD on the beats), and none once the daemon stops.
#[tokio::test]
async fn the_daemon_beats_once_birds_file_is_its_own_and_until_it_stops() {
    let store = MemStore::new();
    write_network(&store, &["a", "b"], None).await;
    let previous = "router id 0.0.0.1;\n";
    let bird = Arc::new(MemoryBird::new(previous));
    bird.stop(); // the guard starts BIRD only on beats
    let daemon = spawn_daemon(&store, &bird);
    let beat = || async { bird.last_beat().await.expect("memory") };

    let deadline = tokio::time::Instant::now() + BEAT_EVERY * 3;
    while beat().await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no beat after the first pass"
        );
        // Polled faster than the loop beats: the file must already be this run's.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let file = bird.file().expect("a file");
    assert!(
        file != previous && file.contains("ry_rail0_v4"),
        "beat on a file not its own: {file}"
    );
    assert!(
        daemon.metrics.bird_failures.get() > 0,
        "BIRD is down: the apply failed"
    );
    let first = beat().await;
    tokio::time::sleep(BEAT_EVERY + Duration::from_millis(300)).await;
    let second = beat().await;
    assert!(
        second > first,
        "beats go on while BIRD is down: {first:?}, {second:?}"
    );

    daemon.stop().await;
    let last = beat().await;
    tokio::time::sleep(BEAT_EVERY + Duration::from_millis(300)).await;
    assert_eq!(beat().await, last, "a stopped daemon beat");
}
