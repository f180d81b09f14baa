//! Time from N simultaneous host registrations to a complete plan in a real etcd,
//! and the number of etcd transactions the planner used (issue 3's benchmark).
//!
//!     cargo bench -p railyard-planner --bench planner_convergence
//!
//! Registrations are written as route-daemons write them (each its own put under a
//! shared lease), all at once; the clock stops when the network's status reports
//! every host planned. multi-nic-cni publishes 2 min 22 s for 100 nodes.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_store::testing::EtcdServer;
use railyard_store::Store;
use support::{register, wait_status, Running};

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
    let etcd = EtcdServer::start().expect("etcd must start (run `make deps`)");
    let store: Arc<dyn Store> = Arc::new(etcd.store().await.expect("connect"));
    let planner = Running::start(&store).await;
    let lease = store.grant(600).await.expect("lease");
    let before = planner.metrics.plan_transactions.get();
    let start = Instant::now();
    register(&store, lease, hosts).await;
    wait_status(&*store, |s| s.hosts_planned == hosts as usize).await;
    let took = start.elapsed();
    let txns = planner.metrics.plan_transactions.get() - before;
    planner.stop().await;
    (took, txns)
}
