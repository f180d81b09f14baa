use std::sync::Arc;
use std::time::Duration;

use super::{key, must_get, wait_gone};
use crate::{spawn_keep_alive, LeaseStatus, Store, StoreError};

/// Keys on a lease vanish once it expires; the lease is then unknown everywhere.
pub async fn lease_expiry(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let lease = store.grant(1).await?;
    let (a, b, plain) = (key(prefix, "a"), key(prefix, "b"), key(prefix, "plain"));
    store.put(&a, b"a".to_vec(), Some(lease)).await?;
    store.put(&b, b"b".to_vec(), Some(lease)).await?;
    store.put(&plain, b"p".to_vec(), None).await?;
    assert_eq!(must_get(&*store, &a).await?.lease, Some(lease));

    wait_gone(&*store, &a).await?;
    wait_gone(&*store, &b).await?;
    assert!(
        store.get(&plain).await?.is_some(),
        "keys without the lease stay"
    );

    match store.keep_alive_once(lease).await {
        Err(StoreError::LeaseNotFound { lease: l }) => assert_eq!(l, lease),
        other => panic!("refreshing an expired lease must fail: {other:?}"),
    }
    match store.put(&a, b"a".to_vec(), Some(lease)).await {
        Err(StoreError::LeaseNotFound { .. }) => {}
        other => panic!("attaching an expired lease must fail: {other:?}"),
    }
    assert_eq!(store.get(&a).await?, None);
    Ok(())
}

/// Refreshing keeps a lease (and its keys) past its TTL; stopping lets it expire.
pub async fn lease_keep_alive(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    // TTL 2 rather than 1: three refreshes per TTL must fit even on a loaded machine.
    let lease = store.grant(2).await?;
    let k = key(prefix, "held");
    store.put(&k, b"x".to_vec(), Some(lease)).await?;
    let ttl = store.keep_alive_once(lease).await?;
    assert!(ttl >= 1, "a refresh reports the TTL, got {ttl}");

    let keeper = spawn_keep_alive(store.clone(), lease, 2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        store.get(&k).await?.is_some(),
        "kept-alive key outlived its TTL"
    );
    assert_eq!(keeper.status(), LeaseStatus::Alive);
    assert_eq!(keeper.lease(), lease);

    drop(keeper);
    wait_gone(&*store, &k).await?;

    // The keep-alive task notices a lease that disappears under it.
    let lease = store.grant(3).await?;
    let mut keeper = spawn_keep_alive(store.clone(), lease, 3);
    store.revoke(lease).await?;
    // Only the next refresh can notice, a third of the TTL later.
    let status = tokio::time::timeout(Duration::from_secs(20), keeper.until_unsafe())
        .await
        .unwrap_or_else(|_| panic!("keep-alive did not notice the revoked lease"));
    assert_eq!(status, LeaseStatus::Lost);
    Ok(())
}

/// Revoking deletes exactly the lease's keys at once; a put without a lease detaches.
pub async fn lease_revoke(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let lease = store.grant(60).await?;
    let k = |n: &str| key(prefix, n);
    store.put(&k("a"), b"a".to_vec(), Some(lease)).await?;
    store.put(&k("b"), b"b".to_vec(), Some(lease)).await?;
    store
        .put(&k("detached"), b"d".to_vec(), Some(lease))
        .await?;
    store.put(&k("detached"), b"d2".to_vec(), None).await?;
    store.put(&k("plain"), b"p".to_vec(), None).await?;
    assert_eq!(must_get(&*store, &k("detached")).await?.lease, None);

    let other = store.grant(60).await?;
    assert_ne!(other, lease);
    store.put(&k("moved"), b"m".to_vec(), Some(lease)).await?;
    store.put(&k("moved"), b"m".to_vec(), Some(other)).await?;

    let before = store.range(prefix).await?.revision;
    store.revoke(lease).await?;
    let after = store.range(prefix).await?;
    let names: Vec<&str> = after.kvs.iter().map(|kv| &kv.key[prefix.len()..]).collect();
    assert_eq!(names, ["detached", "moved", "plain"]);
    assert_eq!(after.revision, before + 1, "one revocation, one revision");

    match store.revoke(lease).await {
        Err(StoreError::LeaseNotFound { lease: l }) => assert_eq!(l, lease),
        other => panic!("revoking twice must fail: {other:?}"),
    }
    assert!(matches!(
        store.keep_alive_once(lease).await,
        Err(StoreError::LeaseNotFound { .. })
    ));
    // A lease without keys revokes without writing anything.
    let empty = store.grant(60).await?;
    store.revoke(empty).await?;
    assert_eq!(store.range(prefix).await?.revision, after.revision);

    store.revoke(other).await?;
    assert_eq!(store.get(&k("moved")).await?, None);
    Ok(())
}
