//! The context's one connection: retried while the store is unreachable,
//! made once, and handed out again rather than reopened.

use std::sync::atomic::{AtomicUsize, Ordering};

use railyard_store::MemStore;

use super::*;

/// Fails with `Unavailable` `down` times, then connects to `store`; counts calls.
struct Counting {
    store: MemStore,
    down: usize,
    calls: AtomicUsize,
    error: Option<StoreError>,
}

impl Counting {
    fn new(down: usize) -> Counting {
        Counting {
            store: MemStore::new(),
            down,
            calls: AtomicUsize::new(0),
            error: None,
        }
    }
}

impl Counting {
    fn attempt(&self) -> std::result::Result<Arc<dyn Store>, StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if n < self.down {
            return Err(StoreError::Unavailable {
                endpoint: "test".into(),
                reason: "not yet".into(),
            });
        }
        Ok(Arc::new(self.store.clone()))
    }
}

/// Retries as `railyard_store::connect_until` does: after each failure `on_error`
/// decides, the backoff's delay is waited, and shutdown ends the wait.
#[async_trait]
impl Connect for Counting {
    async fn connect(
        &self,
        mut backoff: Backoff,
        shutdown: &mut watch::Receiver<bool>,
        on_error: OnError<'_>,
    ) -> std::result::Result<Option<Arc<dyn Store>>, StoreError> {
        loop {
            let e = match self.attempt() {
                Ok(store) => return Ok(Some(store)),
                Err(e) => e,
            };
            let wait = backoff.next_delay();
            if !on_error(&e, wait) {
                return Err(e);
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = crate::shutdown::stopped(shutdown) => return Ok(None),
            }
        }
    }
}

#[tokio::test]
async fn an_unreachable_store_is_retried_and_connected_once() {
    let connector = Counting::new(2);
    let (slot, _) = watch::channel(None);
    let waiting = StoreSlot(slot.subscribe());
    let metrics = Metrics::default();
    let (_stop, mut shutdown) = watch::channel(false);
    let first = connect_once(&connector, &slot, &metrics, &mut shutdown)
        .await
        .expect("connects")
        .expect("not shut down");
    assert_eq!(
        connector.calls.load(Ordering::SeqCst),
        3,
        "two refusals, one connection"
    );
    assert_eq!(metrics.store_errors.get(), 2);
    // A part that waited for the store gets this one, and asking again connects
    // nothing new.
    let waited = waiting.get().await.expect("published");
    assert!(Arc::ptr_eq(&first, &waited));
    let again = connect_once(&connector, &slot, &metrics, &mut shutdown)
        .await
        .expect("ok")
        .expect("store");
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(connector.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn shutdown_while_waiting_for_the_store_returns_nothing() {
    let connector = Counting::new(usize::MAX);
    let (slot, _) = watch::channel(None);
    let waiting = StoreSlot(slot.subscribe());
    let metrics = Metrics::default();
    let (stop, mut shutdown) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop.send(true);
    });
    let got = connect_once(&connector, &slot, &metrics, &mut shutdown)
        .await
        .expect("no error");
    assert!(got.is_none());
    stopper.await.expect("stopper");
    drop(slot);
    assert!(
        waiting.get().await.is_none(),
        "waiters learn there is no store"
    );
}

#[tokio::test]
async fn a_store_that_refuses_the_configuration_ends_the_daemon() {
    let mut connector = Counting::new(0);
    connector.error = Some(StoreError::InvalidRequest {
        reason: "no endpoints".into(),
    });
    let (slot, _) = watch::channel(None);
    let (_stop, mut shutdown) = watch::channel(false);
    let got = connect_once(&connector, &slot, &Metrics::default(), &mut shutdown).await;
    assert!(got.is_err());
    assert_eq!(connector.calls.load(Ordering::SeqCst), 1, "not retried");
}
