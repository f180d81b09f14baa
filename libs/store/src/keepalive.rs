//! Background lease refresh. Whoever holds a lease (a registered host, the planner
//! leader) needs two things: the lease kept alive, and to learn promptly when it can
//! no longer count on it. The status distinguishes "etcd is unreachable, the lease may
//! still be fine" from "the lease is certainly gone", because etcd extends leases when
//! it restarts, so an outage shorter than the TTL (or a restart) need not lose it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::{LeaseId, Store, StoreError};

/// What the keep-alive task currently knows about its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// The last refresh succeeded.
    Alive,
    /// Refreshes fail with transient errors, but less than one TTL has passed since
    /// the last confirmed refresh, so the lease is still alive on the server.
    Unconfirmed,
    /// More than one TTL without a confirmed refresh: the lease may have expired.
    /// Holders of exclusive roles must act as if it had. Refreshing continues, and a
    /// success (etcd restarted and kept the lease) returns to `Alive`.
    Expired,
    /// The store said the lease does not exist. Final: the task has stopped.
    Lost,
}

/// Handle to a running keep-alive. Dropping it stops the refreshes (the lease then
/// expires after its TTL; revoke it first to drop its keys at once).
#[derive(Debug)]
pub struct KeepAlive {
    lease: LeaseId,
    status: watch::Receiver<LeaseStatus>,
    task: JoinHandle<()>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeepAlive {
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    pub fn status(&self) -> LeaseStatus {
        *self.status.borrow()
    }

    /// A receiver to select on alongside other work.
    pub fn subscribe(&self) -> watch::Receiver<LeaseStatus> {
        self.status.clone()
    }

    /// Waits until the status is no longer `Alive` or `Unconfirmed`, i.e. until the
    /// holder must stop relying on the lease, and returns that status.
    pub async fn until_unsafe(&mut self) -> LeaseStatus {
        let unsafe_status = |s: &LeaseStatus| matches!(s, LeaseStatus::Expired | LeaseStatus::Lost);
        match self.status.wait_for(unsafe_status).await {
            Ok(status) => *status,
            // The task is gone (its runtime shut down): nobody is refreshing any more.
            Err(_) => LeaseStatus::Lost,
        }
    }
}

/// Refreshes `lease` every `ttl_secs / 3` (the first time immediately), retrying
/// transient failures sooner, until the store reports the lease gone or the handle
/// is dropped. Must be called inside a tokio runtime.
pub fn spawn_keep_alive(store: Arc<dyn Store>, lease: LeaseId, ttl_secs: i64) -> KeepAlive {
    let ttl = Duration::from_secs(u64::try_from(ttl_secs.max(1)).unwrap_or(1));
    let (tx, rx) = watch::channel(LeaseStatus::Alive);
    let refresher = Refresher {
        store,
        lease,
        period: ttl / 3,
        retry: (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        confirmed_until: Instant::now() + ttl,
        status: tx,
    };
    KeepAlive {
        lease,
        status: rx,
        task: tokio::spawn(refresher.run()),
    }
}

struct Refresher {
    store: Arc<dyn Store>,
    lease: LeaseId,
    period: Duration,
    retry: Duration,
    /// Until when the lease is known to live on the server.
    confirmed_until: Instant,
    status: watch::Sender<LeaseStatus>,
}

impl Refresher {
    async fn run(mut self) {
        let mut next = Instant::now();
        loop {
            self.wait_until(next).await;
            let sent = Instant::now();
            let store = self.store.clone();
            // Bounded by the refresh period, not only by the store's request
            // timeout: a member that hangs must not hold the only refresh until
            // the lease runs out. The store takes a call given up on this late
            // as its member's failure and sends the retry to another one.
            let lease = self.lease;
            let period = self.period;
            let call = async move {
                match tokio::time::timeout(period, store.keep_alive_once(lease)).await {
                    Ok(result) => result,
                    Err(_) => Err(StoreError::Unavailable {
                        endpoint: "etcd".to_string(),
                        reason: format!("refreshing lease {lease}: no answer within {period:?}"),
                    }),
                }
            };
            tokio::pin!(call);
            let result = loop {
                let deadline = self.confirmed_until;
                tokio::select! {
                    result = &mut call => break result,
                    () = sleep_until(deadline), if self.current() != LeaseStatus::Expired => {
                        self.set(LeaseStatus::Expired);
                    }
                }
            };
            match result {
                Ok(ttl_left) => {
                    let ttl_left = Duration::from_secs(u64::try_from(ttl_left).unwrap_or(0));
                    // Measured from when the request left: the server refreshed no earlier.
                    self.confirmed_until = sent + ttl_left;
                    self.set(LeaseStatus::Alive);
                    next = Instant::now() + self.period;
                }
                Err(StoreError::LeaseNotFound { .. }) => {
                    tracing::warn!(lease = %self.lease, "lease is gone; stopping keep-alive");
                    self.set(LeaseStatus::Lost);
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lease, error = %e, "lease refresh failed; retrying");
                    if self.current() == LeaseStatus::Alive {
                        self.set(LeaseStatus::Unconfirmed);
                    }
                    next = Instant::now() + self.retry;
                }
            }
        }
    }

    /// Sleeps until `target`, marking the lease `Expired` if its confirmation runs out
    /// on the way.
    async fn wait_until(&mut self, target: Instant) {
        while Instant::now() < target {
            if self.current() == LeaseStatus::Expired || self.confirmed_until >= target {
                sleep_until(target).await;
                return;
            }
            sleep_until(self.confirmed_until).await;
            self.set(LeaseStatus::Expired);
        }
    }

    fn current(&self) -> LeaseStatus {
        *self.status.borrow()
    }

    fn set(&self, status: LeaseStatus) {
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}
