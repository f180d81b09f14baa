//! Issue 18's scale runs on a three-member etcd (real etcd 3.6 processes on
//! loopback, as `EtcdCluster` runs them for the fault tier):
//!
//!     cargo bench -p railyard-planner --bench scale [-- HOSTS WATCHERS CONNECTIONS]
//!
//! 1. HOSTS hosts with 8 rails each register at once (each its own put under a
//!    lease, 256 in flight, as route-daemons do) and the clock stops when the
//!    network's status reports every host planned. Target for 10,000: < 3 s.
//! 2. With the plan complete, WATCHERS watchers follow the plan prefix, each on
//!    its own etcd watch (spread over CONNECTIONS client connections, pinned to
//!    the three members in turn) and each decoding what it receives, as a
//!    daemon does. One more host registers; the clock stops when the last
//!    watcher has decoded the newcomer's plan entry.
//! 3. What that join cost etcd: the planner's transactions, the keys and bytes
//!    it wrote, and the watch events delivered (every watcher gets each key).
//!
//! `SCALE_TRACE=1` prints the hosts planned over time during the burst (where
//! the time goes).
//!
//! What is simulated: the daemons. The watchers are tasks in this process on
//! 2 cores, so the last watcher's time includes every other watcher's decoding
//! queued before it (an upper bound for a cluster of real hosts). The route
//! work per daemon after the decode is `join_bench`'s subject.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use railyard_benches::host;
use railyard_core::status::NetworkStatus;
use railyard_core::{keys, HostPlan};
use railyard_planner::metrics::Metrics;
use railyard_planner::service::{self, ServiceConfig};
use railyard_store::testing::EtcdCluster;
use railyard_store::{Store, WatchEvent};
use tokio::sync::mpsc;

const NET: &str = "bench";
const RAILS: u32 = 8;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let hosts = args.first().copied().unwrap_or(10_000) as u32;
    let watchers = args.get(1).copied().unwrap_or(10_000);
    let connections = args.get(2).copied().unwrap_or(30).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(hosts, watchers, connections));
}

async fn run(hosts: u32, watchers: usize, connections: usize) {
    let cluster = EtcdCluster::start(3).expect("three etcd members (run `make deps`)");
    let store: Arc<dyn Store> = Arc::new(cluster.store().await.expect("connect"));
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
    let (stop, rx) = tokio::sync::watch::channel(false);
    let cfg = ServiceConfig {
        identity: "bench".into(),
        ..ServiceConfig::default()
    };
    let planner = tokio::spawn(service::run(store.clone(), cfg, metrics.clone(), rx));
    wait_status(&*store, |s| s.interfaces == 0).await;

    // 1. The registration burst.
    let lease = store.grant(600).await.expect("lease");
    let values: Vec<(String, Vec<u8>)> = (0..hosts)
        .map(|n| {
            let h = host(n, RAILS, false);
            (keys::host(&h.name), serde_json::to_vec(&h).expect("json"))
        })
        .collect();
    let before = metrics.plan_transactions.get();
    let start = Instant::now();
    futures::stream::iter(values)
        .for_each_concurrent(256, |(k, v)| {
            let store = store.clone();
            async move {
                store.put(&k, v, Some(lease)).await.expect("register");
            }
        })
        .await;
    let registered = start.elapsed();
    if std::env::var_os("SCALE_TRACE").is_some() {
        // Where the time goes: hosts planned over time after the burst.
        let mut last = usize::MAX;
        while last != hosts as usize {
            if let Ok(Some(kv)) = store.get(&keys::status(NET)).await {
                if let Ok(s) = kv.decode_json::<NetworkStatus>() {
                    if s.hosts_planned != last {
                        last = s.hosts_planned;
                        let text = metrics.render();
                        let sum = text
                            .lines()
                            .find(|l| l.contains("plan_write_seconds_sum"))
                            .and_then(|l| l.rsplit(' ').next())
                            .unwrap_or("?")
                            .to_owned();
                        eprintln!(
                            "  {:>6.3} s: {last} planned, {} txns, writing took {sum} s so far",
                            start.elapsed().as_secs_f64(),
                            metrics.plan_transactions.get() - before,
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_status(&*store, |s| s.hosts_planned == hosts as usize).await;
    let planned = start.elapsed();
    println!(
        "scale/register: {hosts} hosts x {RAILS} rails into 3 etcd members: registered in \
         {:.3} s, complete plan in {:.3} s (target < 3 s), {} planner transactions",
        registered.as_secs_f64(),
        planned.as_secs_f64(),
        metrics.plan_transactions.get() - before
    );

    // 2. The watchers, each on its own watch of the plan prefix.
    let mut stores: Vec<Arc<dyn Store>> = Vec::with_capacity(connections);
    for c in 0..connections {
        let order = [c % 3, (c + 1) % 3, (c + 2) % 3];
        let s = railyard_store::EtcdStore::connect(cluster.config(&order))
            .await
            .expect("connect a watcher connection");
        stores.push(Arc::new(s));
    }
    let newcomer = host(hosts, RAILS, false);
    let newcomer_key = keys::plan_host(NET, &newcomer.name);
    let from = store
        .get(&keys::status(NET))
        .await
        .expect("status")
        .map(|kv| kv.mod_revision)
        .unwrap_or(0);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Instant>();
    let events = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut opened = 0usize;
    let open_start = Instant::now();
    for w in 0..watchers {
        let s = Arc::clone(&stores[w % connections]);
        let stream = s
            .watch(&keys::plan_prefix(NET), from)
            .await
            .expect("open a watch");
        opened += 1;
        let (tx, key, events, bytes) = (
            seen_tx.clone(),
            newcomer_key.clone(),
            Arc::clone(&events),
            Arc::clone(&bytes),
        );
        tokio::spawn(follow(stream, key, tx, events, bytes));
    }
    println!(
        "scale/watchers: {opened} watches over {connections} connections opened in {:.1} s",
        open_start.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    events.store(0, Ordering::Relaxed);
    bytes.store(0, Ordering::Relaxed);

    // 3. One join, timed to the last watcher, and what it cost etcd.
    let txns_before = metrics.plan_transactions.get();
    let t0 = Instant::now();
    store
        .put(
            &keys::host(&newcomer.name),
            serde_json::to_vec(&newcomer).expect("json"),
            Some(lease),
        )
        .await
        .expect("register the newcomer");
    let mut lat = Vec::with_capacity(watchers);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while lat.len() < watchers {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some(t)) => lat.push(t.duration_since(t0)),
            _ => panic!("only {} of {watchers} watchers saw the join", lat.len()),
        }
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ev = events.load(Ordering::Relaxed);
    println!(
        "scale/join: seen by {watchers} watchers: first {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, \
         last {:.1} ms",
        ms(lat[0]),
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(lat[lat.len() - 1])
    );
    println!(
        "scale/etcd-load per join: {} planner transactions, {} watch events delivered \
         ({:.1} per watcher), {:.1} KiB of values delivered ({} bytes per watcher)",
        metrics.plan_transactions.get() - txns_before,
        ev,
        ev as f64 / watchers as f64,
        bytes.load(Ordering::Relaxed) as f64 / 1024.0,
        bytes.load(Ordering::Relaxed) / watchers as u64
    );
    let _ = stop.send(true);
    let _ = planner.await;
}

/// One watcher: decodes every plan entry it receives, as a daemon does, and
/// reports when it has decoded the newcomer's.
async fn follow(
    mut stream: railyard_store::WatchStream,
    key: String,
    tx: mpsc::UnboundedSender<Instant>,
    events: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
) {
    while let Some(Ok(batch)) = stream.next().await {
        for e in batch {
            events.fetch_add(1, Ordering::Relaxed);
            if let WatchEvent::Put(kv) = e {
                bytes.fetch_add(kv.value.len() as u64, Ordering::Relaxed);
                if kv.key == key && serde_json::from_slice::<HostPlan>(&kv.value).is_ok() {
                    let _ = tx.send(Instant::now());
                }
            }
        }
    }
}

async fn wait_status(store: &dyn Store, done: impl Fn(&NetworkStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(Some(kv)) = store.get(&keys::status(NET)).await {
            if let Ok(s) = kv.decode_json::<NetworkStatus>() {
                if done(&s) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "plan did not converge within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
