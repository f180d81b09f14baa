//! The store port of railyard: a small slice of etcd's API (get, prefix range, CAS
//! transactions, leases, watch from a revision, compaction) behind one trait, so the
//! planner and the route daemon can run against a real etcd in production and against
//! `MemStore` in unit tests, with one conformance suite keeping the two honest.
//!
//! Keys are UTF-8 strings and prefixes are plain string prefixes: `range("a")` also
//! returns `"ab"`, so callers end prefixes with `/`.
//!
//! Following a prefix without missing or double-applying a change:
//!
//! 1. `range(prefix)` gives the state and the revision `r` it reflects;
//! 2. `watch(prefix, r)` delivers exactly the changes after `r`;
//! 3. remember the revision of the last event applied; after an error, watch again
//!    from it; after `Compacted`, go back to 1.
//!
//! `watch_or_relist` implements that loop, retries included, and
//! [`WatchUpdate::changes`] (or [`Mirror`] for a map of decoded values) applies
//! what it yields, snapshots and events alike. A service waits for etcd with
//! [`connect_with_backoff`].
//!
//! Features: `testing` adds `testing::EtcdServer` (a throwaway real etcd);
//! `conformance` adds the shared suite that every `Store` must pass.

#[cfg(feature = "cli")]
pub mod cli;
mod connect;
pub mod election;
mod error;
mod etcd;
mod fold;
mod follow;
mod format;
mod keepalive;
mod memory;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

use async_trait::async_trait;

pub use connect::{connect_until, connect_with_backoff, Backoff};
pub use error::StoreError;
pub use etcd::{EtcdConfig, EtcdStore};
pub use fold::{Change, Mirror};
pub use follow::{watch_or_relist, WatchUpdate};
pub use format::{format_version, FORMAT_FIELD, FORMAT_VERSION};
pub use keepalive::{spawn_keep_alive, KeepAlive, LeaseStatus};
pub use memory::MemStore;
pub use types::{
    decode_value, Compare, KeyValue, LeaseId, Op, Range, Txn, TxnOutcome, WatchEvent, WatchStream,
    MAX_TXN_BYTES, MAX_TXN_OPS,
};

/// A key-value store with etcd's consistency model: one global revision counter that
/// every write bumps, per-key create/mod revisions and versions, TTL leases that delete
/// their keys on expiry, and a watchable history that compaction truncates.
///
/// Object safe so services hold an `Arc<dyn Store>` and tests swap in `MemStore`.
#[async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix` (all keys for `""`), sorted, plus the revision
    /// the listing reflects.
    async fn range(&self, prefix: &str) -> Result<Range, StoreError>;

    /// Applies `txn.ops` atomically if every compare holds; nothing changes otherwise.
    /// Rejects more than `MAX_TXN_OPS` ops with `TooManyOps` before touching the store.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// Unconditional write; returns the revision of the write.
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        let op = Op::Put {
            key: key.to_string(),
            value,
            lease,
        };
        Ok(self.txn(Txn::new().then(op)).await?.revision)
    }

    /// Deletes one key; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when(Compare::Exists(key.to_string()))
            .then(Op::delete(key));
        Ok(self.txn(txn).await?.succeeded)
    }

    /// Creates a lease. etcd raises TTLs below its minimum (1 s with the test harness's
    /// timing, about 2 s with etcd's defaults); `MemStore` raises them to 1 s.
    async fn grant(&self, ttl_secs: i64) -> Result<LeaseId, StoreError>;

    /// Refreshes the lease to its full TTL and returns that TTL in seconds; fails with
    /// `LeaseNotFound` once it has expired. `spawn_keep_alive` calls this on a timer.
    async fn keep_alive_once(&self, lease: LeaseId) -> Result<i64, StoreError>;

    /// Ends the lease now, deleting its keys in one revision. `LeaseNotFound` if it is
    /// already gone.
    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Changes under `prefix` after `from_revision` (so starting at `from_revision + 1`),
    /// in revision order, including history that already happened. If that history has
    /// been compacted the stream yields `Compacted` and ends; `watch_or_relist` turns that
    /// into a re-list. Any error ends the stream; resume from the last seen revision.
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError>;

    /// Drops the history up to `revision`: afterwards a watch from below `revision`
    /// gets `Compacted`, one from `revision` on still works. Compacting at or below an
    /// earlier compaction is a no-op; a future revision is `InvalidRequest`.
    async fn compact(&self, revision: i64) -> Result<(), StoreError>;
}
