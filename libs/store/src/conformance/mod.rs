//! The behaviour every `Store` must have, as one suite that `MemStore` and `EtcdStore`
//! both run. `MemStore` is only a safe test double for other crates if it passes the
//! very same checks as etcd, so new semantics get a case here, never a one-sided test.
//!
//! Each case takes a store and a key prefix of its own and returns store errors with
//! `?`; semantic mismatches panic with a message. Use `conformance_tests!` to get one
//! `#[tokio::test]` per case, or `run_all` to run them in sequence on one store.
//!
//! Cases that compact assume nobody else watches old revisions of the same store;
//! give each `conformance_tests!` case a fresh store.

mod cas;
mod kv;
mod lease;
mod txn;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{KeyValue, Store, StoreError, WatchEvent, WatchStream};

pub use cas::concurrent_cas;
pub use kv::{put_get_delete, range_by_prefix};
pub use lease::{lease_expiry, lease_keep_alive, lease_revoke};
pub use txn::{compare_variants, txn_atomicity, txn_limits};
pub use watch::{compaction, watch_from_revision, watch_live_and_leases};

/// Long enough for a loaded CI machine's etcd, short enough to fail a hung test.
const WAIT: Duration = Duration::from_secs(15);

/// Every case, in a stable order, with its name.
pub const CASES: &[&str] = &[
    "put_get_delete",
    "range_by_prefix",
    "compare_variants",
    "txn_atomicity",
    "txn_limits",
    "lease_expiry",
    "lease_keep_alive",
    "lease_revoke",
    "watch_from_revision",
    "watch_live_and_leases",
    "compaction",
    "concurrent_cas",
];

/// Runs every case in sequence, each under `prefix` + its name + `/`.
pub async fn run_all(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    for name in CASES {
        run_case(name, store.clone(), &format!("{prefix}{name}/")).await?;
    }
    Ok(())
}

/// Runs one case by name; `InvalidRequest` for an unknown name or a prefix that does
/// not end with `/` (cases write right next to their prefix to check for leaks).
pub async fn run_case(name: &str, store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    if !prefix.ends_with('/') || prefix.len() < 2 {
        return Err(StoreError::InvalidRequest {
            reason: format!("conformance prefix {prefix:?} must end with '/'"),
        });
    }
    tracing::info!(case = name, prefix, "conformance case");
    match name {
        "put_get_delete" => put_get_delete(store, prefix).await,
        "range_by_prefix" => range_by_prefix(store, prefix).await,
        "compare_variants" => compare_variants(store, prefix).await,
        "txn_atomicity" => txn_atomicity(store, prefix).await,
        "txn_limits" => txn_limits(store, prefix).await,
        "lease_expiry" => lease_expiry(store, prefix).await,
        "lease_keep_alive" => lease_keep_alive(store, prefix).await,
        "lease_revoke" => lease_revoke(store, prefix).await,
        "watch_from_revision" => watch_from_revision(store, prefix).await,
        "watch_live_and_leases" => watch_live_and_leases(store, prefix).await,
        "compaction" => compaction(store, prefix).await,
        "concurrent_cas" => concurrent_cas(store, prefix).await,
        other => Err(StoreError::InvalidRequest {
            reason: format!("no conformance case named {other:?}"),
        }),
    }
}

/// One `#[tokio::test]` per conformance case. `$factory` is an async fn returning
/// `(Arc<dyn Store>, guard)`; the guard (e.g. an `EtcdServer`) lives until the case
/// ends. Add `, paused_time` for stores on tokio's clock (`MemStore`): lease waits
/// then take no real time.
///
/// ```ignore
/// railyard_store::conformance_tests!(memory_store, paused_time);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::__conformance_cases!(real, $factory);
    };
    ($factory:path, paused_time) => {
        $crate::__conformance_cases!(paused, $factory);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($mode:ident, $factory:path) => {
        $crate::__conformance_case!($mode, $factory, put_get_delete);
        $crate::__conformance_case!($mode, $factory, range_by_prefix);
        $crate::__conformance_case!($mode, $factory, compare_variants);
        $crate::__conformance_case!($mode, $factory, txn_atomicity);
        $crate::__conformance_case!($mode, $factory, txn_limits);
        $crate::__conformance_case!($mode, $factory, lease_expiry);
        $crate::__conformance_case!($mode, $factory, lease_keep_alive);
        $crate::__conformance_case!($mode, $factory, lease_revoke);
        $crate::__conformance_case!($mode, $factory, watch_from_revision);
        $crate::__conformance_case!($mode, $factory, watch_live_and_leases);
        $crate::__conformance_case!($mode, $factory, compaction);
        $crate::__conformance_case!($mode, $factory, concurrent_cas);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case {
    (real, $factory:path, $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            $crate::__conformance_body!($factory, $case);
        }
    };
    (paused, $factory:path, $case:ident) => {
        #[tokio::test(start_paused = true)]
        async fn $case() {
            $crate::__conformance_body!($factory, $case);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_body {
    ($factory:path, $case:ident) => {
        let (store, guard) = $factory().await;
        let prefix = concat!("/conformance/", stringify!($case), "/");
        let result = $crate::conformance::$case(store, prefix).await;
        drop(guard);
        if let Err(e) = result {
            panic!("conformance case {} failed: {e}", stringify!($case));
        }
    };
}

fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

async fn must_get(store: &dyn Store, key: &str) -> Result<KeyValue, StoreError> {
    let kv = store.get(key).await?;
    Ok(kv.unwrap_or_else(|| panic!("key {key:?} should exist")))
}

/// Reads batches until `count` events arrived; panics on timeout or on more events
/// than expected within the batches read.
async fn take_events(
    stream: &mut WatchStream,
    count: usize,
) -> Result<Vec<Vec<WatchEvent>>, StoreError> {
    let mut batches = Vec::new();
    let mut seen = 0;
    while seen < count {
        let next = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {seen} of {count} watch events"));
        let batch = next.unwrap_or_else(|| panic!("watch ended after {seen} of {count} events"))?;
        seen += batch.len();
        batches.push(batch);
    }
    assert_eq!(seen, count, "more watch events than expected: {batches:?}");
    Ok(batches)
}

/// Asserts that the stream stays quiet for a while (no stray events).
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("expected no further watch events, got {item:?}");
    }
}

/// Polls until `key` is gone; leases expire on the server's schedule, not ours.
async fn wait_gone(store: &dyn Store, key: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.get(key).await?.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "key {key:?} should have expired with its lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn flatten(batches: Vec<Vec<WatchEvent>>) -> Vec<WatchEvent> {
    batches.into_iter().flatten().collect()
}
