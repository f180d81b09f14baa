//! One followed prefix of the store: `watch_or_relist` plus what it does not do,
//! restarting after a fatal watch error from the last revision seen (or with a
//! fresh listing when none was seen yet).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use railyard_store::{watch_or_relist, Store, StoreError, WatchUpdate};
use tokio::time::{sleep_until, Instant};

/// How long to wait before re-opening a watch that ended with a fatal error:
/// such errors (a watch canceled by etcd) do not clear up in milliseconds.
const RESTART_DELAY: Duration = Duration::from_secs(1);

type Updates = BoxStream<'static, Result<WatchUpdate, StoreError>>;

pub(crate) struct Follow {
    store: Arc<dyn Store>,
    prefix: &'static str,
    stream: Option<Updates>,
    revision: Option<i64>,
    restart_at: Option<Instant>,
}

impl Follow {
    pub(crate) fn new(store: Arc<dyn Store>, prefix: &'static str) -> Self {
        Follow {
            store,
            prefix,
            stream: None,
            revision: None,
            restart_at: None,
        }
    }

    /// The next update or error. Cancel safe: the stream and the restart deadline
    /// live in `self`, so dropping the future loses nothing.
    pub(crate) async fn next(&mut self) -> Result<WatchUpdate, StoreError> {
        loop {
            if let Some(at) = self.restart_at {
                sleep_until(at).await;
                self.restart_at = None;
            }
            let stream = self.stream.get_or_insert_with(|| {
                watch_or_relist(Arc::clone(&self.store), self.prefix, self.revision)
            });
            match stream.next().await {
                Some(Ok(update)) => {
                    match &update {
                        WatchUpdate::Snapshot(range) => self.revision = Some(range.revision),
                        WatchUpdate::Events(events) => {
                            if let Some(e) = events.last() {
                                self.revision = Some(e.revision());
                            }
                        }
                    }
                    return Ok(update);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    tracing::warn!(prefix = self.prefix, "watch ended; following again shortly");
                    self.stream = None;
                    self.restart_at = Some(Instant::now() + RESTART_DELAY);
                }
            }
        }
    }
}
