//! Leader election on the store, in the style of etcd's concurrency package: every
//! candidate writes a key under its own lease, the lowest create revision leads, and
//! each candidate waits only for the key just ahead of it (no thundering herd).
//!
//! Every write the leader makes carries [`Leadership::guard`]: a compare on its
//! election key's create revision. When the leader's lease expires the key vanishes,
//! so a deposed leader that wakes up late cannot overwrite its successor's plan.

use std::sync::Arc;

use futures::StreamExt;
use railyard_core::keys;
use railyard_store::{
    spawn_keep_alive, Compare, KeepAlive, LeaseStatus, Op, Store, Txn, WatchEvent,
};
use tracing::info;

use crate::error::{PlannerError, Result};

pub struct Leadership {
    store: Arc<dyn Store>,
    key: String,
    create_revision: i64,
    keep_alive: KeepAlive,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("key", &self.key)
            .field("create_revision", &self.create_revision)
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// The compare that makes a write conditional on still being the leader.
    pub fn guard(&self) -> Compare {
        Compare::CreateRevision {
            key: self.key.clone(),
            rev: self.create_revision,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Resolves when the lease can no longer be relied on; the holder must stop
    /// acting as leader at once.
    pub async fn lost(&mut self) -> LeaseStatus {
        self.keep_alive.until_unsafe().await
    }

    /// Steps down now, so a standby takes over without waiting out the TTL.
    pub async fn resign(self) {
        let _ = self.store.revoke(self.keep_alive.lease()).await;
    }
}

/// Waits until this candidate leads. `identity` is stored as the key's value so
/// operators can see who leads (`railyard get leader`).
pub async fn campaign(store: Arc<dyn Store>, identity: &str, ttl_secs: i64) -> Result<Leadership> {
    let lease = store.grant(ttl_secs).await?;
    let mut keep_alive = spawn_keep_alive(Arc::clone(&store), lease, ttl_secs);
    let key = format!("{}{:016x}", keys::ELECTION, lease.0);
    store
        .txn(Txn::new().when(Compare::Absent(key.clone())).then(Op::Put {
            key: key.clone(),
            value: identity.as_bytes().to_vec(),
            lease: Some(lease),
        }))
        .await?;
    let create_revision = store
        .get(&key)
        .await?
        .map(|kv| kv.create_revision)
        .ok_or_else(|| {
            PlannerError::LostLeadership(format!("lease {lease} expired while campaigning"))
        })?;
    loop {
        let range = store.range(keys::ELECTION).await?;
        let ahead = range
            .kvs
            .iter()
            .filter(|kv| kv.create_revision < create_revision)
            .max_by_key(|kv| kv.create_revision);
        let Some(ahead) = ahead else {
            info!(%identity, key, "became planner leader");
            return Ok(Leadership {
                store,
                key,
                create_revision,
                keep_alive,
            });
        };
        let mut events = store.watch(&ahead.key, range.revision).await?;
        loop {
            tokio::select! {
                batch = events.next() => match batch {
                    Some(Ok(batch)) if batch.iter().any(|e| matches!(e, WatchEvent::Delete { key, .. } if *key == ahead.key)) => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => break, // stream ended: re-check from a fresh listing
                },
                status = keep_alive.until_unsafe() => {
                    return Err(PlannerError::LostLeadership(format!("lease {lease} is {status:?} while campaigning")));
                }
            }
        }
    }
}

/// Who leads now, if anyone.
pub async fn leader(store: &dyn Store) -> Result<Option<String>> {
    Ok(railyard_store::election::leader(store, keys::ELECTION).await?)
}
