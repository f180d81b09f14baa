//! The route-daemon service: registration, plan following and route reconcile,
//! wired to etcd and to the kernel of the namespace it runs in, with the IPAM
//! socket server alongside.
//!
//! Everything runs inside one [`HostContext`] per process (one store connection,
//! one kernel-event fan-out, one discovery source); parts run as tasks on one
//! runtime and meet only through the context and channels. The reconciler's
//! plan watch is the only one: it feeds the routes and, through
//! [`Reconciler::feeding_ipam`], the IPAM side's blocks.

mod config;
mod context;
mod follow;
mod reconciler;

use std::sync::Arc;

use railyard_core::HostInventory;
use railyard_store::Store;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::ipam::IpamFeeds;
use crate::metrics::Metrics;
use crate::registration::{run_registration, RegistrationConfig};

pub use config::{DaemonConfig, Timing};
pub use context::{Connect, Connected, EtcdConnector, HostContext, OnError, StoreSlot};
pub(crate) use follow::Follow;
pub use reconciler::{needs_shim, shim_mac, shim_name, wanted_shims, Reconciler, ReconcilerConfig};

#[cfg(test)]
mod tests;

/// Runs the daemon against etcd (waiting for it as long as it takes) until
/// `shutdown` turns true. Returns early only for a configuration that cannot
/// work.
pub async fn run(config: DaemonConfig, shutdown: watch::Receiver<bool>) -> Result<()> {
    check(&config)?;
    let metrics = Arc::new(Metrics::default());
    serve_metrics(&config, &metrics);
    let etcd = Arc::new(EtcdConnector(config.etcd.clone()));
    run_on(config, etcd, metrics, shutdown).await
}

/// [`run`] with a store the caller connected (tests connect it outside the
/// namespace the daemon runs in) and metrics the caller can read.
pub async fn run_with(
    config: DaemonConfig,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    run_on(config, Arc::new(Connected(store)), metrics, shutdown).await
}

/// The daemon on whatever store `connector` yields; called once per process.
/// The IPAM socket comes up at once, before the store: pods on a host with
/// planned blocks must get addresses even while etcd is unreachable. Nothing
/// touches the kernel's routes before the store is connected.
pub async fn run_on(
    config: DaemonConfig,
    connector: Arc<dyn Connect>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    check(&config)?;
    // The Kubernetes client before anything else: a configuration that cannot
    // work stops the daemon as a bad flag does.
    let pods = match (&config.leak_sweep, &config.ipam) {
        (Some(sweep), Some(_)) => Some((
            sweep.clone(),
            sweep
                .pods
                .connect()
                .await
                .map_err(|e| Error::Config(format!("leak sweep: {e}")))?,
        )),
        _ => None,
    };
    let mut ctx = HostContext::start(config, metrics, connector)?;
    let ipam_plans = ctx.config.ipam.clone().map(|ipam| {
        let (plans, rx) = mpsc::unbounded_channel();
        let feeds = IpamFeeds {
            host: ctx.config.node_name.clone(),
            source: ctx.source.clone(),
            links: Arc::clone(&ctx.ipam_links),
            store: ctx.store_slot(),
            plans: rx,
            sweep: pods,
        };
        let m = Arc::clone(&ctx.metrics.ipam);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::ipam::run(ipam, feeds, m, stop).await {
                error!(error = %e, "IPAM service stopped");
            }
        });
        plans
    });
    let Some(store) = ctx.connect(&mut shutdown).await? else {
        return Ok(());
    };
    let config = &ctx.config;
    let registration = tokio::spawn(run_registration(
        Arc::clone(&store),
        ctx.source.clone(),
        RegistrationConfig {
            node_name: config.node_name.clone(),
            lease_ttl_secs: config.lease_ttl_secs,
            debounce: config.timing.link_debounce,
        },
        Arc::clone(&ctx.registration_links),
        Arc::clone(&ctx.metrics),
        shutdown.clone(),
    ));
    info!(
        host = %config.node_name,
        routing = ?config.routing,
        ipam = config.ipam.is_some(),
        "route-daemon running"
    );
    let mut reconciler = Reconciler::new(
        reconciler_config(config),
        store,
        Arc::clone(&ctx.kernel),
        Arc::clone(&ctx.metrics),
    );
    if let Some(plans) = ipam_plans {
        reconciler = reconciler.feeding_ipam(plans);
    }
    if let Some((file, socket)) = &config.bird {
        reconciler = reconciler.with_bird(Arc::new(crate::bgp::BirdFile::new(file, socket)));
    }
    let events = ctx
        .take_route_events()
        .ok_or_else(|| Error::Config("the route events were taken twice".into()))?;
    reconciler.run(events, shutdown).await;
    if let Err(e) = registration.await {
        warn!(error = %e, "registration task ended abnormally");
    }
    info!(host = %ctx.config.node_name, "route-daemon stopped; routes left in place");
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
    if config.leak_sweep.is_some() && config.ipam.is_none() {
        return Err(Error::Config(
            "the leak sweep releases IPAM allocations: it needs the IPAM service (--ipam-socket)"
                .into(),
        ));
    }
    if config.lease_ttl_secs < 1 {
        return Err(Error::Config(format!(
            "lease TTL must be at least 1 s, not {}",
            config.lease_ttl_secs
        )));
    }
    // An allocation log written by a newer railyard (a downgrade) stops the
    // daemon before it starts anything: running on without IPAM would look
    // healthy while no pod can start, and nothing here may rewrite that log.
    if let Some(ipam) = &config.ipam {
        let dir = crate::ipam::allocation_dir(&ipam.state_dir);
        if let Err(e @ railyard_allocdb::DbError::NewerFormat { .. }) =
            railyard_allocdb::check_format(&dir)
        {
            return Err(Error::Config(e.to_string()));
        }
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
