//! The list-then-watch loop every consumer of the store needs: start from a listing
//! (or a known revision), apply events, and when history was compacted away under a
//! slow or disconnected consumer, re-list and carry on. Written once here so the
//! route daemon and the planner cannot get the resume revision wrong.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;

use crate::{Backoff, Range, Store, StoreError, WatchEvent, WatchStream};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a follower sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchUpdate {
    /// The complete state under the prefix at `revision`: replace what you had (keys
    /// missing from it were deleted while you were not watching).
    Snapshot(Range),
    /// Changes after the previous update, in revision order, never splitting one
    /// revision.
    Events(Vec<WatchEvent>),
}

/// Follows `prefix` forever. Starts with a `Snapshot` when `from_revision` is `None`,
/// otherwise with the events after `from_revision`. Compaction turns into a fresh
/// `Snapshot`. `Unavailable` errors are yielded so callers can report them, and the
/// stream keeps retrying with backoff (from the last revision it delivered); any other
/// error is yielded and ends the stream.
pub fn watch_or_relist(
    store: Arc<dyn Store>,
    prefix: impl Into<String>,
    from_revision: Option<i64>,
) -> BoxStream<'static, Result<WatchUpdate, StoreError>> {
    let follower = Follower {
        store,
        prefix: prefix.into(),
        last: from_revision,
        stream: None,
        backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
        retry_pending: false,
        done: false,
    };
    futures::stream::unfold(follower, |mut f| async move {
        let item = f.next_update().await?;
        Some((item, f))
    })
    .boxed()
}

struct Follower {
    store: Arc<dyn Store>,
    prefix: String,
    /// Revision everything up to which has been delivered; `None` means "re-list".
    last: Option<i64>,
    stream: Option<WatchStream>,
    backoff: Backoff,
    retry_pending: bool,
    done: bool,
}

impl Follower {
    async fn next_update(&mut self) -> Option<Result<WatchUpdate, StoreError>> {
        loop {
            if self.done {
                return None;
            }
            if self.retry_pending {
                tokio::time::sleep(self.backoff.next_delay()).await;
                self.retry_pending = false;
            }
            let Some(last) = self.last else {
                return Some(match self.store.range(&self.prefix).await {
                    Ok(range) => {
                        self.last = Some(range.revision);
                        self.backoff.reset();
                        Ok(WatchUpdate::Snapshot(range))
                    }
                    Err(e) => self.fail(e),
                });
            };
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => match self.store.watch(&self.prefix, last).await {
                    Ok(stream) => self.stream.insert(stream),
                    Err(e) => return Some(self.fail(e)),
                },
            };
            match stream.next().await {
                Some(Ok(events)) => {
                    if let Some(event) = events.last() {
                        self.last = Some(event.revision());
                    }
                    self.backoff.reset();
                    return Some(Ok(WatchUpdate::Events(events)));
                }
                Some(Err(StoreError::Compacted { compact_revision })) => {
                    tracing::info!(
                        prefix = %self.prefix,
                        last,
                        compact_revision,
                        "watch history compacted; re-listing"
                    );
                    self.stream = None;
                    self.last = None;
                }
                Some(Err(e)) => {
                    self.stream = None;
                    return Some(self.fail(e));
                }
                None => {
                    self.stream = None;
                    self.retry_pending = true;
                }
            }
        }
    }

    fn fail(&mut self, e: StoreError) -> Result<WatchUpdate, StoreError> {
        if e.is_retryable() {
            tracing::warn!(prefix = %self.prefix, error = %e, "watch interrupted; retrying");
            self.retry_pending = true;
        } else {
            self.done = true;
        }
        Err(e)
    }
}
