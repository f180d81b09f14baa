//! Time from N simultaneous host registrations to a complete plan in a real etcd,
//! and the number of etcd transactions the planner used (issue 3's benchmark).
//!
//!     cargo bench -p railyard-benches --bench planner_convergence
//!
//! Registrations are written as route-daemons write them (each its own put under a
//! shared lease), all at once; the clock stops when the network's status reports
//! every host planned. multi-nic-cni publishes 2 min 22 s for 100 nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use railyard_benches::host;
use railyard_core::keys;
use railyard_core::status::NetworkStatus;
use railyard_planner::metrics::Metrics;
use railyard_planner::service::{self, ServiceConfig};
use railyard_store::testing::EtcdServer;
use railyard_store::Store;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for n in [1_000u32, 5_000] {
        let (took, txns) = runtime.block_on(converge(n));
        println!(
            "planner_convergence/{n}_hosts: {:.3} s to a complete plan, {txns} etcd transactions",
            took.as_secs_f64()
        );
    }
}

async fn converge(hosts: u32) -> (Duration, u64) {
    let etcd = EtcdServer::start().expect("etcd must start (install etcd-server)");
    let store: Arc<dyn Store> = Arc::new(etcd.store().await.expect("connect"));
    let spec = serde_json::json!({
        "metadata": {"name": "bench"},
        "spec": {"subnet": "10.0.0.0/8", "ipam": "{\"hostBlock\": 14, \"interfaceBlock\": 3}"}
    });
    store
        .put(
            &keys::network("bench"),
            serde_json::to_vec(&spec).expect("json"),
            None,
        )
        .await
        .expect("put network");
    let metrics = Arc::new(Metrics::default());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let cfg = ServiceConfig {
        identity: "bench".into(),
        ..ServiceConfig::default()
    };
    let planner = tokio::spawn(service::run(store.clone(), cfg, metrics.clone(), rx));
    // Let the planner win the election and write the empty plan first.
    wait_status(&*store, |s| s.interfaces == 0).await;
    let lease = store.grant(600).await.expect("lease");
    let values: Vec<(String, Vec<u8>)> = (0..hosts)
        .map(|n| {
            let h = host(n, 8, false);
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
    wait_status(&*store, |s| s.hosts_planned == hosts as usize).await;
    let took = start.elapsed();
    let txns = metrics.plan_transactions.get() - before;
    let _ = stop.send(true);
    let _ = planner.await;
    (took, txns)
}

async fn wait_status(store: &dyn Store, done: impl Fn(&NetworkStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(kv)) = store.get(&keys::status("bench")).await {
            if let Ok(s) = kv.decode_json::<NetworkStatus>() {
                if done(&s) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "plan did not converge within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
