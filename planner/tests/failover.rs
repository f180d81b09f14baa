//! Leader election and failover with real planner processes and a real etcd
//! (started by the test on a loopback port; the test fails if it cannot start).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use railyard_core::keys;
use railyard_planner::election;
use railyard_store::{Op, Txn};
use support::{host, wait_for, Cluster};

const TTL: u64 = 2;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn planner_process(endpoint: &str, identity: &str) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_railyard-planner"))
        .args(["--etcd-endpoints", endpoint, "--identity", identity])
        .args(["--lease-ttl", &TTL.to_string(), "--metrics-addr", "off"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("railyard-planner starts");
    Proc(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_within_the_lease_ttl_and_renumbers_nothing() {
    let c = Cluster::start().await;
    c.apply("rails", r#"{"hostBlock": 6, "interfaceBlock": 2}"#, "")
        .await;
    let mut a = Some(planner_process(&c.etcd.endpoint(), "planner-a"));
    wait_for(Duration::from_secs(10), "planner-a leads", || async {
        election::leader(c.store.as_ref())
            .await
            .unwrap()
            .filter(|l| l == "planner-a")
    })
    .await;
    let _b = planner_process(&c.etcd.endpoint(), "planner-b");
    for n in 0..20 {
        c.register(&host(&format!("h{n:02}"), n, 2), 60).await;
    }
    let before = wait_for(Duration::from_secs(10), "20 hosts planned", || async {
        let p = c.plan_hosts("rails").await;
        (p.len() == 20).then_some(p)
    })
    .await;

    // SIGKILL the leader: no resignation, its lease must run out.
    let killed = Instant::now();
    drop(a.take());
    wait_for(Duration::from_secs(TTL + 3), "planner-b leads", || async {
        election::leader(c.store.as_ref())
            .await
            .unwrap()
            .filter(|l| l == "planner-b")
    })
    .await;
    let took = killed.elapsed();
    // etcd checks lease expiry every 500 ms; allow that beyond the TTL.
    assert!(
        took <= Duration::from_millis(TTL * 1000 + 1000),
        "takeover took {took:?}"
    );
    assert_eq!(c.plan_hosts("rails").await, before, "nothing renumbered");

    // The new leader plans newcomers.
    c.register(&host("h20", 20, 2), 60).await;
    let after = wait_for(Duration::from_secs(10), "newcomer planned", || async {
        let p = c.plan_hosts("rails").await;
        (p.len() == 21).then_some(p)
    })
    .await;
    let newcomer = after.iter().find(|(n, _)| n == "h20").unwrap();
    assert_eq!(newcomer.1.index, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_guarded_write_fails() {
    let c = Cluster::start().await;
    let first = election::campaign(c.store.clone(), "first", 2)
        .await
        .unwrap();
    let guard = first.guard();
    // The first leader's lease ends (as after a partition longer than the TTL).
    let lease_key = first.key().to_string();
    c.store.delete(&lease_key).await.unwrap();
    let second = election::campaign(c.store.clone(), "second", 2)
        .await
        .unwrap();
    let write = |g| {
        Txn::new()
            .when(g)
            .then(Op::put(keys::plan_meta("x"), b"late".to_vec()))
    };
    let late = c.store.txn(write(guard)).await.unwrap();
    assert!(!late.succeeded, "a deposed leader's write must fail");
    let ok = c.store.txn(write(second.guard())).await.unwrap();
    assert!(ok.succeeded);
    assert_eq!(
        election::leader(c.store.as_ref()).await.unwrap().as_deref(),
        Some("second")
    );
}
