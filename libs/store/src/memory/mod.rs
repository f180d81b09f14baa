//! `MemStore`: the in-memory `Store` other crates' unit tests run against. It follows
//! etcd's semantics (see `state.rs`), runs leases on tokio time so tests can use a
//! paused clock, and can simulate an outage so retry paths get exercised too.

mod state;
mod watch;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use async_trait::async_trait;
use tokio::sync::{watch as signal, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{KeyValue, LeaseId, Range, Store, StoreError, Txn, TxnOutcome, WatchStream};
use state::State;

/// What `Unavailable` errors name as the endpoint, so logs show which store failed.
const ENDPOINT: &str = "memory";

/// Cheap to clone; clones share one store.
///
/// Where it knowingly differs from etcd (all pass the conformance suite):
/// - leases expire exactly at their deadline; etcd checks every 500 ms, so a key may
///   outlive its lease a little there. Tests should wait for expiry, not time it;
/// - the minimum TTL is 1 s; etcd's is 1.5 election timeouts (2 s by default, 1 s in
///   the test harness);
/// - a watcher that falls behind a compaction gets `Compacted`; etcd keeps feeding
///   watchers that were caught up, so it says so less often;
/// - during `set_available(false)` leases keep expiring; a restarted etcd extends them.
#[derive(Clone, Debug)]
pub struct MemStore {
    inner: Arc<Inner>,
}

/// Published after every change so watch streams wake without polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signal {
    revision: i64,
    /// Bumped by every simulated outage; a watch opened before it must end.
    outage: u64,
    available: bool,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    signal: signal::Sender<Signal>,
    reaper_wake: Arc<Notify>,
    reaper: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Lets the reaper task notice the store is gone and exit.
        self.reaper_wake.notify_one();
    }
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        let (signal, _) = signal::channel(Signal {
            revision: 1,
            outage: 0,
            available: true,
        });
        MemStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new()),
                signal,
                reaper_wake: Arc::new(Notify::new()),
                reaper: Mutex::new(None),
            }),
        }
    }

    /// Keeps only the last `revisions` revisions of history, compacting automatically
    /// like an etcd with auto-compaction, so callers' re-list paths can be tested.
    pub fn with_history_limit(self, revisions: usize) -> MemStore {
        lock(&self.inner.state).history_limit = Some(revisions);
        self
    }

    /// Simulates etcd going away (`false`) and coming back (`true`). While away every
    /// call fails with `Unavailable` and open watches end with it. Leases keep running
    /// on the clock, which is harsher than a restarted etcd (that extends them).
    pub fn set_available(&self, available: bool) {
        self.inner.signal.send_modify(|s| {
            if s.available && !available {
                s.outage += 1;
            }
            s.available = available;
        });
    }

    /// The current revision, without a listing.
    pub fn revision(&self) -> i64 {
        lock(&self.inner.state).revision
    }

    /// Runs `f` on the state after applying due lease expiries, then wakes watchers if
    /// the revision moved.
    fn with_state<R>(
        &self,
        f: impl FnOnce(&mut State, Instant) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if !self.inner.signal.borrow().available {
            return Err(unavailable());
        }
        let now = Instant::now();
        let (result, revision) = {
            let mut st = lock(&self.inner.state);
            st.expire(now);
            let result = f(&mut st, now);
            (result, st.revision)
        };
        self.inner.publish(revision);
        result
    }

    /// Leases must expire even when nobody calls the store (a watcher is waiting for the
    /// delete), so a task sleeps until the next deadline. It is started on the first
    /// grant, from inside a runtime, and restarted if its runtime went away.
    fn ensure_reaper(&self) {
        let mut reaper = lock(&self.inner.reaper);
        if reaper.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let wake = self.inner.reaper_wake.clone();
        *reaper = Some(handle.spawn(reap(weak, wake)));
    }
}

impl Inner {
    fn publish(&self, revision: i64) {
        self.signal.send_if_modified(|s| {
            let changed = s.revision != revision;
            s.revision = revision;
            changed
        });
    }
}

async fn reap(store: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = store.upgrade() else { return };
            let (next, revision) = {
                let mut st = lock(&inner.state);
                st.expire(Instant::now());
                (st.next_deadline(), st.revision)
            };
            inner.publish(revision);
            next
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// The state code has no panicking paths, so a poisoned lock can only come from a
/// panic elsewhere in a test; carrying on beats cascading panics into every caller.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unavailable() -> StoreError {
    StoreError::Unavailable {
        endpoint: ENDPOINT.to_string(),
        reason: "simulated outage".to_string(),
    }
}

#[async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.with_state(|st, _| st.get(key))
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        self.with_state(|st, _| Ok(st.range(prefix)))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        // Before the availability check, as `EtcdStore` validates before any network trip.
        txn.validate()?;
        self.with_state(|st, _| st.txn(txn))
    }

    async fn grant(&self, ttl_secs: i64) -> Result<LeaseId, StoreError> {
        let id = self.with_state(|st, now| Ok(st.grant(ttl_secs, now)))?;
        self.ensure_reaper();
        self.inner.reaper_wake.notify_one();
        Ok(id)
    }

    async fn keep_alive_once(&self, lease: LeaseId) -> Result<i64, StoreError> {
        self.with_state(|st, now| st.keep_alive(lease, now))
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.with_state(|st, _| st.revoke(lease))
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        self.with_state(|_, _| Ok(()))?;
        Ok(watch::stream(
            self.inner.clone(),
            prefix.to_string(),
            from_revision,
        ))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.with_state(|st, _| st.compact(revision))
    }
}
