//! Removing the etcd spec of a deleted MultiNicNetwork.
//!
//! Kubernetes deletes the NADs itself (owner references). The etcd spec is outside
//! its reach, and a finalizer would need write access to every MultiNicNetwork and
//! block deletions whenever the controller is down. Instead a sweep compares etcd
//! with the watch cache: a spec that came from Kubernetes (it carries the object's
//! UID) and has no MultiNicNetwork of its name any more is deleted. Specs applied
//! with the `railyard` CLI carry no UID and are never touched. The sweep runs at
//! start (catching deletions made while no controller ran) and then periodically.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store as Cache;
use kube::ResourceExt;
use railyard_core::{keys, NetworkManifest};
use railyard_store::{Compare, KeyValue, Op, Store, Txn};
use tracing::{info, warn};

use super::crd::MultiNicNetwork;
use super::{K8sError, ANNOTATION_K8S_UID};

/// Keys (with their mod revision) of Kubernetes-made specs whose object is gone.
pub fn stale_specs(specs: &[KeyValue], live: &BTreeSet<String>) -> Vec<(String, i64)> {
    specs
        .iter()
        .filter(|kv| !live.contains(keys::last_segment(&kv.key)))
        .filter(|kv| {
            kv.decode_json::<NetworkManifest>()
                .is_ok_and(|m| m.metadata.annotations.contains_key(ANNOTATION_K8S_UID))
        })
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect()
}

/// One sweep. Each delete is conditional on the value being the one examined (a
/// concurrent re-create wins) and on leadership.
pub async fn sweep(
    store: &dyn Store,
    guard: Option<&Compare>,
    live: &BTreeSet<String>,
) -> Result<usize, K8sError> {
    let specs = store
        .range(keys::NETWORKS)
        .await
        .map_err(K8sError::store("listing network specs"))?;
    let mut deleted = 0;
    for (key, rev) in stale_specs(&specs.kvs, live) {
        let mut txn = Txn::new().when(Compare::ModRevision {
            key: key.clone(),
            rev,
        });
        if let Some(g) = guard {
            txn = txn.when(g.clone());
        }
        let outcome = store
            .txn(txn.then(Op::delete(key.clone())))
            .await
            .map_err(K8sError::store(format!("deleting {key}")))?;
        if outcome.succeeded {
            info!(key, "MultiNicNetwork is gone; network spec deleted");
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Sweeps every `every` once the cache holds a complete listing; returns when the
/// cache's writer is dropped (the controller stopped).
pub async fn run(
    store: Arc<dyn Store>,
    guard: Option<Compare>,
    nets: Cache<MultiNicNetwork>,
    every: Duration,
) {
    if nets.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        let live: BTreeSet<String> = nets.state().iter().map(|n| n.name_any()).collect();
        if let Err(e) = sweep(store.as_ref(), guard.as_ref(), &live).await {
            warn!(error = %e, "network spec cleanup failed; retrying");
        }
        tokio::time::sleep(every).await;
    }
}
