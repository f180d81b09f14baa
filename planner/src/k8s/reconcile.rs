//! One reconcile of one MultiNicNetwork: decide with the pure functions, then
//! write the etcd spec, the NADs and the status.
//!
//! An invalid spec changes nothing but the status: the etcd spec and the NADs of
//! the last valid spec stay, as `railyard apply` refuses an invalid file and the
//! planner keeps the last valid plan. Pods keep attaching while the author fixes
//! the typo.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use kube::{Client, Resource, ResourceExt};
use railyard_core::{keys, NetworkManifest};
use railyard_store::{Compare, Op, Store, Txn};
use serde_json::json;
use tracing::{debug, info, warn};

use super::crd::{MultiNicNetwork, MultiNicNetworkStatus, NetworkAttachmentDefinition};
use super::nad::{self, NadPlan};
use super::status::{self, Observed};
use super::{convert, K8sError, FIELD_MANAGER};
use crate::status::NetworkStatus;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub store: Arc<dyn Store>,
    /// The planner leader's election guard, added to every etcd write; `None` only
    /// where no election runs (tests).
    pub guard: Option<Compare>,
    pub namespaces: Cache<Namespace>,
    /// NADs labelled `app.kubernetes.io/managed-by=railyard`.
    pub nads: Cache<NetworkAttachmentDefinition>,
    /// Periodic re-check, in case an event was missed.
    pub requeue: Duration,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("guard", &self.guard)
            .field("requeue", &self.requeue)
            .finish_non_exhaustive()
    }
}

pub async fn reconcile(net: Arc<MultiNicNetwork>, ctx: Arc<Context>) -> Result<Action, K8sError> {
    let name = net.name_any();
    if net.metadata.deletion_timestamp.is_some() {
        // The garbage collector is removing its NADs (foreground deletion):
        // re-applying them now would fight it. The cleanup removes the etcd spec.
        return Ok(Action::await_change());
    }
    // Deciding "every namespace" or "which NADs are stale" from a half-filled cache
    // would delete NADs that exist; wait for the first complete listing.
    ctx.namespaces
        .wait_until_ready()
        .await
        .map_err(|_| K8sError::CacheGone("namespace"))?;
    ctx.nads
        .wait_until_ready()
        .await
        .map_err(|_| K8sError::CacheGone("NetworkAttachmentDefinition"))?;
    let manifest = convert::manifest(&net);
    let namespaces = active_namespaces(&ctx.namespaces);
    let decided = manifest
        .validate()
        .and_then(|n| nad::plan(&n, net.annotations(), &namespaces));
    let invalid = decided.as_ref().err().map(ToString::to_string);
    match &decided {
        Ok(plan) => {
            store_spec(&ctx, &name, &manifest).await?;
            apply_nads(&ctx, &net, plan).await?;
        }
        Err(e) => {
            warn!(network = name, error = %e, "MultiNicNetwork is invalid; keeping the last valid spec and NADs")
        }
    }
    let planner = read_planner_status(&ctx, &name).await?;
    let seen = Observed {
        generation: net.metadata.generation,
        invalid: invalid.as_deref(),
        planner: planner.as_ref(),
        nads: decided.as_ref().ok(),
    };
    let status = status::network_status(&seen, net.status.as_ref(), &now());
    if net.status.as_ref() != Some(&status) {
        patch_status(&ctx.client, &name, &status).await?;
    }
    Ok(Action::requeue(ctx.requeue))
}

/// Namespaces that can take a new object: a terminating one refuses creates.
fn active_namespaces(cache: &Cache<Namespace>) -> Vec<String> {
    cache
        .state()
        .iter()
        .filter(|ns| {
            ns.metadata.deletion_timestamp.is_none()
                && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
        })
        .map(|ns| ns.name_any())
        .collect()
}

/// Whole seconds: the apiserver stores no more, and a fraction would make the
/// stored status differ from the computed one forever.
fn now() -> Time {
    let secs = Timestamp::now().as_second();
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Writes the manifest to etcd unless it is there already, guarded by leadership.
async fn store_spec(ctx: &Context, name: &str, manifest: &NetworkManifest) -> Result<(), K8sError> {
    let key = keys::network(name);
    let value = serde_json::to_vec(manifest)
        .map_err(|e| K8sError::Encode(format!("network {name}: {e}")))?;
    let current = ctx
        .store
        .get(&key)
        .await
        .map_err(K8sError::store(format!("reading {key}")))?;
    if current.is_some_and(|kv| kv.value == value) {
        return Ok(());
    }
    let mut txn = Txn::new();
    if let Some(g) = &ctx.guard {
        txn = txn.when(g.clone());
    }
    let outcome = ctx
        .store
        .txn(txn.then(Op::Put {
            key: key.clone(),
            value,
            lease: None,
        }))
        .await
        .map_err(K8sError::store(format!("writing {key}")))?;
    if !outcome.succeeded {
        return Err(K8sError::LostLeadership(format!(
            "writing {key}: another planner replica leads"
        )));
    }
    info!(network = name, key, "network spec stored");
    Ok(())
}

/// Server-side applies each NAD that differs from the cache, then deletes the
/// network's NADs that are no longer wanted. One namespace failing does not stop
/// the others; the first error is returned so the reconcile is retried.
async fn apply_nads(ctx: &Context, net: &MultiNicNetwork, plan: &NadPlan) -> Result<(), K8sError> {
    let name = net.name_any();
    let owner = nad::owner_reference(net)
        .ok_or_else(|| K8sError::Encode(format!("MultiNicNetwork {name} has no UID")))?;
    let desired = plan.objects(&name, &owner);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut first_error = None;
    for want in &desired {
        let ns = want.namespace().unwrap_or_default();
        let cached = ctx.nads.get(&ObjectRef::new(&plan.name).within(&ns));
        if cached.is_some_and(|have| nad::up_to_date(&have, want)) {
            continue;
        }
        let api: Api<NetworkAttachmentDefinition> = Api::namespaced(ctx.client.clone(), &ns);
        match api.patch(&plan.name, &params, &Patch::Apply(want)).await {
            Ok(_) => info!(
                network = name,
                namespace = ns,
                nad = plan.name,
                "NetworkAttachmentDefinition applied"
            ),
            Err(e) => {
                warn!(network = name, namespace = ns, nad = plan.name, error = %e, "applying NetworkAttachmentDefinition failed");
                first_error.get_or_insert(K8sError::Kube {
                    action: format!("applying NetworkAttachmentDefinition {ns}/{}", plan.name),
                    source: e,
                });
            }
        }
    }
    let keep: BTreeSet<(String, String)> = desired
        .iter()
        .map(|n| (n.namespace().unwrap_or_default(), n.name_any()))
        .collect();
    for (ns, nad_name) in nad::stale(&ctx.nads.state(), &owner, &keep) {
        let api: Api<NetworkAttachmentDefinition> = Api::namespaced(ctx.client.clone(), &ns);
        match api.delete(&nad_name, &DeleteParams::default()).await {
            Ok(_) => info!(
                network = name,
                namespace = ns,
                nad = nad_name,
                "stale NetworkAttachmentDefinition deleted"
            ),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => {
                first_error.get_or_insert(K8sError::Kube {
                    action: format!("deleting NetworkAttachmentDefinition {ns}/{nad_name}"),
                    source: e,
                });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn read_planner_status(ctx: &Context, name: &str) -> Result<Option<NetworkStatus>, K8sError> {
    let key = keys::status(name);
    let kv = ctx
        .store
        .get(&key)
        .await
        .map_err(K8sError::store(format!("reading {key}")))?;
    Ok(kv.and_then(|kv| match kv.decode_json::<NetworkStatus>() {
        Ok(s) => Some(s),
        Err(e) => {
            // Written by a newer planner, perhaps: report "pending" rather than fail.
            warn!(network = name, key, error = %e, "unreadable planner status");
            None
        }
    }))
}

/// Server-side apply of the status subresource: fields railyard no longer sets
/// (say `missingNamespaces` once the namespace exists) are removed, which a merge
/// patch would leave behind.
pub async fn patch_status(
    client: &Client,
    name: &str,
    status: &MultiNicNetworkStatus,
) -> Result<(), K8sError> {
    let api: Api<MultiNicNetwork> = Api::all(client.clone());
    let body = json!({
        "apiVersion": MultiNicNetwork::api_version(&()),
        "kind": MultiNicNetwork::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(K8sError::kube(format!(
        "patching the status of MultiNicNetwork {name}"
    )))?;
    debug!(network = name, "status patched");
    Ok(())
}
