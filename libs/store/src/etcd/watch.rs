//! Turns an etcd watch stream into `WatchStream` items: drops the extra revision
//! asked for (see `EtcdStore::watch`), and ends with `Compacted`/`Unavailable` the way
//! `MemStore` does.

use etcd_client as ec;

use super::convert::convert_event;
use super::errors::{classify, other};
use crate::{StoreError, WatchEvent};

pub(super) struct EtcdWatcher {
    /// Owns the request side too: dropping it would end the watch.
    pub(super) stream: ec::WatchStream,
    pub(super) from_revision: i64,
    pub(super) endpoint: String,
    pub(super) what: String,
    pub(super) done: bool,
}

impl EtcdWatcher {
    pub(super) async fn next_batch(&mut self) -> Result<Vec<WatchEvent>, StoreError> {
        loop {
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return Err(StoreError::Unavailable {
                        endpoint: self.endpoint.clone(),
                        reason: format!("{}: stream closed by the server", self.what),
                    })
                }
                Err(e) => return Err(classify(&self.endpoint, &self.what, None, e)),
            };
            // etcd cancels a watch whose start is compacted and says where history begins.
            if resp.compact_revision() != 0 {
                return Err(StoreError::Compacted {
                    compact_revision: resp.compact_revision(),
                });
            }
            if resp.canceled() {
                let reason = resp.cancel_reason();
                // A member that lost its leader cancels watches; that passes like an outage.
                if reason.contains("no leader") {
                    return Err(StoreError::Unavailable {
                        endpoint: self.endpoint.clone(),
                        reason: format!("{}: canceled by etcd: {reason}", self.what),
                    });
                }
                return Err(other(
                    &self.endpoint,
                    &self.what,
                    format!("canceled by etcd: {reason}"),
                ));
            }
            let events: Vec<WatchEvent> = resp
                .events()
                .iter()
                .filter_map(convert_event)
                .filter(|e| e.revision() > self.from_revision)
                .collect();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}
