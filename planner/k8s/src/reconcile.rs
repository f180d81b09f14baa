//! One reconcile of one MultiNicNetwork: decide with the pure functions, then
//! write the etcd spec, the NADs and the status.
//!
//! An invalid spec changes nothing but the status: the etcd spec and the NADs of
//! the last valid spec stay, as `railyard apply` refuses an invalid file and the
//! planner keeps the last valid plan. Pods keep attaching while the author fixes
//! the typo.
//!
//! The NADs never hold up the rest: a namespace that refuses one, a name another
//! network or object already controls, or Multus's CRD not being installed yet is
//! reported in the `NADsApplied` condition ([`nad_problems`]), while the etcd spec,
//! the status and the other namespaces' NADs are written; the network is retried
//! with backoff until its NADs are all in place.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
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
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::crd::{MultiNicNetwork, MultiNicNetworkStatus, NetworkAttachmentDefinition};
use super::nad::{self, NadPlan};
use super::nad_problems::{self, NadProblem, NadReport};
use super::status::{self, Observed};
use super::{convert, K8sError, FIELD_MANAGER};
use railyard_core::status::NetworkStatus;

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
    /// Whether the NAD CRD is installed, from the NAD watch.
    pub nad_api: watch::Receiver<NadApi>,
    /// Every MultiNicNetwork, to find two that claim the same NAD name.
    pub networks: Cache<MultiNicNetwork>,
    /// Periodic re-check, in case an event was missed.
    pub requeue: Duration,
    /// Consecutive failed reconciles per network (the backoff of its retries).
    pub failures: Mutex<BTreeMap<String, u32>>,
}

/// What the NAD watch has shown of Multus's CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NadApi {
    /// No answer yet.
    Unknown,
    /// Listed: the NAD cache is complete.
    Available,
    /// The apiserver answers 404 for the resource: the CRD is not installed.
    Missing,
}

impl Context {
    /// Counts a failure of `name`; returns the wait before its retry.
    pub fn failed(&self, name: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(name.to_string()).or_default();
        *n = n.saturating_add(1);
        nad_problems::retry_after(*n)
    }

    fn succeeded(&self, name: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
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
    // Without Multus's CRD there is no NAD cache to wait for: the spec and the
    // status are written anyway, and the NADs once the CRD appears (the watch
    // then lists it and reconciles every network).
    let nad_api = *ctx
        .nad_api
        .clone()
        .wait_for(|a| *a != NadApi::Unknown)
        .await
        .map_err(|_| K8sError::CacheGone("NetworkAttachmentDefinition"))?;
    if nad_api == NadApi::Available {
        ctx.nads
            .wait_until_ready()
            .await
            .map_err(|_| K8sError::CacheGone("NetworkAttachmentDefinition"))?;
    }
    let manifest = convert::manifest(&net);
    let namespaces = active_namespaces(&ctx.namespaces);
    let decided = manifest
        .validate()
        .and_then(|n| nad::plan(&n, net.annotations(), &namespaces));
    let invalid = decided.as_ref().err().map(ToString::to_string);
    let mut report = None;
    match &decided {
        Ok(plan) => {
            store_spec(&ctx, &name, &manifest).await?;
            report = Some(if nad_api == NadApi::Available {
                apply_nads(&ctx, &net, plan).await?
            } else {
                warn!(
                    network = name,
                    "the NetworkAttachmentDefinition CRD is not installed (Multus); NADs wait for it"
                );
                NadReport::crd_missing()
            });
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
        nad_report: report.as_ref(),
    };
    let status = status::network_status(&seen, net.status.as_ref(), &now());
    if net.status.as_ref() != Some(&status) {
        patch_status(&ctx.client, &name, &status).await?;
    }
    match report {
        // The CRD's arrival reconciles every network; until then, look rarely.
        Some(r) if r.crd_missing => Ok(Action::requeue(ctx.requeue)),
        Some(r) if !r.is_clean() => Ok(Action::requeue(ctx.failed(&name))),
        _ => {
            ctx.succeeded(&name);
            Ok(Action::requeue(ctx.requeue))
        }
    }
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
/// network's NADs that are no longer wanted, namespace by namespace: what one
/// namespace refuses is reported and the others go on. Errs only when the
/// network itself cannot be written for (it has no UID yet).
async fn apply_nads(
    ctx: &Context,
    net: &MultiNicNetwork,
    plan: &NadPlan,
) -> Result<NadReport, K8sError> {
    let name = net.name_any();
    let owner = nad::owner_reference(net)
        .ok_or_else(|| K8sError::Encode(format!("MultiNicNetwork {name} has no UID")))?;
    let desired = plan.objects(&name, &owner);
    let shared = nad_problems::shared_names(net, plan, &ctx.networks.state());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut report = NadReport::default();
    for want in &desired {
        let ns = want.namespace().unwrap_or_default();
        if let Some(other) = shared.get(&ns) {
            report.problems.push(NadProblem::SharedName {
                namespace: ns,
                network: other.clone(),
            });
            continue;
        }
        let cached = ctx.nads.get(&ObjectRef::new(&plan.name).within(&ns));
        if let Some(have) = &cached {
            if let Some(owner) = nad_problems::foreign_controller(have, &owner) {
                report.problems.push(NadProblem::ForeignController {
                    namespace: ns,
                    owner,
                });
                continue;
            }
            if nad::up_to_date(have, want) {
                continue;
            }
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
                report
                    .problems
                    .push(refusal(&api, &plan.name, &owner, ns, e).await);
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
                warn!(network = name, namespace = ns, nad = nad_name, error = %e, "deleting a stale NetworkAttachmentDefinition failed");
                report.problems.push(NadProblem::Refused {
                    namespace: ns,
                    message: format!(
                        "deleting NAD {nad_name} (no longer wanted): {}",
                        api_message(&e)
                    ),
                });
            }
        }
    }
    Ok(report)
}

/// What a refused apply means. A 422 is what the apiserver answers when the NAD
/// already has another controller owner, which our cache cannot show when the
/// NAD is not ours (it lacks our label): read it to name that owner.
async fn refusal(
    api: &Api<NetworkAttachmentDefinition>,
    nad_name: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    namespace: String,
    error: kube::Error,
) -> NadProblem {
    if matches!(&error, kube::Error::Api(s) if s.code == 422) {
        if let Ok(have) = api.get(nad_name).await {
            if let Some(owner) = nad_problems::foreign_controller(&have, owner) {
                return NadProblem::ForeignController { namespace, owner };
            }
        }
    }
    NadProblem::Refused {
        namespace,
        message: api_message(&error),
    }
}

/// The apiserver's own words (a quota or a policy engine explains itself there),
/// else the client error.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(s) if !s.message.is_empty() => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
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
