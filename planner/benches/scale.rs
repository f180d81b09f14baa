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

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use railyard_benches::host;
use railyard_core::{keys, HostPlan};
use railyard_store::testing::EtcdCluster;
use railyard_store::{Store, WatchEvent};
use support::{register, status, wait_status, Running, NET, RAILS};
use tokio::sync::mpsc;

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
    let planner = Running::start(&store).await;
    let metrics = Arc::clone(&planner.metrics);

    // 1. The registration burst.
    let lease = store.grant(600).await.expect("lease");
    let before = metrics.plan_transactions.get();
    let start = Instant::now();
    register(&store, lease, hosts).await;
    let registered = start.elapsed();
    if std::env::var_os("SCALE_TRACE").is_some() {
        // Where the time goes: hosts planned over time after the burst.
        let mut last = usize::MAX;
        while last != hosts as usize {
            if let Some(s) = status(store.as_ref()).await {
                if s.hosts_planned != last {
                    last = s.hosts_planned;
                    eprintln!(
                        "  {:>6.3} s: {last} planned, {} txns",
                        start.elapsed().as_secs_f64(),
                        metrics.plan_transactions.get() - before,
                    );
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
    let open_start = Instant::now();
    for w in 0..watchers {
        let s = Arc::clone(&stores[w % connections]);
        let stream = s
            .watch(&keys::plan_prefix(NET), from)
            .await
            .expect("open a watch");
        let (tx, key, events, bytes) = (
            seen_tx.clone(),
            newcomer_key.clone(),
            Arc::clone(&events),
            Arc::clone(&bytes),
        );
        tokio::spawn(follow(stream, key, tx, events, bytes));
    }
    println!(
        "scale/watchers: {watchers} watches over {connections} connections opened in {:.1} s",
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
    planner.stop().await;
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
