//! `MemStore` against the shared conformance suite, plus what only it offers
//! (simulated outages, bounded history). Runs on tokio's paused clock, so lease
//! waits cost no real time.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use railyard_store::{
    conformance, spawn_keep_alive, watch_or_relist, LeaseStatus, MemStore, Store, StoreError,
    WatchUpdate,
};

async fn memory_store() -> (Arc<dyn Store>, ()) {
    (Arc::new(MemStore::new()), ())
}

railyard_store::conformance_tests!(memory_store, paused_time);

#[tokio::test(start_paused = true)]
async fn all_cases_on_one_store() {
    let store = Arc::new(MemStore::new());
    conformance::run_all(store, "/all/").await.expect("suite");
}

/// The reaper must also work on the real clock (other crates may not pause time).
#[tokio::test]
async fn lease_expires_on_real_clock_without_calls() {
    let store = MemStore::new();
    let lease = store.grant(1).await.expect("grant");
    store
        .put("/l/k", b"v".to_vec(), Some(lease))
        .await
        .expect("put");
    let mut w = store.watch("/l/", store.revision()).await.expect("watch");
    let started = std::time::Instant::now();
    let events = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("expiry event")
        .expect("stream open")
        .expect("no error");
    assert_eq!(events.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(start_paused = true)]
async fn outage_fails_calls_and_ends_watches() {
    let store = MemStore::new();
    store.put("/o/a", b"1".to_vec(), None).await.expect("put");
    let mut w = store.watch("/o/", 0).await.expect("watch");
    assert_eq!(w.next().await.expect("item").expect("events").len(), 1);

    store.set_available(false);
    let err = store.get("/o/a").await.expect_err("unavailable");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("memory"), "{err}");
    assert!(matches!(
        w.next().await,
        Some(Err(StoreError::Unavailable { .. }))
    ));
    assert!(w.next().await.is_none(), "the watch ends after the error");
    assert!(store.watch("/o/", 0).await.is_err());

    store.set_available(true);
    assert!(store.get("/o/a").await.expect("get").is_some());
}

#[tokio::test(start_paused = true)]
async fn follower_rides_out_an_outage() {
    let store = MemStore::new();
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let mut follow = watch_or_relist(shared, "/f/", None);
    assert!(matches!(
        follow.next().await,
        Some(Ok(WatchUpdate::Snapshot(_)))
    ));
    store.put("/f/a", b"1".to_vec(), None).await.expect("put");
    assert!(matches!(
        follow.next().await,
        Some(Ok(WatchUpdate::Events(_)))
    ));

    store.set_available(false);
    assert!(matches!(
        follow.next().await,
        Some(Err(StoreError::Unavailable { .. }))
    ));
    let restore = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        restore.set_available(true);
        restore.put("/f/b", b"2".to_vec(), None).await.expect("put");
    });
    // Retries fail (and say so) until the store is back, then the events resume.
    loop {
        match follow.next().await {
            Some(Err(e)) => assert!(e.is_retryable(), "{e}"),
            Some(Ok(WatchUpdate::Events(events))) => {
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].key(), "/f/b");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn keep_alive_reports_an_outage_longer_than_the_ttl() {
    let store = MemStore::new();
    let lease = store.grant(3).await.expect("grant");
    let keeper = spawn_keep_alive(Arc::new(store.clone()), lease, 3);
    let mut status = keeper.subscribe();
    store.set_available(false);
    status
        .wait_for(|s| *s == LeaseStatus::Unconfirmed)
        .await
        .expect("unconfirmed");
    status
        .wait_for(|s| *s == LeaseStatus::Expired)
        .await
        .expect("expired");
    store.set_available(true);
    // MemStore let the lease run out meanwhile, so the first refresh finds it gone.
    status
        .wait_for(|s| *s == LeaseStatus::Lost)
        .await
        .expect("lost");
}

#[tokio::test(start_paused = true)]
async fn history_limit_compacts_and_follower_relists() {
    let store = MemStore::new().with_history_limit(3);
    let start = store.revision();
    for i in 0..10 {
        store
            .put(&format!("/h/{i}"), vec![i], None)
            .await
            .expect("put");
    }
    let mut w = store.watch("/h/", start).await.expect("watch");
    assert!(matches!(
        w.next().await,
        Some(Err(StoreError::Compacted { .. }))
    ));
    let mut recent = store
        .watch("/h/", store.revision() - 3)
        .await
        .expect("watch");
    assert_eq!(recent.next().await.expect("item").expect("events").len(), 3);

    let mut follow = watch_or_relist(Arc::new(store.clone()), "/h/", Some(start));
    match follow.next().await {
        Some(Ok(WatchUpdate::Snapshot(range))) => assert_eq!(range.kvs.len(), 10),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}
