use std::sync::Arc;

use super::{key, must_get};
use crate::{Compare, LeaseId, Op, Store, StoreError, Txn, MAX_TXN_BYTES, MAX_TXN_OPS};

/// Runs `compare` guarding a put of a marker key and checks both the reported outcome
/// and whether the write really happened.
async fn check(
    store: &dyn Store,
    prefix: &str,
    compare: Compare,
    expect: bool,
) -> Result<(), StoreError> {
    let marker = key(prefix, "marker");
    store.delete(&marker).await?;
    let before = store.range(prefix).await?.revision;
    let outcome = store
        .txn(Txn::new().when(compare.clone()).then(Op::put(&marker, "x")))
        .await?;
    assert_eq!(outcome.succeeded, expect, "{compare:?}");
    assert_eq!(store.get(&marker).await?.is_some(), expect, "{compare:?}");
    if expect {
        assert!(
            outcome.revision > before,
            "{compare:?}: a write moves the revision"
        );
    } else {
        assert_eq!(
            outcome.revision, before,
            "{compare:?}: a failed txn writes nothing"
        );
    }
    Ok(())
}

/// Every compare variant, on existing and missing keys, both true and false.
pub async fn compare_variants(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let s = &*store;
    let k = key(prefix, "k");
    let missing = key(prefix, "missing");
    store.put(&k, b"v1".to_vec(), None).await?;
    store.put(&k, b"v2".to_vec(), None).await?;
    let kv = must_get(s, &k).await?;
    assert!(kv.create_revision < kv.mod_revision);
    let (create, modr) = (kv.create_revision, kv.mod_revision);
    let k = || k.clone();
    let missing = || missing.clone();

    check(
        s,
        prefix,
        Compare::ModRevision {
            key: k(),
            rev: modr,
        },
        true,
    )
    .await?;
    check(
        s,
        prefix,
        Compare::ModRevision {
            key: k(),
            rev: create,
        },
        false,
    )
    .await?;
    check(s, prefix, Compare::ModRevision { key: k(), rev: 0 }, false).await?;
    check(
        s,
        prefix,
        Compare::ModRevision {
            key: missing(),
            rev: 0,
        },
        true,
    )
    .await?;
    check(
        s,
        prefix,
        Compare::ModRevision {
            key: missing(),
            rev: modr,
        },
        false,
    )
    .await?;

    check(
        s,
        prefix,
        Compare::CreateRevision {
            key: k(),
            rev: create,
        },
        true,
    )
    .await?;
    check(
        s,
        prefix,
        Compare::CreateRevision {
            key: k(),
            rev: modr,
        },
        false,
    )
    .await?;
    check(
        s,
        prefix,
        Compare::CreateRevision {
            key: missing(),
            rev: 0,
        },
        true,
    )
    .await?;
    check(
        s,
        prefix,
        Compare::CreateRevision {
            key: missing(),
            rev: create,
        },
        false,
    )
    .await?;

    let value = |v: &[u8]| v.to_vec();
    check(
        s,
        prefix,
        Compare::Value {
            key: k(),
            value: value(b"v2"),
        },
        true,
    )
    .await?;
    check(
        s,
        prefix,
        Compare::Value {
            key: k(),
            value: value(b"v1"),
        },
        false,
    )
    .await?;
    check(
        s,
        prefix,
        Compare::Value {
            key: k(),
            value: value(b""),
        },
        false,
    )
    .await?;
    // A missing key matches no value, not even the empty one.
    check(
        s,
        prefix,
        Compare::Value {
            key: missing(),
            value: value(b""),
        },
        false,
    )
    .await?;

    check(s, prefix, Compare::Exists(k()), true).await?;
    check(s, prefix, Compare::Exists(missing()), false).await?;
    check(s, prefix, Compare::Absent(missing()), true).await?;
    check(s, prefix, Compare::Absent(k()), false).await?;

    // All compares must hold, not just one.
    let both = Txn::new()
        .when(Compare::Exists(k()))
        .when(Compare::Exists(missing()))
        .then(Op::put(key(prefix, "marker"), "x"));
    store.delete(&key(prefix, "marker")).await?;
    assert!(!store.txn(both).await?.succeeded);
    assert_eq!(store.get(&key(prefix, "marker")).await?, None);
    Ok(())
}

/// A transaction applies all its writes in one revision, or none of them.
pub async fn txn_atomicity(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let k = |n: &str| key(prefix, n);
    store.put(&k("keep"), b"1".to_vec(), None).await?;
    store.put(&k("gone"), b"1".to_vec(), None).await?;
    store.put(&k("dir/a"), b"1".to_vec(), None).await?;
    store.put(&k("dir/b"), b"1".to_vec(), None).await?;
    let before = store.range(prefix).await?;

    let ops = vec![
        Op::put(k("new"), "n"),
        Op::put(k("keep"), "2"),
        Op::delete(k("gone")),
        Op::DeletePrefix { prefix: k("dir/") },
    ];
    let failing = Txn {
        compares: vec![
            Compare::Exists(k("keep")),
            Compare::Value {
                key: k("keep"),
                value: b"wrong".to_vec(),
            },
        ],
        ops: ops.clone(),
    };
    let outcome = store.txn(failing).await?;
    assert!(!outcome.succeeded);
    assert_eq!(outcome.revision, before.revision);
    assert_eq!(
        store.range(prefix).await?,
        before,
        "a failed txn changes nothing"
    );

    // A missing lease fails the whole request, and nothing is applied.
    let bad_lease = Txn::new().then(Op::put(k("early"), "x")).then(Op::Put {
        key: k("leased"),
        value: b"x".to_vec(),
        lease: Some(LeaseId(0xdead_beef)),
    });
    match store.txn(bad_lease).await {
        Err(StoreError::LeaseNotFound { .. }) => {}
        other => panic!("a put with a missing lease must fail: {other:?}"),
    }
    assert_eq!(
        store.range(prefix).await?,
        before,
        "nothing of the failed txn applied"
    );

    let outcome = store
        .txn(Txn {
            compares: vec![Compare::Value {
                key: k("keep"),
                value: b"1".to_vec(),
            }],
            ops,
        })
        .await?;
    assert!(outcome.succeeded);
    assert_eq!(
        outcome.revision,
        before.revision + 1,
        "one txn, one revision"
    );
    let after = store.range(prefix).await?;
    let names: Vec<&str> = after.kvs.iter().map(|kv| &kv.key[prefix.len()..]).collect();
    assert_eq!(names, ["keep", "new"]);
    for kv in &after.kvs {
        assert_eq!(
            kv.mod_revision, outcome.revision,
            "{} written by the txn",
            kv.key
        );
    }
    assert_eq!(must_get(&*store, &k("keep")).await?.version, 2);

    // A txn with nothing to change succeeds without a new revision.
    let empty = store.txn(Txn::new()).await?;
    assert!(empty.succeeded);
    assert_eq!(empty.revision, outcome.revision);
    let noop = store.txn(Txn::new().then(Op::delete(k("gone")))).await?;
    assert_eq!(
        noop.revision, outcome.revision,
        "deleting nothing writes nothing"
    );
    Ok(())
}

/// Limits etcd enforces are enforced identically, before anything is written.
pub async fn txn_limits(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let k = |i: usize| key(prefix, &format!("k{i:03}"));
    let too_many = Txn {
        compares: vec![],
        ops: (0..=MAX_TXN_OPS).map(|i| Op::put(k(i), "x")).collect(),
    };
    match store.txn(too_many).await {
        Err(StoreError::TooManyOps { ops, max }) => {
            assert_eq!((ops, max), (MAX_TXN_OPS + 1, MAX_TXN_OPS));
        }
        other => panic!("{} ops must be rejected: {other:?}", MAX_TXN_OPS + 1),
    }
    assert!(store.range(prefix).await?.kvs.is_empty());

    let just_enough = Txn {
        compares: vec![],
        ops: (0..MAX_TXN_OPS).map(|i| Op::put(k(i), "x")).collect(),
    };
    let outcome = store.txn(just_enough).await?;
    assert!(outcome.succeeded);
    let all = store.range(prefix).await?;
    assert_eq!(all.kvs.len(), MAX_TXN_OPS);
    assert!(all.kvs.iter().all(|kv| kv.mod_revision == outcome.revision));

    // The limit applies to compares separately from ops.
    let guarded = |n: usize| Txn {
        compares: (0..n)
            .map(|i| Compare::Exists(k(i % MAX_TXN_OPS)))
            .collect(),
        ops: vec![Op::put(key(prefix, "guarded"), "x")],
    };
    assert!(store.txn(guarded(MAX_TXN_OPS)).await?.succeeded);
    assert!(matches!(
        store.txn(guarded(MAX_TXN_OPS + 1)).await,
        Err(StoreError::TooManyOps { .. })
    ));
    store.delete(&key(prefix, "guarded")).await?;

    let twice = Txn::new().then(Op::put(k(1), "a")).then(Op::put(k(1), "b"));
    assert!(matches!(
        store.txn(twice).await,
        Err(StoreError::InvalidRequest { .. })
    ));
    let put_and_delete = Txn::new().then(Op::put(k(2), "a")).then(Op::DeletePrefix {
        prefix: key(prefix, "k"),
    });
    assert!(matches!(
        store.txn(put_and_delete).await,
        Err(StoreError::InvalidRequest { .. })
    ));
    // Overlapping deletes are fine.
    let deletes = Txn::new().then(Op::delete(k(3))).then(Op::DeletePrefix {
        prefix: key(prefix, "k00"),
    });
    assert!(store.txn(deletes).await?.succeeded);
    assert_eq!(store.get(&k(3)).await?, None);

    let huge = Txn::new().then(Op::put(key(prefix, "huge"), vec![b'x'; MAX_TXN_BYTES]));
    assert!(matches!(
        store.txn(huge).await,
        Err(StoreError::TooLarge { .. })
    ));
    // Just under the limit still goes through (etcd's own limit is a bit higher).
    let big = vec![b'y'; MAX_TXN_BYTES - 1024];
    store.put(&key(prefix, "big"), big.clone(), None).await?;
    assert_eq!(must_get(&*store, &key(prefix, "big")).await?.value, big);
    Ok(())
}
