//! Copies DeviceClass objects into etcd, where the route-daemons follow them
//! (leader only, like the rest of the controller).
//!
//! Level-triggered: any change of a DeviceClass object or of a key under
//! `/railyard/v1/deviceclasses/` leads to one comparison of the whole (small) set,
//! [`devclass::decide`], so a missed event, a key overwritten by hand or an object
//! deleted while no controller ran are all repaired the same way. Nothing is
//! decided before the first complete listing of the objects: an empty cache would
//! otherwise delete every class.
//!
//! The watch is untyped (`DynamicObject`): a typed watch fails its whole listing
//! on one object that does not deserialize and would retry it forever, leaving
//! every class unsynced. Each object is decoded on its own in
//! [`devclass::decide_listed`]; one that does not decode is logged by name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{store::Writer, Store as Cache};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use railyard_core::keys;
use railyard_store::{watch_or_relist, Compare, Op, Store, Txn};
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};

use super::crd::DeviceClass;
use super::devclass::{self, DeviceClassSync};
use super::K8sError;

/// After a refused write (a concurrent change, or lost leadership, which stops the
/// controller soon anyway).
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The objects were listed completely (first time or after a re-list).
    Listed,
    Changed,
    Nothing,
}

/// Runs until both watches end. Changes arriving within `coalesce` of the first are
/// handled by one sync; every etcd write carries `guard`.
pub async fn run(
    client: Client,
    store: Arc<dyn Store>,
    guard: Option<Compare>,
    coalesce: Duration,
) {
    let resource = ApiResource::erase::<DeviceClass>(&());
    let writer = Writer::<DynamicObject>::new(resource.clone());
    let cache = writer.as_reader();
    let objects = watcher(
        Api::<DynamicObject>::all_with(client, &resource),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .map(|e| match e {
        Ok(watcher::Event::InitDone) => Trigger::Listed,
        Ok(_) => Trigger::Changed,
        Err(e) => {
            warn!(error = %e, "DeviceClass watch failed; retrying");
            Trigger::Nothing
        }
    })
    .boxed();
    let keys_changed = watch_or_relist(Arc::clone(&store), keys::DEVICE_CLASSES, None).map(|u| {
        if let Err(e) = u {
            warn!(error = %e, "etcd watch of the device classes interrupted");
        }
        Trigger::Changed
    });
    let mut triggers = stream::select(objects, keys_changed);
    let mut listed = false;
    let mut reported = BTreeMap::new();
    let mut retry: Option<Instant> = None;
    loop {
        tokio::select! {
            t = triggers.next() => {
                let Some(t) = t else { return };
                listed |= t == Trigger::Listed;
                let deadline = Instant::now() + coalesce;
                loop {
                    tokio::select! {
                        t = triggers.next() => match t {
                            Some(t) => listed |= t == Trigger::Listed,
                            None => return,
                        },
                        () = sleep_until(deadline) => break,
                    }
                }
            }
            () = sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {}
        }
        if !listed {
            continue;
        }
        retry = match sync(store.as_ref(), guard.as_ref(), &cache, &mut reported).await {
            Ok(true) => None,
            Ok(false) => Some(Instant::now() + RETRY),
            Err(e) => {
                warn!(error = %e, "device class sync failed; retrying");
                Some(Instant::now() + RETRY)
            }
        };
    }
}

/// One comparison and its writes; false when a write was refused by its guard.
async fn sync(
    store: &dyn Store,
    guard: Option<&Compare>,
    cache: &Cache<DynamicObject>,
    reported: &mut BTreeMap<String, String>,
) -> Result<bool, K8sError> {
    let stored = store
        .range(keys::DEVICE_CLASSES)
        .await
        .map_err(K8sError::store("listing the device classes in etcd"))?;
    let DeviceClassSync {
        put,
        delete,
        refused,
    } = devclass::decide_listed(&cache.state(), &stored.kvs)?;
    report(refused, reported);
    let mut clean = true;
    for (key, value, rev) in put {
        let op = Op::Put {
            key: key.clone(),
            value,
            lease: None,
        };
        if guarded(store, guard, &key, rev, op).await? {
            info!(key, "device class stored");
        } else {
            clean = false;
        }
    }
    for (key, rev) in delete {
        if guarded(store, guard, &key, rev, Op::delete(key.clone())).await? {
            info!(
                key,
                "DeviceClass object is gone; device class deleted from etcd"
            );
        } else {
            clean = false;
        }
    }
    Ok(clean)
}

/// `op` if `key` is still at `rev` and this replica still leads.
async fn guarded(
    store: &dyn Store,
    guard: Option<&Compare>,
    key: &str,
    rev: i64,
    op: Op,
) -> Result<bool, K8sError> {
    let mut txn = Txn::new().when(Compare::ModRevision {
        key: key.to_string(),
        rev,
    });
    if let Some(g) = guard {
        txn = txn.when(g.clone());
    }
    let outcome = store
        .txn(txn.then(op))
        .await
        .map_err(K8sError::store(format!("writing {key}")))?;
    if !outcome.succeeded {
        warn!(
            key,
            "device class write refused: the key changed meanwhile or another planner leads"
        );
    }
    Ok(outcome.succeeded)
}

/// Warns about each invalid object once per distinct reason: the DeviceClass CRD
/// has no status to carry it, and the same refusal on every sync would drown the
/// log.
fn report(refused: Vec<(String, String)>, reported: &mut BTreeMap<String, String>) {
    for (name, reason) in &refused {
        if reported.get(name) != Some(reason) {
            warn!(
                device_class = name,
                reason, "DeviceClass is invalid: not written to etcd (a previously stored valid version stays)"
            );
        }
    }
    *reported = refused.into_iter().collect();
}
