//! Wiring: which watches wake which network, and the leadership loop around it.
//!
//! A network is reconciled when
//! - its MultiNicNetwork changes (the controller's own watch);
//! - one of its NADs changes or is deleted (so a deleted NAD is back within a
//!   reconcile, i.e. well under a second once the watch event arrives);
//! - a namespace appears, changes or goes, for networks that target it or all;
//! - its status or spec changes in etcd (the planner wrote a new status, or someone
//!   overwrote the spec with the CLI: the MultiNicNetwork wins);
//! - every `requeue`, in case anything was missed;
//! - all of them when Multus's NAD CRD appears (listed after a 404), so networks
//!   reconciled without it get their NADs.
//!
//! Beside the MultiNicNetwork controller run the views of etcd ([`views_sync`])
//! and the DeviceClass copy into etcd ([`devclass_sync`]): same leadership, same
//! lifetime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{future, stream, Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::reflector::{self, ObjectRef, Store as Cache};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use railyard_core::keys;
use railyard_store::{watch_or_relist, Compare, Store, StoreError, WatchUpdate};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::crd::{MultiNicNetwork, NetworkAttachmentDefinition};
use super::reconcile::{reconcile, Context, NadApi};
use super::{cleanup, devclass_sync, leader, views_sync, K8sError, LABEL_MANAGED_BY, MANAGED_BY};

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This replica's identity in the planner election (its pod name).
    pub identity: String,
    /// How often leadership is checked.
    pub leader_poll: Duration,
    /// Also the period after which the HostInterface and CIDR views are listed
    /// again and compared (repairs hand edits and deletions).
    pub requeue: Duration,
    pub cleanup_every: Duration,
    /// etcd changes arriving within this window of the first are written as one
    /// batch (views, device classes): a burst of joins rewrites the CIDR a few
    /// times, not once per host.
    pub coalesce: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            identity: "railyard-planner".into(),
            leader_poll: Duration::from_secs(2),
            requeue: Duration::from_secs(300),
            cleanup_every: Duration::from_secs(10),
            coalesce: Duration::from_millis(250),
        }
    }
}

/// Runs the controller whenever this replica is the planner leader, until
/// `shutdown` flips to true.
pub async fn run(
    client: Client,
    store: Arc<dyn Store>,
    cfg: ControllerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let guard = tokio::select! {
            g = wait_to_lead(store.as_ref(), &cfg) => g,
            _ = shutdown.changed() => return,
        };
        info!(
            identity = cfg.identity,
            "leading: Kubernetes controller started"
        );
        tokio::select! {
            () = run_controller(client.clone(), Arc::clone(&store), Some(guard.clone()), &cfg) => {
                warn!("Kubernetes controller ended; restarting");
                tokio::time::sleep(cfg.leader_poll).await;
            }
            () = leader::lost(store.as_ref(), &cfg.identity, &guard, cfg.leader_poll) => {
                info!(identity = cfg.identity, "no longer leading: Kubernetes controller stopped");
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn wait_to_lead(store: &dyn Store, cfg: &ControllerConfig) -> Compare {
    loop {
        match leader::check(store, &cfg.identity).await {
            Ok(Some(guard)) => return guard,
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read the planner election"),
        }
        tokio::time::sleep(cfg.leader_poll).await;
    }
}

/// The controller proper, without leadership: every etcd write carries `guard`
/// when one is given. Returns only if the watches end (they retry on errors).
pub async fn run_controller(
    client: Client,
    store: Arc<dyn Store>,
    guard: Option<Compare>,
    cfg: &ControllerConfig,
) {
    let managed = format!("{LABEL_MANAGED_BY}={MANAGED_BY}");
    let (ns_cache, ns_writer) = reflector::store::<Namespace>();
    let namespaces = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(ns_writer)
    .touched_objects();
    let (nad_cache, nad_writer) = reflector::store::<NetworkAttachmentDefinition>();
    let (nad_api_tx, nad_api) = watch::channel(NadApi::Unknown);
    let (crd_appeared, reconcile_all) = mpsc::unbounded::<()>();
    let nads = watcher(
        Api::<NetworkAttachmentDefinition>::all(client.clone()),
        watcher::Config::default().labels(&managed),
    )
    .default_backoff()
    .reflect(nad_writer)
    .inspect(move |event| {
        let Some(now) = nad_api_after(event) else {
            return;
        };
        let before = nad_api_tx.send_replace(now);
        if before != now {
            match now {
                NadApi::Missing => warn!(
                    "the NetworkAttachmentDefinition CRD (Multus) is not installed: networks get their etcd spec and status, NADs wait for it"
                ),
                _ => info!("the NetworkAttachmentDefinition CRD is installed"),
            }
        }
        if before == NadApi::Missing && now == NadApi::Available {
            crd_appeared.unbounded_send(()).ok();
        }
    })
    .touched_objects();

    let controller = Controller::new(
        Api::<MultiNicNetwork>::all(client.clone()),
        watcher::Config::default(),
    );
    let net_cache = controller.store();
    let for_namespace = {
        let nets = net_cache.clone();
        move |ns: Namespace| networks_in(&nets, &ns.name_any())
    };
    let views = views_sync::run(
        client.clone(),
        Arc::clone(&store),
        cfg.coalesce,
        cfg.requeue,
    );
    let classes = devclass_sync::run(
        client.clone(),
        Arc::clone(&store),
        guard.clone(),
        cfg.coalesce,
    );
    let ctx = Arc::new(Context {
        client,
        store: Arc::clone(&store),
        guard: guard.clone(),
        namespaces: ns_cache,
        nads: nad_cache,
        nad_api,
        networks: net_cache.clone(),
        requeue: cfg.requeue,
        failures: Mutex::default(),
    });
    let sweeper = cleanup::run(Arc::clone(&store), guard, net_cache, cfg.cleanup_every);
    let controller = controller
        .watches_stream(nads, |nad| owners_of(&nad))
        .watches_stream(namespaces, for_namespace)
        .reconcile_on(etcd_triggers(store))
        .reconcile_all_on(reconcile_all)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok((obj, _)) => debug!(network = obj.name, "reconciled"),
                Err(ControllerError::ObjectNotFound(obj)) => {
                    debug!(network = obj.name, "no MultiNicNetwork of this name")
                }
                Err(e) => warn!(error = %e, "controller"),
            }
            future::ready(())
        });
    tokio::select! {
        () = controller => {}
        () = sweeper => {}
        () = views => {}
        () = classes => {}
    }
}

/// A failed reconcile (etcd unreachable, the status patch refused) is retried
/// with the same doubling backoff as NADs that could not be written.
fn error_policy(net: Arc<MultiNicNetwork>, error: &K8sError, ctx: Arc<Context>) -> Action {
    let name = net.name_any();
    let wait = ctx.failed(&name);
    warn!(network = name, error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// What one NAD watch event says about Multus's CRD: listed (`InitDone`) means
/// installed; a 404 from the list or the watch means not installed. Other errors
/// (a timeout, a 500) say nothing about it.
pub fn nad_api_after(
    event: &Result<watcher::Event<NetworkAttachmentDefinition>, watcher::Error>,
) -> Option<NadApi> {
    match event {
        Ok(watcher::Event::InitDone) => Some(NadApi::Available),
        Ok(_) => None,
        Err(
            watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            | watcher::Error::WatchFailed(kube::Error::Api(s)),
        ) if s.code == 404 => Some(NadApi::Missing),
        Err(watcher::Error::WatchError(s)) if s.code == 404 => Some(NadApi::Missing),
        Err(_) => None,
    }
}

/// The networks a NAD belongs to, from its owner references. Built by hand because
/// the runtime's `owns` would look the owner up in the NAD's namespace, and a
/// MultiNicNetwork is cluster-scoped.
pub fn owners_of(nad: &NetworkAttachmentDefinition) -> Vec<ObjectRef<MultiNicNetwork>> {
    let api_version = MultiNicNetwork::api_version(&());
    let kind = MultiNicNetwork::kind(&());
    nad.owner_references()
        .iter()
        .filter(|o| o.api_version == api_version && o.kind == kind)
        .map(|o| ObjectRef::new(&o.name))
        .collect()
}

/// Networks that target namespace `ns` (explicitly, or by targeting all).
pub fn networks_in(nets: &Cache<MultiNicNetwork>, ns: &str) -> Vec<ObjectRef<MultiNicNetwork>> {
    nets.state()
        .iter()
        .filter(|n| n.spec.namespaces.is_empty() || n.spec.namespaces.iter().any(|x| x == ns))
        .map(|n| ObjectRef::from_obj(n.as_ref()))
        .collect()
}

/// Names of networks whose etcd status or spec changed.
fn etcd_triggers(
    store: Arc<dyn Store>,
) -> impl Stream<Item = ObjectRef<MultiNicNetwork>> + Send + 'static {
    let follow = |prefix: &str| {
        watch_or_relist(Arc::clone(&store), prefix, None)
            .flat_map(|update| stream::iter(changed_names(update)))
    };
    stream::select(follow(keys::STATUS), follow(keys::NETWORKS)).map(|name| ObjectRef::new(&name))
}

/// The network names an etcd update touches (everything, for a fresh listing).
pub fn changed_names(update: Result<WatchUpdate, StoreError>) -> Vec<String> {
    match update {
        Ok(update) => update
            .keys()
            .map(|key| keys::last_segment(key).to_string())
            .collect(),
        Err(e) => {
            warn!(error = %e, "etcd watch for the Kubernetes controller interrupted");
            Vec::new()
        }
    }
}
