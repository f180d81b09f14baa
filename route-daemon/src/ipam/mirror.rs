//! Copies this host's durable allocations to etcd (`/railyard/v1/allocations/...`)
//! in batches, for cluster-wide visibility (`railyard describe host`, the planner's
//! renumber check). Allocation never waits for it: the local log is the source of
//! truth, so pods keep getting addresses while etcd is down, and the mirror catches
//! up (or re-syncs completely) when it is back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use railyard_allocdb::{AllocDb, Change};
use railyard_core::ipam::AttachmentId;
use railyard_core::keys;
use railyard_store::{Op, Store, StoreError, Txn, MAX_TXN_OPS};
use tokio::sync::watch;
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub host: String,
    /// How often to drain the change feed; a burst of ADDs lands in one write.
    pub interval: Duration,
}

fn key(host: &str, id: &AttachmentId) -> String {
    keys::allocation(&id.network, host, &id.container_id, &id.ifname)
}

/// Mirrors until `shutdown` flips. Never returns an error: etcd trouble is logged
/// and retried with backoff, with the unwritten changes kept.
pub async fn run_mirror(
    store: Arc<dyn Store>,
    db: Arc<AllocDb>,
    cfg: MirrorConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    // Key -> value to write (None: delete). Later changes to a key replace earlier ones.
    let mut pending: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let mut resync = true;
    let mut backoff = cfg.interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        let changes = db.drain_changes();
        resync |= changes.overflowed;
        for ev in changes.events {
            match ev.change {
                Change::Added(att) => {
                    let value = serde_json::to_vec(&*att).ok();
                    pending.insert(key(&cfg.host, &att.id), value);
                }
                Change::Released(id) => {
                    pending.insert(key(&cfg.host, &id), None);
                }
            }
        }
        let result = async {
            if resync {
                full_resync(store.as_ref(), &db, &cfg.host, &mut pending).await?;
                resync = false;
            }
            flush(store.as_ref(), &mut pending).await
        }
        .await;
        match result {
            Ok(()) => backoff = cfg.interval,
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                warn!(error = %e, pending = pending.len(), "allocation mirror to etcd failed; will retry");
            }
        }
    }
}

/// Makes etcd's copy of this host's allocations equal the local database: what the
/// database holds is written, what etcd holds beyond it is deleted.
async fn full_resync(
    store: &dyn Store,
    db: &AllocDb,
    host: &str,
    pending: &mut BTreeMap<String, Option<Vec<u8>>>,
) -> Result<(), StoreError> {
    let local = db.attachments(None).await.map_err(|e| StoreError::Other {
        context: "allocation database".into(),
        message: e.to_string(),
    })?;
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for att in &local {
        if let Ok(v) = serde_json::to_vec(&**att) {
            want.insert(key(host, &att.id), v);
        }
    }
    let stored = store.range(keys::ALLOCATIONS).await?;
    for kv in stored.kvs {
        // /railyard/v1/allocations/<net>/<host>/<cid>/<ifname>
        let rest = kv.key.strip_prefix(keys::ALLOCATIONS).unwrap_or_default();
        if rest.split('/').nth(1) != Some(host) {
            continue;
        }
        match want.remove(&kv.key) {
            Some(v) if v == kv.value => {
                pending.remove(&kv.key);
            }
            Some(v) => {
                pending.insert(kv.key, Some(v));
            }
            None => {
                pending.insert(kv.key, None);
            }
        }
    }
    for (k, v) in want {
        pending.insert(k, Some(v));
    }
    info!(
        attachments = local.len(),
        to_write = pending.len(),
        "allocation mirror re-synced with etcd"
    );
    Ok(())
}

async fn flush(
    store: &dyn Store,
    pending: &mut BTreeMap<String, Option<Vec<u8>>>,
) -> Result<(), StoreError> {
    while !pending.is_empty() {
        let batch: Vec<(String, Option<Vec<u8>>)> = pending
            .iter()
            .take(MAX_TXN_OPS)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut txn = Txn::new();
        for (k, v) in &batch {
            txn = txn.then(match v {
                Some(v) => Op::put(k.clone(), v.clone()),
                None => Op::delete(k.clone()),
            });
        }
        store.txn(txn).await?;
        for (k, _) in &batch {
            pending.remove(k);
        }
        debug!(ops = batch.len(), "mirrored allocations to etcd");
    }
    Ok(())
}
