//! The leak sweep: releases the allocations of pods the Kubernetes API no
//! longer has on this node, for runtimes that never send CNI GC (and DELs
//! that were lost). The rules and why they are safe are in
//! docs/design/leak-sweep.md; the decision is pure ([`Sweep`]), the API is a
//! port ([`PodSource`]: [`KubePods`] and [`MemoryPods`]), and a release goes
//! through the allocation log ([`AllocDb::release_idle`]) like a CNI GC, so
//! the mirror deletes the etcd records afterwards as it does for any release.
//!
//! Runs in each route-daemon for its own host, off unless a Kubernetes
//! configuration is given (`--kubernetes`, `--kubeconfig`).

mod decide;
mod kube;
mod source;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_allocdb::AllocDb;
use tokio::sync::watch;
use tracing::{debug, info, warn};

pub use decide::{is_kubernetes, At, Held, Observation, Present, Sweep};
pub use kube::KubePods;
pub use source::{MemoryPods, PodFacts, PodInfo, PodSource, SourceError};

use crate::ipam::IpamMetrics;

/// Calico's default leak grace period (kube-controllers' IPAM GC).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15 * 60);
/// How often the node's pods are listed.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

/// Where the pods come from.
#[derive(Debug, Clone)]
pub enum Pods {
    /// The pod's service account (a DaemonSet).
    InCluster,
    Kubeconfig(PathBuf),
    /// Already made (tests: a [`MemoryPods`]).
    Source(Arc<dyn PodSource>),
}

impl Pods {
    /// The source, connected. An unusable configuration is an error the
    /// daemon refuses to start with, as a bad flag is.
    pub async fn connect(&self) -> Result<Arc<dyn PodSource>, String> {
        Ok(match self {
            Pods::InCluster => Arc::new(KubePods::connect(None).await?),
            Pods::Kubeconfig(p) => Arc::new(KubePods::connect(Some(p)).await?),
            Pods::Source(s) => Arc::clone(s),
        })
    }
}

#[derive(Debug, Clone)]
pub struct LeakSweep {
    pub pods: Pods,
    /// How long a pod must have been seen gone, and an attachment unused by
    /// any ADD, before its addresses are released.
    pub grace: Duration,
    /// How often the node's pods are listed.
    pub every: Duration,
}

impl LeakSweep {
    pub fn new(pods: Pods) -> Self {
        LeakSweep {
            pods,
            grace: DEFAULT_GRACE,
            every: DEFAULT_EVERY,
        }
    }
}

/// Lists `node`'s pods every `every` and releases what [`Sweep`] finds due,
/// until `shutdown`. Nothing happens while the log is not `trusted` (an
/// empty log waiting for etcd): there is nothing to believe yet.
pub async fn run(
    cfg: LeakSweep,
    source: Arc<dyn PodSource>,
    node: String,
    db: Arc<AllocDb>,
    mut trusted: watch::Receiver<bool>,
    metrics: Arc<IpamMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    info!(node, grace = ?cfg.grace, every = ?cfg.every, "leak sweep on: releasing the allocations of pods gone from the Kubernetes API");
    let epoch = Instant::now();
    let mut sweep = Sweep::new(cfg.grace);
    loop {
        if *trusted.borrow_and_update() {
            step(&mut sweep, &*source, &node, &db, epoch, &metrics).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One observation and the releases it makes due.
async fn step(
    sweep: &mut Sweep,
    source: &dyn PodSource,
    node: &str,
    db: &AllocDb,
    epoch: Instant,
    metrics: &IpamMetrics,
) {
    // The attachments first, then the list: every attachment read existed
    // before the list started, so the list speaks for it.
    let read_at = Instant::now();
    let held = match db.attachments_added().await {
        Ok(all) => all
            .into_iter()
            .map(|(a, added)| Held {
                id: a.id.clone(),
                pod: a.pod.clone(),
                // Before the sweep started counts as when it started: younger,
                // never older, than it is.
                added: added.saturating_duration_since(epoch),
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            warn!(error = %e, "leak sweep: cannot read the allocations; skipping this round");
            return;
        }
    };
    let at = epoch.elapsed();
    let obs = match source.pods_on(node).await {
        Ok(pods) => {
            metrics.leak_observation("listed");
            Observation::Listed {
                at,
                pods: Present::new(&pods),
            }
        }
        Err(e) => {
            metrics.leak_observation("failed");
            warn!(error = %e, "leak sweep: no observation this round (nothing is released on a failed list)");
            Observation::Failed
        }
    };
    let due = sweep.observe(&held, &obs);
    debug!(
        candidates = sweep.candidates(),
        due = due.len(),
        "leak sweep round"
    );
    if due.is_empty() {
        return;
    }
    // Released only if no ADD decided them since they were read.
    match db.release_idle(&due, read_at).await {
        Ok(released) => {
            for a in &released {
                let addresses: Vec<String> = a
                    .nics
                    .iter()
                    .flat_map(|n| n.addresses.iter().map(|x| x.addr().to_string()))
                    .collect();
                info!(
                    pod = format!("{}/{}", a.pod.namespace, a.pod.name),
                    uid = a.pod.uid,
                    network = a.id.network,
                    container = a.id.container_id,
                    ifname = a.id.ifname,
                    addresses = addresses.join(","),
                    "leak sweep: released the addresses of a pod gone from the Kubernetes API"
                );
            }
            metrics.leaks_released.inc_by(released.len() as u64);
        }
        Err(e) => {
            warn!(error = %e, due = due.len(), "leak sweep: release failed; retried next round")
        }
    }
}
