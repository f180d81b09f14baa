use futures::StreamExt;
use std::sync::Arc;

use super::{assert_quiet, flatten, key, take_events, WAIT};
use crate::{watch_or_relist, Op, Store, StoreError, Txn, WatchEvent, WatchUpdate};

fn summary(events: &[WatchEvent]) -> Vec<(char, String, i64)> {
    events
        .iter()
        .map(|e| {
            let kind = match e {
                WatchEvent::Put(_) => 'P',
                WatchEvent::Delete { .. } => 'D',
            };
            (kind, e.key().to_string(), e.revision())
        })
        .collect()
}

/// A watch replays exactly the history after its start revision, in order, and
/// nothing from outside its prefix.
pub async fn watch_from_revision(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let k = |n: &str| key(prefix, n);
    let outside = format!("{}x", prefix.strip_suffix('/').unwrap_or(prefix));
    let r0 = store.range(prefix).await?.revision;
    let ra = store.put(&k("a"), b"1".to_vec(), None).await?;
    store.put(&outside, b"o".to_vec(), None).await?;
    let rb = store.put(&k("b"), b"1".to_vec(), None).await?;
    store.delete(&k("a")).await?;
    let rd = store.range(prefix).await?.revision;
    let rt = store
        .txn(
            Txn::new()
                .then(Op::put(k("c"), "c"))
                .then(Op::put(k("d"), "d")),
        )
        .await?
        .revision;
    store.put(&outside, b"o2".to_vec(), None).await?;

    let expected = vec![
        ('P', k("a"), ra),
        ('P', k("b"), rb),
        ('D', k("a"), rd),
        ('P', k("c"), rt),
        ('P', k("d"), rt),
    ];
    let mut w = store.watch(prefix, r0).await?;
    let batches = take_events(&mut w, 5).await?;
    let with_txn = batches
        .iter()
        .filter(|b| b.iter().any(|e| e.revision() == rt));
    assert_eq!(
        with_txn.count(),
        1,
        "one transaction's events arrive in one batch: {batches:?}"
    );
    let events = flatten(batches);
    assert_eq!(summary(&events), expected);
    match &events[0] {
        WatchEvent::Put(kv) => {
            assert_eq!((kv.value.as_slice(), kv.version), (&b"1"[..], 1));
            assert_eq!((kv.create_revision, kv.mod_revision), (ra, ra));
        }
        other => panic!("expected a put, got {other:?}"),
    }
    assert_quiet(&mut w).await;

    // Starting later skips exactly what came before.
    let mut w = store.watch(prefix, ra).await?;
    let events = flatten(take_events(&mut w, 4).await?);
    assert_eq!(summary(&events), expected[1..]);
    let mut w = store.watch(prefix, rt).await?;
    assert_quiet(&mut w).await;

    // Revision 0 means the beginning of (uncompacted) history, not "from now".
    let mut w = store.watch(prefix, 0).await?;
    let events = flatten(take_events(&mut w, 5).await?);
    assert_eq!(summary(&events), expected);

    // A single key is a prefix too.
    let mut w = store.watch(&k("b"), r0).await?;
    let events = flatten(take_events(&mut w, 1).await?);
    assert_eq!(summary(&events), expected[1..2]);
    assert_quiet(&mut w).await;
    Ok(())
}

/// Live changes of every kind reach a waiting watch: puts, prefix deletes (one
/// revision, key order) and lease expiry (nobody calls the store meanwhile).
pub async fn watch_live_and_leases(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let k = |n: &str| key(prefix, n);
    let r0 = store.range(prefix).await?.revision;
    let mut w = store.watch(prefix, r0).await?;
    let mut narrow = store.watch(&k("dir/"), r0).await?;
    assert_quiet(&mut w).await;

    let rx = store.put(&k("x"), b"x".to_vec(), None).await?;
    assert_eq!(
        summary(&flatten(take_events(&mut w, 1).await?)),
        [('P', k("x"), rx)]
    );

    let mut last = 0;
    for n in ["dir/2", "dir/1", "dir/3"] {
        last = store.put(&k(n), n.as_bytes().to_vec(), None).await?;
    }
    let rdel = store
        .txn(Txn::new().then(Op::DeletePrefix { prefix: k("dir/") }))
        .await?
        .revision;
    assert_eq!(rdel, last + 1);
    let events = flatten(take_events(&mut w, 6).await?);
    let deletes: Vec<_> = summary(&events).into_iter().skip(3).collect();
    assert_eq!(
        deletes,
        [
            ('D', k("dir/1"), rdel),
            ('D', k("dir/2"), rdel),
            ('D', k("dir/3"), rdel)
        ]
    );
    assert_eq!(flatten(take_events(&mut narrow, 6).await?), events);

    let lease = store.grant(1).await?;
    store.put(&k("l1"), b"1".to_vec(), Some(lease)).await?;
    store.put(&k("l2"), b"2".to_vec(), Some(lease)).await?;
    let events = flatten(take_events(&mut w, 2).await?);
    assert!(events
        .iter()
        .all(|e| matches!(e, WatchEvent::Put(kv) if kv.lease == Some(lease))));
    // Expiry must show up by itself: no store calls from here on.
    let events = flatten(take_events(&mut w, 2).await?);
    let summary = summary(&events);
    assert_eq!(
        summary
            .iter()
            .map(|(c, k, _)| (*c, k.clone()))
            .collect::<Vec<_>>(),
        [('D', k("l1")), ('D', k("l2"))]
    );
    assert_eq!(summary[0].2, summary[1].2, "one expiry, one revision");
    assert_quiet(&mut narrow).await;
    Ok(())
}

/// Compacted history is reported, never silently skipped, and re-list + resume
/// recovers everything.
pub async fn compaction(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let k = |i: usize| key(prefix, &format!("k{i}"));
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(store.put(&k(i), vec![b'0' + i as u8], None).await?);
    }
    let at = revs[2];
    store.compact(at).await?;

    for from in [revs[0], at - 1] {
        let mut w = store.watch(prefix, from).await?;
        match tokio::time::timeout(WAIT, w.next()).await {
            Ok(Some(Err(StoreError::Compacted { compact_revision }))) => {
                assert_eq!(compact_revision, at);
            }
            other => panic!("watch from compacted revision {from}: {other:?}"),
        }
        let end = tokio::time::timeout(WAIT, w.next()).await;
        assert!(
            matches!(end, Ok(None)),
            "the stream ends after Compacted: {end:?}"
        );
    }
    // The compaction revision itself is still a valid starting point.
    let mut w = store.watch(prefix, at).await?;
    let events = flatten(take_events(&mut w, 2).await?);
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        revs[3..]
    );

    // Compacting again lower is a no-op; the future is an error.
    store.compact(revs[1]).await?;
    store.compact(at).await?;
    let now = store.range(prefix).await?.revision;
    assert!(matches!(
        store.compact(now + 100).await,
        Err(StoreError::InvalidRequest { .. })
    ));

    // The documented recovery: list, then watch from the listing's revision.
    let listing = store.range(prefix).await?;
    assert_eq!(listing.kvs.len(), 5);
    let r5 = store.put(&k(5), b"5".to_vec(), None).await?;
    let mut w = store.watch(prefix, listing.revision).await?;
    let events = flatten(take_events(&mut w, 1).await?);
    assert_eq!(summary(&events), [('P', k(5), r5)]);

    // The helper does the same by itself.
    let mut follow = watch_or_relist(store.clone(), prefix, Some(revs[0]));
    let first = tokio::time::timeout(WAIT, follow.next()).await;
    match first {
        Ok(Some(Ok(WatchUpdate::Snapshot(range)))) => {
            assert_eq!(range.kvs.len(), 6);
            assert!(range.revision >= r5);
        }
        other => panic!("expected a fresh snapshot after compaction: {other:?}"),
    }
    let r6 = store.put(&k(6), b"6".to_vec(), None).await?;
    match tokio::time::timeout(WAIT, follow.next()).await {
        Ok(Some(Ok(WatchUpdate::Events(events)))) => {
            assert_eq!(summary(&events), [('P', k(6), r6)]);
        }
        other => panic!("expected the new put: {other:?}"),
    }
    let mut fresh = watch_or_relist(store.clone(), prefix, None);
    match tokio::time::timeout(WAIT, fresh.next()).await {
        Ok(Some(Ok(WatchUpdate::Snapshot(range)))) => assert_eq!(range.kvs.len(), 7),
        other => panic!("expected an initial snapshot: {other:?}"),
    }
    Ok(())
}
