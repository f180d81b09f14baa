//! Watch streams over `MemStore`'s history. A watcher keeps only a cursor (the last
//! revision it delivered) and reads the shared history, so a slow consumer costs no
//! buffer; like a lagging etcd watcher, it gets `Compacted` if history moves past it.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::watch as signal;

use super::{lock, unavailable, Inner, Signal};
use crate::{StoreError, WatchEvent, WatchStream};

/// Cap per batch, like etcd's batching, so one item stays a reasonable size; whole
/// revisions are never split, so a batch can exceed it by one transaction.
const MAX_BATCH_EVENTS: usize = 1000;

struct Watcher {
    inner: Arc<Inner>,
    prefix: String,
    /// Last revision already delivered (or known to hold nothing for this prefix).
    last: i64,
    signal: signal::Receiver<Signal>,
    outage: u64,
    done: bool,
}

pub(super) fn stream(inner: Arc<Inner>, prefix: String, from_revision: i64) -> WatchStream {
    let mut signal = inner.signal.subscribe();
    let outage = signal.borrow_and_update().outage;
    let watcher = Watcher {
        inner,
        prefix,
        // Revision 1 is the empty initial store: watching "from 0" and "from 1" is the same.
        last: from_revision.max(1),
        signal,
        outage,
        done: false,
    };
    futures::stream::unfold(watcher, |mut w| async move {
        if w.done {
            return None;
        }
        let item = w.next_batch().await;
        w.done = item.is_err();
        Some((item, w))
    })
    .boxed()
}

impl Watcher {
    async fn next_batch(&mut self) -> Result<Vec<WatchEvent>, StoreError> {
        loop {
            // Mark the signal seen before reading the state, so a change that lands
            // between the read and the wait below still wakes us.
            let sig = *self.signal.borrow_and_update();
            if !sig.available || sig.outage != self.outage {
                return Err(unavailable());
            }
            {
                let st = lock(&self.inner.state);
                if self.last < st.compact_revision {
                    return Err(StoreError::Compacted {
                        compact_revision: st.compact_revision,
                    });
                }
                let (events, last) = st.events_after(self.last, &self.prefix, MAX_BATCH_EVENTS);
                self.last = last;
                if !events.is_empty() {
                    return Ok(events);
                }
            }
            if self.signal.changed().await.is_err() {
                // Unreachable while we hold `inner` (it owns the sender); end quietly.
                return Err(unavailable());
            }
        }
    }
}
