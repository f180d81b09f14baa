//! `EtcdStore` given every endpoint of a three-member etcd: when one member dies
//! or hangs, calls go to the others. Without failover a client keeps sending a
//! share of its calls to the lost member, and every one of those fails (a
//! planner that steps down on an error then never plans again).
//! etcd missing means failure, never a skip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use railyard_store::testing::EtcdCluster;
use railyard_store::{
    spawn_keep_alive, watch_or_relist, EtcdStore, LeaseId, LeaseStatus, Op, Store, StoreError, Txn,
    WatchUpdate,
};

fn start_cluster() -> EtcdCluster {
    EtcdCluster::start(3).unwrap_or_else(|e| panic!("etcd is required for these tests: {e}"))
}

fn follower(cluster: &EtcdCluster) -> usize {
    let leader = wait_leader(cluster);
    (leader + 1) % cluster.len()
}

fn wait_leader(cluster: &EtcdCluster) -> usize {
    let start = Instant::now();
    loop {
        if let Some(l) = cluster.leader() {
            return l;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no etcd leader");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One of each call a service makes; the first error, if any.
async fn one_of_each(store: &EtcdStore, lease: LeaseId, n: usize) -> Result<(), StoreError> {
    let key = format!("/failover/{n}");
    store.txn(Txn::new().then(Op::put(&key, "v"))).await?;
    store.get(&key).await?;
    store.range("/failover/").await?;
    store.keep_alive_once(lease).await?;
    Ok(())
}

/// `rounds` rounds of calls, each round within `bound`. One call may fail,
/// retryably: a write the lost member may have taken before it went is not
/// sent again (it could apply twice), the caller hears `Unavailable` and
/// retries as it does any write. Every other call must succeed: the client
/// has moved to a member that answers.
async fn all_succeed(store: &EtcdStore, lease: LeaseId, rounds: usize, bound: Duration) {
    let mut failed = None;
    for n in 0..rounds {
        let started = Instant::now();
        if let Err(e) = one_of_each(store, lease, n).await {
            assert!(e.is_retryable(), "round {n}: {e}");
            if let Some(first) = failed.replace(e.to_string()) {
                panic!("round {n} of {rounds} failed: {e}\n(after an earlier failure: {first})");
            }
            println!("one failed call, as allowed: {e}");
        }
        assert!(
            started.elapsed() < bound,
            "round {n} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_from_a_killed_member() {
    let mut cluster = start_cluster();
    let victim = follower(&cluster);
    // The victim first, so a client that starts on its first endpoint starts there.
    let mut order = vec![victim];
    order.extend((0..cluster.len()).filter(|&m| m != victim));
    let store = EtcdStore::connect(cluster.config(&order))
        .await
        .expect("connect");
    let lease = store.grant(30).await.expect("grant");
    cluster.kill(victim);
    all_succeed(&store, lease, 20, Duration::from_secs(3)).await;

    // Back on its data, it serves again; then the others may go one at a time.
    cluster.restart(victim).expect("restart");
    let other = (victim + 1) % cluster.len();
    cluster.kill(other);
    all_succeed(&store, lease, 20, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_from_a_hung_member() {
    let mut cluster = start_cluster();
    let victim = follower(&cluster);
    let mut order = vec![victim];
    order.extend((0..cluster.len()).filter(|&m| m != victim));
    let store = EtcdStore::connect(cluster.config(&order))
        .await
        .expect("connect");
    let lease = store.grant(30).await.expect("grant");
    cluster.pause(victim).expect("SIGSTOP");
    // A hung member costs one request timeout (2 s here), once: then the client
    // stays on a member that answers.
    let started = Instant::now();
    all_succeed(&store, lease, 20, Duration::from_secs(5)).await;
    let took = started.elapsed();
    cluster.resume(victim).expect("SIGCONT");
    assert!(took < Duration::from_secs(8), "20 rounds took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_costs_an_election_and_a_follower_sees_every_write() {
    let mut cluster = start_cluster();
    let store: Arc<dyn Store> = Arc::new(cluster.store().await.expect("connect"));
    let start = store.range("/follow/").await.expect("range").revision;
    let mut updates = watch_or_relist(Arc::clone(&store), "/follow/", Some(start));
    let leader = wait_leader(&cluster);
    cluster.kill(leader);
    let killed = Instant::now();
    // Writes succeed again once the others elected a leader.
    let mut written = 0;
    while written < 10 {
        match store
            .txn(Txn::new().then(Op::put(format!("/follow/{written}"), "v")))
            .await
        {
            Ok(_) => written += 1,
            Err(e) if e.is_retryable() => {
                assert!(
                    killed.elapsed() < Duration::from_secs(10),
                    "no write within 10 s of the leader's death: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    println!("10 writes {:?} after the leader died", killed.elapsed());
    let mut seen = 0;
    while seen < 10 {
        let next = tokio::time::timeout(Duration::from_secs(15), updates.next())
            .await
            .expect("the follower delivers within 15 s")
            .expect("the follower never ends");
        match next {
            Ok(WatchUpdate::Events(events)) => seen += events.len(),
            Ok(WatchUpdate::Snapshot(range)) => seen = range.kvs.len(),
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
}

/// A member that hangs costs a lease nothing: its refresh is given up within
/// the refresh period and sent to another member, even when the store's
/// request timeout is as long as the lease's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_outlives_a_hung_member() {
    let mut cluster = start_cluster();
    let victim = follower(&cluster);
    let mut order = vec![victim];
    order.extend((0..cluster.len()).filter(|&m| m != victim));
    let mut config = cluster.config(&order);
    config.request_timeout = Duration::from_secs(3);
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(config).await.expect("connect"));
    let ttl = 3;
    let lease = store.grant(ttl).await.expect("grant");
    let keep_alive = spawn_keep_alive(Arc::clone(&store), lease, ttl);
    let mut status = keep_alive.subscribe();
    cluster.pause(victim).expect("SIGSTOP");
    let watched = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            status.changed().await.expect("keep-alive runs");
            let now = *status.borrow();
            if matches!(now, LeaseStatus::Expired | LeaseStatus::Lost) {
                return now;
            }
        }
    })
    .await;
    cluster.resume(victim).expect("SIGCONT");
    if let Ok(bad) = watched {
        panic!("the lease went {bad:?} while one member hung");
    }
    assert_eq!(keep_alive.status(), LeaseStatus::Alive);
    assert!(
        store.keep_alive_once(lease).await.is_ok(),
        "the lease is alive in etcd"
    );
}

/// A watch on a member that hangs moves with the client's calls: its follower
/// delivers a write made elsewhere within seconds, not after the connection's
/// pings give up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_moves_off_a_hung_member() {
    let mut cluster = start_cluster();
    let victim = follower(&cluster);
    let mut order = vec![victim];
    order.extend((0..cluster.len()).filter(|&m| m != victim));
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(cluster.config(&order))
            .await
            .expect("connect"),
    );
    let start = store.range("/moves/").await.expect("range").revision;
    let mut updates = watch_or_relist(Arc::clone(&store), "/moves/", Some(start));
    // The follower's watch is open on the victim once a first event arrives.
    store
        .txn(Txn::new().then(Op::put("/moves/a", "1")))
        .await
        .expect("write");
    let first = tokio::time::timeout(Duration::from_secs(5), updates.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "{first:?}");
    cluster.pause(victim).expect("SIGSTOP");
    let paused = Instant::now();
    // The first write after the pause may time out on the victim (once).
    let mut written = false;
    while !written {
        match store.txn(Txn::new().then(Op::put("/moves/b", "2"))).await {
            Ok(_) => written = true,
            Err(e) => assert!(
                e.is_retryable() && paused.elapsed() < Duration::from_secs(8),
                "{e}"
            ),
        }
    }
    let seen = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match updates.next().await {
                Some(Ok(WatchUpdate::Events(events)))
                    if events.iter().any(|e| e.key() == "/moves/b") =>
                {
                    return;
                }
                Some(Ok(WatchUpdate::Snapshot(range)))
                    if range.kvs.iter().any(|kv| kv.key == "/moves/b") =>
                {
                    return;
                }
                Some(_) => {}
                None => panic!("the follower ended"),
            }
        }
    })
    .await;
    let took = paused.elapsed();
    cluster.resume(victim).expect("SIGCONT");
    assert!(seen.is_ok(), "no event {took:?} after the member hung");
    println!("the write and its event {took:?} after the member hung");
}

/// A client whose first endpoint hangs starts on the next one within half a
/// second, not after its whole connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_skips_a_hung_first_member() {
    let mut cluster = start_cluster();
    let victim = follower(&cluster);
    let mut order = vec![victim];
    order.extend((0..cluster.len()).filter(|&m| m != victim));
    let mut config = cluster.config(&order);
    config.connect_timeout = Duration::from_secs(3);
    cluster.pause(victim).expect("SIGSTOP");
    let started = Instant::now();
    let connected = EtcdStore::connect(config).await;
    let took = started.elapsed();
    let read = match &connected {
        Ok(store) => store.get("/x").await.map(|_| ()),
        Err(e) => Err(e.clone()),
    };
    cluster.resume(victim).expect("SIGCONT");
    connected.expect("connects to the members that answer");
    read.expect("and reads from them");
    assert!(took < Duration::from_millis(1500), "connect took {took:?}");
}
