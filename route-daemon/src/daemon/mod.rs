//! The route-daemon service: registration, plan following and route reconcile,
//! wired to etcd and to the kernel of the namespace it runs in.
//!
//! Parts run as tasks on one runtime and meet only through channels: the kernel
//! event fan-out feeds link events to the registration and route events to the
//! reconciler. Another part (the IPAM socket server) joins the same way: a task
//! started here, stopped by the same `shutdown`.

mod config;
mod follow;
mod reconciler;

use std::sync::Arc;
use std::time::Duration;

use railyard_core::HostInventory;
use railyard_store::{EtcdStore, Store};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::discovery::{NicFilter, SysfsDir};
use crate::error::{Error, Result};
use crate::kernel_routes::NetlinkRoutes;
use crate::metrics::Metrics;
use crate::netlink::Netlink;
use crate::registration::{run_registration, Discovered, RegistrationConfig};
use crate::watch::{KernelEvent, KernelWatch};

pub use config::{DaemonConfig, Timing};
pub use reconciler::{Reconciler, ReconcilerConfig};

#[cfg(test)]
mod tests;

/// Connects to etcd (waiting for it as long as it takes) and runs the daemon
/// until `shutdown` turns true. Returns early only for a configuration that
/// cannot work.
pub async fn run(config: DaemonConfig, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    check(&config)?;
    let metrics = Arc::new(Metrics::default());
    serve_metrics(&config, &metrics);
    // IPAM first and independent of etcd: pods on a host with planned blocks must
    // get addresses even while etcd is unreachable.
    if let Some(ipam) = config.ipam.clone() {
        let m = Arc::clone(&metrics.ipam);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::ipam::run(ipam, m, stop).await {
                error!(error = %e, "IPAM service stopped");
            }
        });
    }
    let Some(store) = connect(&config, &metrics, &mut shutdown).await? else {
        return Ok(());
    };
    run_with(config, store, metrics, shutdown).await
}

/// [`run`] with a store the caller connected (tests connect it outside the
/// namespace the daemon runs in) and metrics the caller can read.
pub async fn run_with(
    config: DaemonConfig,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    check(&config)?;
    // Subscribed before the first discovery and reconcile, so no change slips
    // between those reads and the subscription.
    let kernel_watch = KernelWatch::start()?;
    let netlink = Netlink::connect()?;
    let kernel = Arc::new(NetlinkRoutes::new(netlink.clone())?);
    let source = Arc::new(Discovered {
        node_name: config.node_name.clone(),
        netlink,
        sysfs: SysfsDir::default(),
        filter: NicFilter::new(&config.filter)?,
        static_file: config.static_inventory.clone(),
    });
    let links = Arc::new(Notify::new());
    let (route_events, route_rx) = mpsc::channel(256);
    let fanout = tokio::spawn(fan_out(kernel_watch, Arc::clone(&links), route_events));
    let registration = tokio::spawn(run_registration(
        Arc::clone(&store),
        source,
        RegistrationConfig {
            node_name: config.node_name.clone(),
            lease_ttl_secs: config.lease_ttl_secs,
            debounce: config.timing.link_debounce,
        },
        links,
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    info!(
        host = %config.node_name,
        routing = ?config.routing,
        "route-daemon running"
    );
    Reconciler::new(reconciler_config(&config), store, kernel, metrics)
        .run(route_rx, shutdown)
        .await;
    if let Err(e) = registration.await {
        warn!(error = %e, "registration task ended abnormally");
    }
    fanout.abort();
    info!(host = %config.node_name, "route-daemon stopped; routes left in place");
    Ok(())
}

pub fn reconciler_config(config: &DaemonConfig) -> ReconcilerConfig {
    ReconcilerConfig {
        node_name: config.node_name.clone(),
        routing: config.routing,
        rule_priority: config.rule_priority,
        quiet: config.timing.quiet,
        max_delay: config.timing.max_delay,
    }
}

fn check(config: &DaemonConfig) -> Result<()> {
    HostInventory {
        name: config.node_name.clone(),
        nics: Vec::new(),
    }
    .validate("node name")
    .map_err(|e| Error::Config(e.to_string()))?;
    if config.lease_ttl_secs < 1 {
        return Err(Error::Config(format!(
            "lease TTL must be at least 1 s, not {}",
            config.lease_ttl_secs
        )));
    }
    Ok(())
}

fn serve_metrics(config: &DaemonConfig, metrics: &Arc<Metrics>) {
    if let Some(addr) = config.metrics_addr {
        let m = Arc::clone(metrics);
        tokio::spawn(async move {
            if let Err(e) = railyard_telemetry::serve(addr, m).await {
                error!(%addr, error = %e, "metrics endpoint failed");
            }
        });
    }
}

/// Connects to etcd, retrying an unreachable one with backoff; `None` when
/// shut down while waiting. Nothing touches the kernel before this returns.
async fn connect(
    config: &DaemonConfig,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Arc<dyn Store>>> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match EtcdStore::connect(config.etcd.clone()).await {
            Ok(store) => return Ok(Some(Arc::new(store))),
            Err(e) if e.is_retryable() => {
                metrics.store_errors.inc();
                let wait = backoff.next_delay();
                warn!(error = %e, retry_in = ?wait, "etcd not reachable yet; retrying");
                tokio::select! {
                    () = crate::shutdown::stopped(shutdown) => return Ok(None),
                    () = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Link events (and overruns, which may have hidden some) go to the registration;
/// every event goes to the reconciler, which picks the tables it cares about.
async fn fan_out(mut watch: KernelWatch, links: Arc<Notify>, routes: mpsc::Sender<KernelEvent>) {
    while let Some(event) = watch.recv().await {
        if matches!(event, KernelEvent::LinksChanged | KernelEvent::Overrun) {
            links.notify_one();
        }
        if routes.send(event).await.is_err() {
            return;
        }
    }
}
