//! Which replica runs the controller: the planner leader, and only while it leads.
//!
//! Running on every replica would be safe for the Kubernetes writes (server-side
//! apply of the same object is idempotent), but not for etcd: a replica whose watch
//! lags could write an older spec over a newer one, and the planner would plan it.
//! So the controller follows the planner's own etcd election (no second election,
//! no Lease RBAC), and every etcd write it makes carries the leader key's guard,
//! exactly like the planner's plan writes: a deposed leader's write fails.
//!
//! The leader is recognised by the identity stored in its election key, so each
//! replica needs a distinct identity (the pod name, which the Deployment gives).

use std::time::Duration;

use railyard_core::keys;
use railyard_store::{Compare, KeyValue, Store};

use super::K8sError;

/// The guard of the leader's election key when `identity` leads. Mirrors
/// `election::leader`: the lowest create revision leads.
pub fn leading_guard(election: &[KeyValue], identity: &str) -> Option<Compare> {
    let leader = election.iter().min_by_key(|kv| kv.create_revision)?;
    (leader.value == identity.as_bytes()).then(|| Compare::CreateRevision {
        key: leader.key.clone(),
        rev: leader.create_revision,
    })
}

/// One look at the election.
pub async fn check(store: &dyn Store, identity: &str) -> Result<Option<Compare>, K8sError> {
    let range = store
        .range(keys::ELECTION)
        .await
        .map_err(K8sError::store("reading the planner election"))?;
    Ok(leading_guard(&range.kvs, identity))
}

/// Resolves once `guard` no longer describes the leader (or etcd cannot tell us
/// for `poll` × 3: a leader that cannot reach etcd loses its lease about then too).
pub async fn lost(store: &dyn Store, identity: &str, guard: &Compare, poll: Duration) {
    let mut failures = 0;
    loop {
        tokio::time::sleep(poll).await;
        match check(store, identity).await {
            Ok(Some(g)) if g == *guard => failures = 0,
            Ok(_) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot confirm planner leadership");
                if failures >= 3 {
                    return;
                }
            }
        }
    }
}
