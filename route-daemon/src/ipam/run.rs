//! The IPAM service as a whole: open the durable database, keep the NIC list and
//! the networks' blocks current, serve the socket, and mirror to etcd.
//!
//! Allocation must keep working while etcd is down, so the socket is served from
//! the local database at once. Everything else comes from the daemon's one
//! context ([`IpamFeeds`]): the NIC list from its discovery source and kernel
//! events, the plans from its plan watch, and the store (for the mirror and the
//! DeviceClasses) once the context has connected it. Nothing here opens a
//! connection or a subscription of its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use railyard_allocdb::{AllocDb, NetworkConfig, Options};
use railyard_core::attach::DeviceClass;
use railyard_core::Nic;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{info, warn};

use super::follow::{apply_networks, follow_classes};
use super::{run_mirror, serve, IpamContext, IpamMetrics, MirrorConfig};
use crate::daemon::StoreSlot;
use crate::discovery::InventorySource;
use crate::error::{Error, Result};
use crate::sweep::{LeakSweep, PodSource};

/// The service's own settings. The host name, the discovery source and the
/// etcd connection are the daemon's ([`DaemonConfig`](crate::daemon::DaemonConfig),
/// handed over in [`IpamFeeds`]).
#[derive(Debug, Clone)]
pub struct IpamConfig {
    pub socket: PathBuf,
    /// The allocation log lives in `<state_dir>/allocations`.
    pub state_dir: PathBuf,
    /// Peers allowed on the socket (root in production).
    pub allowed_uid: u32,
}

/// What the daemon's context feeds the service.
pub struct IpamFeeds {
    /// This host's name, for its allocation records in etcd.
    pub host: String,
    /// The context's discovery source.
    pub source: Arc<dyn InventorySource>,
    /// Notified on link and address events (by the context's fan-out).
    pub links: Arc<Notify>,
    /// The context's store, once connected.
    pub store: StoreSlot,
    /// This host's share of every plan change (from the reconciler's plan watch).
    pub plans: mpsc::UnboundedReceiver<NetworkConfig>,
    /// The leak sweep and its connected pod source, when configured.
    pub sweep: Option<(LeakSweep, Arc<dyn PodSource>)>,
}

impl std::fmt::Debug for IpamFeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpamFeeds")
            .field("host", &self.host)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Where the allocation log lives below the daemon's `--state-dir`.
pub(crate) fn allocation_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("allocations")
}

pub async fn run(
    cfg: IpamConfig,
    feeds: IpamFeeds,
    metrics: Arc<IpamMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let dir = allocation_dir(&cfg.state_dir);
    let db = tokio::task::spawn_blocking(move || AllocDb::open(&dir, Options::default()))
        .await
        .map_err(|e| Error::Config(format!("allocation database: {e}")))?
        .map_err(|e| {
            Error::Config(format!(
                "allocation database in {}: {e}",
                cfg.state_dir.display()
            ))
        })?;
    let db = Arc::new(db);
    // An empty log is believed only once etcd was asked (see IpamContext::trusted).
    let (trusted_tx, trusted) = watch::channel(!db.opened_empty());
    if db.opened_empty() {
        warn!(dir = %db.dir().display(), "allocation log is empty (a new host, or a lost state dir): \
            serving nothing until this host's allocations in etcd are recovered");
    }
    let first = feeds
        .source
        .inventory()
        .await
        .map(|h| h.nics)
        .unwrap_or_default();
    let (nic_tx, nic_rx) = watch::channel(first);
    tokio::spawn(follow_nics(
        feeds.source,
        feeds.links,
        nic_tx,
        shutdown.clone(),
    ));
    tokio::spawn(apply_networks(
        feeds.plans,
        Arc::clone(&db),
        shutdown.clone(),
    ));
    let pods = feeds.sweep.as_ref().map(|(_, p)| Arc::clone(p));
    if let Some((sweep, pods)) = feeds.sweep {
        tokio::spawn(crate::sweep::run(
            sweep,
            pods,
            feeds.host.clone(),
            Arc::clone(&db),
            trusted.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    let (class_tx, class_rx) = watch::channel(Vec::new());
    tokio::spawn(with_store(
        feeds.store,
        feeds.host,
        Arc::clone(&db),
        class_tx,
        trusted_tx,
        shutdown.clone(),
    ));
    tokio::spawn(retry_and_count(
        Arc::clone(&db),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    let ctx = Arc::new(IpamContext {
        db,
        nics: nic_rx,
        classes: class_rx,
        metrics,
        allowed_uid: cfg.allowed_uid,
        trusted,
        pods,
    });
    serve(&cfg.socket, ctx, shutdown)
        .await
        .map_err(|e| Error::Config(format!("IPAM socket {}: {e}", cfg.socket.display())))
}

/// Retries a log that could not be written (a full disk) even when no request
/// comes, and refreshes the block gauges every fifth second.
async fn retry_and_count(
    db: Arc<AllocDb>,
    metrics: Arc<IpamMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    for tick in 0u64.. {
        let db2 = Arc::clone(&db);
        let _ = tokio::task::spawn_blocking(move || db2.retry()).await;
        if tick % 5 == 0 {
            metrics.update_blocks(&db.stats());
        }
        tokio::select! {
            _ = tokio::time::sleep(railyard_allocdb::RETRY_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Re-discovers the NICs on link and address changes (a NIC that went down or
/// away stops being a candidate for new pods): 100 ms after an event, with the
/// events of that burst folded into one discovery.
async fn follow_nics(
    source: Arc<dyn InventorySource>,
    links: Arc<Notify>,
    tx: watch::Sender<Vec<Nic>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = links.notified() => {}
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Notify keeps at most one wake-up; take it, the discovery below sees it.
        let _ = links.notified().now_or_never();
        match source.inventory().await {
            Ok(inv) => {
                tx.send_if_modified(|nics| {
                    let changed = *nics != inv.nics;
                    *nics = inv.nics;
                    changed
                });
            }
            Err(e) => warn!(error = %e, "NIC re-discovery failed"),
        }
    }
}

/// Waits for the daemon's store (as long as etcd takes), then follows the
/// device classes and mirrors allocations through it.
async fn with_store(
    store: StoreSlot,
    host: String,
    db: Arc<AllocDb>,
    classes: watch::Sender<Vec<DeviceClass>>,
    trusted: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let store = tokio::select! {
        s = store.get() => match s {
            Some(s) => s,
            None => return,
        },
        _ = shutdown.changed() => return,
    };
    info!("IPAM following the device classes and mirroring allocations through the daemon's etcd connection");
    tokio::spawn(follow_classes(
        Arc::clone(&store),
        classes,
        shutdown.clone(),
    ));
    run_mirror(
        store,
        db,
        MirrorConfig {
            host,
            interval: Duration::from_millis(50),
        },
        trusted,
        shutdown,
    )
    .await;
}
