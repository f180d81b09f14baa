//! `EtcdStore` against a real etcd: the shared conformance suite (one fresh etcd per
//! case, so compaction in one case cannot disturb another), plus outage and restart
//! behaviour that only a real server shows. etcd missing means failure, never a skip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use railyard_store::testing::EtcdServer;
use railyard_store::{
    spawn_keep_alive, watch_or_relist, EtcdConfig, EtcdStore, LeaseStatus, Store, StoreError,
    WatchUpdate,
};

fn start_etcd() -> EtcdServer {
    EtcdServer::start().unwrap_or_else(|e| panic!("etcd is required for these tests: {e}"))
}

async fn etcd_store() -> (Arc<dyn Store>, EtcdServer) {
    let server = start_etcd();
    let store = server
        .store()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test etcd: {e}\n{}", server.log_tail()));
    (Arc::new(store), server)
}

railyard_store::conformance_tests!(etcd_store);

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_and_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut config = EtcdConfig::new([endpoint.clone()]);
    config.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = EtcdStore::connect(config)
        .await
        .expect_err("nothing listens there");
    println!("connect to nothing: {err}");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(&endpoint), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn missing_etcd_binary_fails_loudly() {
    let err = EtcdServer::start_with(std::path::Path::new("/nonexistent/etcd"))
        .expect_err("no such binary");
    assert!(err.to_string().contains("/nonexistent/etcd"), "{err}");
}

#[test]
fn broken_etcd_binary_reports_its_output() {
    // `false` exits at once: start must say so instead of waiting out the timeout.
    let started = Instant::now();
    let err = EtcdServer::start_with(std::path::Path::new("/bin/false")).expect_err("fails");
    println!("{err}");
    assert!(err.to_string().contains("exited"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The client survives etcd going away and coming back on the same port: calls fail
/// with `Unavailable` meanwhile, watches end with it, and a follower resumes without
/// losing events; a kept-alive lease survives (etcd extends leases on restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_restart() {
    let mut server = start_etcd();
    let store = server.store().await.expect("connect");
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let lease = store.grant(5).await.expect("grant");
    store
        .put("/r/held", b"h".to_vec(), Some(lease))
        .await
        .expect("put");
    let keeper = spawn_keep_alive(shared.clone(), lease, 5);
    let mut status = keeper.subscribe();
    let rev = store.put("/r/a", b"1".to_vec(), None).await.expect("put");
    let mut watch = store.watch("/r/", rev).await.expect("watch");
    let mut follow = watch_or_relist(shared.clone(), "/r/", None);
    assert!(matches!(
        follow.next().await,
        Some(Ok(WatchUpdate::Snapshot(_)))
    ));

    server.stop();
    let started = Instant::now();
    let err = store.get("/r/a").await.expect_err("etcd is down");
    println!("get while down: {err}");
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&server.endpoint()), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch notices");
    println!("watch while down: {ended:?}");
    assert!(
        matches!(ended, Some(Err(StoreError::Unavailable { .. }))),
        "{ended:?}"
    );
    let err = tokio::time::timeout(Duration::from_secs(10), follow.next())
        .await
        .expect("the follower notices");
    assert!(
        matches!(err, Some(Err(StoreError::Unavailable { .. }))),
        "{err:?}"
    );
    tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| *s != LeaseStatus::Alive),
    )
    .await
    .expect("keep-alive notices in time")
    .expect("keep-alive running");

    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().expect("restart");
    let rb = store
        .put("/r/b", b"2".to_vec(), None)
        .await
        .expect("put after restart");
    assert!(rb > rev);
    // The follower resumes from where it was and sees the new write.
    let events = loop {
        let next = tokio::time::timeout(Duration::from_secs(20), follow.next())
            .await
            .expect("follower resumes");
        match next {
            Some(Err(e)) if e.is_retryable() => continue,
            Some(Ok(WatchUpdate::Events(events))) => break events,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(events[0].key(), "/r/b");
    tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| *s == LeaseStatus::Alive),
    )
    .await
    .expect("lease confirmed again")
    .expect("keep-alive running");
    assert!(store.get("/r/held").await.expect("get").is_some());
}

/// Mutual TLS end to end: CA, client certificate and key from the config reach etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() {
    let server = EtcdServer::start_tls()
        .unwrap_or_else(|e| panic!("etcd with TLS is required for this test: {e}"));
    assert!(server.endpoint().starts_with("https://"));
    let store = server
        .store()
        .await
        .unwrap_or_else(|e| panic!("TLS connect: {e}\n{}", server.log_tail()));
    let rev = store.put("/tls/a", b"1".to_vec(), None).await.expect("put");
    let mut watch = store.watch("/tls/", rev - 1).await.expect("watch");
    let events = watch.next().await.expect("item").expect("events");
    assert_eq!(events[0].key(), "/tls/a");

    // Without a client certificate etcd refuses us; the error says where.
    let mut config = server.config();
    config.cert = None;
    config.key = None;
    let err = EtcdStore::connect(config)
        .await
        .expect_err("client cert required");
    println!("without client cert: {err}");
    assert!(err.to_string().contains(&server.endpoint()), "{err}");

    let mut config = server.config();
    config.ca = Some("/nonexistent/ca.pem".into());
    let err = EtcdStore::connect(config)
        .await
        .expect_err("missing CA file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
