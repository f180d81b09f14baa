//! Connecting to etcd from a service: a service started before etcd waits for
//! it, retrying with a doubling backoff, and stays stoppable while it waits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::{EtcdConfig, EtcdStore, Store, StoreError};

/// Exponential backoff for retries: quick after a blip, and bounded so a long
/// outage is retried at a steady, cheap pace.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// What the services use to wait for etcd: 200 ms doubling up to 5 s.
    pub fn connect() -> Self {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Connects to etcd, retrying every failure after the delays of `backoff` and
/// logging each ("etcd not reachable yet; retrying"). `None` once `shutdown` is
/// true or its sender is gone, also in the middle of an attempt.
pub async fn connect_with_backoff(
    config: &EtcdConfig,
    backoff: Backoff,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Arc<dyn Store>> {
    let retry_all = |e: &StoreError, wait: Duration| {
        warn!(error = %e, retry_in = ?wait, "etcd not reachable yet; retrying");
        true
    };
    // `retry_all` never gives up, so there is no error to return.
    connect_until(config, backoff, shutdown, retry_all)
        .await
        .unwrap_or_default()
}

/// [`connect_with_backoff`] with the caller deciding about each failure:
/// `on_error(error, wait)` returns whether to retry after `wait` (and may count
/// or log it); a failure it does not retry is returned.
pub async fn connect_until(
    config: &EtcdConfig,
    mut backoff: Backoff,
    shutdown: &mut watch::Receiver<bool>,
    mut on_error: impl FnMut(&StoreError, Duration) -> bool,
) -> Result<Option<Arc<dyn Store>>, StoreError> {
    loop {
        let attempt = tokio::select! {
            r = EtcdStore::connect(config.clone()) => r,
            () = stopped(shutdown) => return Ok(None),
        };
        match attempt {
            Ok(store) => return Ok(Some(Arc::new(store))),
            Err(e) => {
                let wait = backoff.next_delay();
                if !on_error(&e, wait) {
                    return Err(e);
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stopped(shutdown) => return Ok(None),
                }
            }
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    fn unreachable() -> EtcdConfig {
        // A port nothing listens on: every attempt fails at once.
        EtcdConfig::new(["http://127.0.0.1:1"])
    }

    #[tokio::test]
    async fn waits_until_stopped() {
        let (stop, mut shutdown) = watch::channel(false);
        let tries = std::sync::atomic::AtomicU32::new(0);
        let config = unreachable();
        let waiting = connect_until(
            &config,
            Backoff::new(Duration::from_millis(1), Duration::from_millis(5)),
            &mut shutdown,
            |e, _| {
                assert!(e.is_retryable(), "{e}");
                tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                true
            },
        );
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.send(true).expect("receiver alive");
        };
        let (got, ()) = tokio::join!(waiting, stopper);
        assert!(matches!(got, Ok(None)));
        assert!(tries.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    }

    #[tokio::test]
    async fn a_refused_retry_returns_the_error_and_a_dropped_sender_stops() {
        let (_stop, mut shutdown) = watch::channel(false);
        let got = connect_until(&unreachable(), Backoff::connect(), &mut shutdown, |_, _| {
            false
        })
        .await;
        assert!(got.is_err());

        let (stop, mut shutdown) = watch::channel(false);
        drop(stop);
        assert!(
            connect_with_backoff(&unreachable(), Backoff::connect(), &mut shutdown)
                .await
                .is_none()
        );
    }
}
