//! The IPAM service as a whole: open the durable database, keep the NIC list and
//! the networks' blocks current, serve the socket, and mirror to etcd.
//!
//! Allocation must keep working while etcd is down, so the socket is served from
//! the local database at once; etcd is connected in the background and only feeds
//! plan updates and the mirror.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use railyard_allocdb::{AllocDb, Options};
use railyard_core::Nic;
use railyard_store::{EtcdConfig, EtcdStore, Store};
use tokio::sync::watch;
use tracing::{info, warn};

use super::follow::{follow_classes, follow_networks};
use super::{run_mirror, serve, IpamContext, IpamMetrics, MirrorConfig};
use crate::discovery::{FilterConfig, NicFilter, SysfsDir};
use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::registration::{Discovered, InventorySource};
use crate::watch::{KernelEvent, KernelWatch};

#[derive(Debug, Clone)]
pub struct IpamConfig {
    pub node_name: String,
    pub socket: PathBuf,
    /// The allocation log lives in `<state_dir>/allocations`.
    pub state_dir: PathBuf,
    pub filter: FilterConfig,
    pub static_inventory: Option<PathBuf>,
    pub etcd: EtcdConfig,
    /// Peers allowed on the socket (root in production).
    pub allowed_uid: u32,
}

pub async fn run(
    cfg: IpamConfig,
    metrics: Arc<IpamMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let dir = cfg.state_dir.join("allocations");
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
    let source = Discovered {
        node_name: cfg.node_name.clone(),
        netlink: Netlink::connect()?,
        sysfs: SysfsDir::default(),
        filter: NicFilter::new(&cfg.filter)?,
        static_file: cfg.static_inventory.clone(),
    };
    let first = source.inventory().await.map(|h| h.nics).unwrap_or_default();
    let (nic_tx, nic_rx) = watch::channel(first);
    tokio::spawn(follow_nics(source, nic_tx, shutdown.clone()));
    let (class_tx, class_rx) = watch::channel(Vec::new());
    tokio::spawn(with_store(
        cfg.clone(),
        Arc::clone(&db),
        class_tx,
        trusted_tx,
        shutdown.clone(),
    ));
    {
        let db = Arc::clone(&db);
        let metrics = Arc::clone(&metrics);
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            for tick in 0u64.. {
                // A log that could not be written (a full disk) is retried
                // even when no request comes.
                let db2 = Arc::clone(&db);
                let _ = tokio::task::spawn_blocking(move || db2.retry()).await;
                if tick % 5 == 0 {
                    metrics.update_blocks(&db.stats());
                }
                tokio::select! {
                    _ = tokio::time::sleep(railyard_allocdb::RETRY_EVERY) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
    let ctx = Arc::new(IpamContext {
        db,
        nics: nic_rx,
        classes: class_rx,
        metrics,
        allowed_uid: cfg.allowed_uid,
        trusted,
    });
    serve(&cfg.socket, ctx, shutdown)
        .await
        .map_err(|e| Error::Config(format!("IPAM socket {}: {e}", cfg.socket.display())))
}

/// Re-discovers the NICs on link and address changes (a NIC that went down or
/// away stops being a candidate for new pods).
async fn follow_nics(
    source: Discovered,
    tx: watch::Sender<Vec<Nic>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = match KernelWatch::start() {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "no kernel link events; the NIC list for IPAM stays as first discovered");
            return;
        }
    };
    loop {
        let e = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.changed() => return,
        };
        match e {
            None => return,
            Some(KernelEvent::RoutesChanged { .. }) => continue,
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        while events.try_recv().is_some() {}
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

/// Connects to etcd in the background (as long as it takes), then follows the
/// plans and device classes and mirrors allocations.
async fn with_store(
    cfg: IpamConfig,
    db: Arc<AllocDb>,
    classes: watch::Sender<Vec<railyard_core::attach::DeviceClass>>,
    trusted: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = Duration::from_millis(200);
    let store: Arc<dyn Store> = loop {
        match EtcdStore::connect(cfg.etcd.clone()).await {
            Ok(s) => break Arc::new(s),
            Err(e) => {
                warn!(error = %e, "IPAM: etcd not reachable yet; allocating from the local database");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    };
    info!("IPAM connected to etcd");
    tokio::spawn(follow_classes(
        Arc::clone(&store),
        classes,
        shutdown.clone(),
    ));
    tokio::spawn(run_mirror(
        Arc::clone(&store),
        Arc::clone(&db),
        MirrorConfig {
            host: cfg.node_name.clone(),
            interval: Duration::from_millis(50),
        },
        trusted,
        shutdown.clone(),
    ));
    follow_networks(store, db, cfg.node_name, shutdown).await;
}
