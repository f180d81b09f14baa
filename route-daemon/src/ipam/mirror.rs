//! Copies this host's durable allocations to etcd (`/railyard/v1/allocations/...`)
//! in batches, for cluster-wide visibility (`railyard describe host`, the planner's
//! renumber check) and as the second copy a host recovers from. Allocation never
//! waits for it: the local log is the source of truth, so pods keep getting
//! addresses while etcd is down, and the mirror catches up (or re-syncs
//! completely) when it is back.
//!
//! A re-sync never erases what it cannot account for (docs/design/allocation-recovery.md):
//! a record of this host that the log does not hold is deleted only when the log
//! released that attachment and the delete had not reached etcd yet, or when the
//! log has since given one of its addresses to another attachment (the record is
//! older than that decision). Any other such record is adopted into the log, as
//! held, and logged loudly: it is what a daemon whose state dir was emptied finds
//! of the pods still running, and believing the empty log instead would hand
//! their addresses out again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use railyard_allocdb::{AllocDb, Attachment, Change};
use railyard_core::ipam::AttachmentId;
use railyard_core::keys;
use railyard_store::{Op, Store, StoreError, Txn, MAX_TXN_OPS};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub host: String,
    /// How often to drain the change feed; a burst of ADDs lands in one write.
    pub interval: Duration,
}

fn key(host: &str, id: &AttachmentId) -> String {
    keys::allocation(&id.network, host, &id.container_id, &id.ifname)
}

/// One write owed to etcd. A delete carries the released attachment, so the log
/// can forget the release once etcd has it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    Put(Vec<u8>),
    Delete(AttachmentId),
}

type Pending = BTreeMap<String, Write>;

/// Mirrors until `shutdown` flips. Never returns an error: etcd trouble is logged
/// and retried with backoff, with the unwritten changes kept. `synced` turns true
/// after the first complete re-sync (records found in etcd adopted): until then a
/// daemon whose log was empty must not allocate.
pub async fn run_mirror(
    store: Arc<dyn Store>,
    db: Arc<AllocDb>,
    cfg: MirrorConfig,
    synced: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Key -> write. Later changes to a key replace earlier ones.
    let mut pending: Pending = BTreeMap::new();
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
                    if let Ok(value) = serde_json::to_vec(&*att) {
                        pending.insert(key(&cfg.host, &att.id), Write::Put(value));
                    }
                }
                Change::Released(id) => {
                    pending.insert(key(&cfg.host, &id), Write::Delete(id));
                }
            }
        }
        let result = async {
            if resync {
                full_resync(store.as_ref(), &db, &cfg.host, &mut pending).await?;
                resync = false;
                synced.send_if_modified(|s| !std::mem::replace(s, true));
            }
            flush(store.as_ref(), &db, &mut pending).await
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

/// Brings etcd's copy of this host's allocations and the local database together
/// (see the module doc for what may be deleted).
async fn full_resync(
    store: &dyn Store,
    db: &AllocDb,
    host: &str,
    pending: &mut Pending,
) -> Result<(), StoreError> {
    let db_error = |e: railyard_allocdb::DbError| StoreError::Other {
        context: "allocation database".into(),
        message: e.to_string(),
    };
    let local = db.attachments(None).await.map_err(db_error)?;
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for att in &local {
        if let Ok(v) = serde_json::to_vec(&**att) {
            want.insert(key(host, &att.id), v);
        }
    }
    let stored = store.range(keys::ALLOCATIONS).await?;
    let mut unknown: Vec<(String, Attachment)> = Vec::new();
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
            // Written by a newer railyard: never overwritten with this build's
            // idea of it (docs/etcd-keys.md, "Format versions").
            Some(_) if railyard_store::format_version(&kv.key, &kv.value).is_err() => {
                pending.remove(&kv.key);
                warn!(
                    key = kv.key,
                    "allocation record of a newer format in etcd; left alone"
                );
            }
            Some(v) => {
                pending.insert(kv.key, Write::Put(v));
            }
            None if pending.contains_key(&kv.key) => {}
            None => match kv.decode_json::<Attachment>() {
                Ok(att) if db.released_unmirrored(&att.id) => {
                    pending.insert(kv.key, Write::Delete(att.id));
                }
                Ok(att) => unknown.push((kv.key, att)),
                Err(e) => {
                    warn!(key = kv.key, error = %e, "unreadable allocation record in etcd; left alone")
                }
            },
        }
    }
    for (k, v) in want {
        pending.insert(k, Write::Put(v));
    }
    if !unknown.is_empty() {
        adopt(db, host, unknown, pending).await.map_err(db_error)?;
    }
    info!(
        attachments = local.len(),
        to_write = pending.len(),
        "allocation mirror re-synced with etcd"
    );
    Ok(())
}

/// Records etcd holds for this host that the log has no account of: adopted as
/// held, or deleted when the log has since given an address of theirs away.
async fn adopt(
    db: &AllocDb,
    host: &str,
    unknown: Vec<(String, Attachment)>,
    pending: &mut Pending,
) -> railyard_allocdb::Result<()> {
    let keys: BTreeMap<AttachmentId, String> = unknown
        .iter()
        .map(|(k, a)| (a.id.clone(), k.clone()))
        .collect();
    let found = unknown.len();
    let result = db
        .adopt(unknown.into_iter().map(|(_, a)| a).collect())
        .await?;
    for id in &result.adopted {
        warn!(network = %id.network, container = %id.container_id, ifname = %id.ifname,
            "allocation found in etcd but not in the local log: adopted, its addresses stay held until DEL or GC");
    }
    if !result.adopted.is_empty() {
        error!(
            host,
            found,
            adopted = result.adopted.len(),
            dir = %db.dir().display(),
            "the local allocation log lacked allocations etcd holds for this host (was the state dir emptied or replaced?); recovered them from etcd"
        );
    }
    for (id, why) in result.stale {
        warn!(network = %id.network, container = %id.container_id, reason = why,
            "allocation record in etcd is older than the local log's decision; deleting it");
        if let Some(k) = keys.get(&id) {
            pending.insert(k.clone(), Write::Delete(id));
        }
    }
    Ok(())
}

async fn flush(store: &dyn Store, db: &AllocDb, pending: &mut Pending) -> Result<(), StoreError> {
    while !pending.is_empty() {
        let batch: Vec<(String, Write)> = pending
            .iter()
            .take(MAX_TXN_OPS)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut txn = Txn::new();
        for (k, v) in &batch {
            txn = txn.then(match v {
                Write::Put(v) => Op::put(k.clone(), v.clone()),
                Write::Delete(_) => Op::delete(k.clone()),
            });
        }
        store.txn(txn).await?;
        let ops = batch.len();
        let mut deleted = Vec::new();
        for (k, v) in batch {
            pending.remove(&k);
            if let Write::Delete(id) = v {
                deleted.push(id);
            }
        }
        db.mirrored_releases(&deleted);
        debug!(ops, "mirrored allocations to etcd");
    }
    Ok(())
}
