use std::sync::Arc;

use super::{key, must_get};
use crate::{Store, StoreError};

/// Revisions, versions and create revisions move exactly as in etcd.
pub async fn put_get_delete(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let k = key(prefix, "a");
    assert_eq!(store.get(&k).await?, None);

    let r1 = store.put(&k, b"one".to_vec(), None).await?;
    let kv = must_get(&*store, &k).await?;
    assert_eq!(kv.key, k);
    assert_eq!(kv.value, b"one");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );
    assert_eq!(kv.lease, None);

    let r2 = store.put(&k, b"two".to_vec(), None).await?;
    assert!(r2 > r1, "every write moves the revision: {r1} then {r2}");
    let kv = must_get(&*store, &k).await?;
    assert_eq!(kv.value, b"two");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );

    // Writing an empty value is a write like any other.
    let r3 = store.put(&k, Vec::new(), None).await?;
    let kv = must_get(&*store, &k).await?;
    assert_eq!((kv.value.len(), kv.mod_revision, kv.version), (0, r3, 3));

    assert!(store.delete(&k).await?, "delete reports the key existed");
    assert_eq!(store.get(&k).await?, None);
    let after_delete = store.range(prefix).await?.revision;
    assert!(after_delete > r3, "a delete moves the revision");
    assert!(
        !store.delete(&k).await?,
        "deleting a missing key reports false"
    );
    assert_eq!(
        store.range(prefix).await?.revision,
        after_delete,
        "deleting nothing does not move the revision"
    );

    // A re-created key is a new incarnation: new create revision, version 1.
    let r4 = store.put(&k, b"again".to_vec(), None).await?;
    let kv = must_get(&*store, &k).await?;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r4, r4, 1)
    );

    // A key that is merely a prefix of another is a different key.
    assert_eq!(store.get(&key(prefix, "")).await?, None);
    assert_eq!(store.get(&key(prefix, "a/")).await?, None);

    assert!(
        matches!(store.get("").await, Err(StoreError::InvalidRequest { .. })),
        "the empty key is not a key"
    );
    assert!(matches!(
        store.put("", b"x".to_vec(), None).await,
        Err(StoreError::InvalidRequest { .. })
    ));
    Ok(())
}

/// Prefix ranges are sorted, complete and never leak keys outside the prefix.
pub async fn range_by_prefix(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let names = ["a/3", "b/1", "a/1", "ab", "a/2", "a", "a/2/x"];
    let mut last = 0;
    for name in names {
        last = store
            .put(&key(prefix, name), name.as_bytes().to_vec(), None)
            .await?;
    }
    // Neighbours just outside the prefix, on both sides in byte order.
    let stem = prefix.strip_suffix('/').unwrap_or(prefix);
    let outside_before = stem.to_string();
    let outside_after = format!("{stem}0");
    store.put(&outside_before, b"x".to_vec(), None).await?;
    store.put(&outside_after, b"x".to_vec(), None).await?;

    let keys = |r: &crate::Range| r.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    let expect = |names: &[&str]| names.iter().map(|n| key(prefix, n)).collect::<Vec<_>>();

    let all = store.range(prefix).await?;
    assert_eq!(
        keys(&all),
        expect(&["a", "a/1", "a/2", "a/2/x", "a/3", "ab", "b/1"])
    );
    assert!(
        all.revision > last,
        "the range reflects every earlier write"
    );
    for kv in &all.kvs {
        assert_eq!(
            kv.value,
            &kv.key.as_bytes()[prefix.len()..],
            "values match keys"
        );
    }

    let sub = store.range(&key(prefix, "a/")).await?;
    assert_eq!(keys(&sub), expect(&["a/1", "a/2", "a/2/x", "a/3"]));
    // A string prefix, not a path: "a" also covers "ab".
    let loose = store.range(&key(prefix, "a")).await?;
    assert_eq!(
        keys(&loose),
        expect(&["a", "a/1", "a/2", "a/2/x", "a/3", "ab"])
    );
    let none = store.range(&key(prefix, "zzz/")).await?;
    assert!(none.kvs.is_empty());
    assert_eq!(
        none.revision, all.revision,
        "reads do not move the revision"
    );

    // The empty prefix lists every key, ours included.
    let everything = store.range("").await?;
    for k in expect(&["a", "b/1"])
        .iter()
        .chain([&outside_before, &outside_after])
    {
        assert!(
            everything.kvs.iter().any(|kv| &kv.key == k),
            "{k} in full range"
        );
    }
    let mut sorted = keys(&everything);
    sorted.sort();
    assert_eq!(sorted, keys(&everything), "full range is sorted");
    Ok(())
}
