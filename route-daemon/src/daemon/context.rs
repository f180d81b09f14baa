//! One context per route-daemon process: what every part of the daemon shares,
//! opened once. Registration, route reconcile and IPAM used to open their own
//! etcd client, kernel subscription and discovery source; two copies of each
//! meant two views of the host that could disagree, twice the load on etcd, and
//! two places to get the retry rules right.
//!
//! - **the store**: connected once ([`HostContext::connect`], retried with
//!   backoff while etcd is unreachable) and handed to registration, the
//!   reconciler (whose plan watch also feeds IPAM), the device-class follower
//!   and the allocation mirror. Parts that must work before etcd answers (the
//!   IPAM socket) wait for it through a [`StoreSlot`] instead of connecting
//!   themselves;
//! - **the kernel-event fan-out**: one netlink subscription; link and address
//!   events (and overruns) go to the registration and to the IPAM NIC list, route
//!   events to the reconciler;
//! - **the discovery source**: one [`Discovered`], asked by the registration and
//!   by the IPAM NIC list.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use railyard_store::{connect_until, Backoff, EtcdConfig, Store, StoreError};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::DaemonConfig;
use crate::discovery::{Discovered, NicFilter, SysfsDir};
use crate::error::Result;
use crate::kernel::netlink::NetlinkRoutes;
use crate::metrics::Metrics;
use crate::netlink::Netlink;
use crate::watch::{KernelEvent, KernelWatch};

/// Waits between connection attempts while etcd is unreachable.
const CONNECT_FIRST: Duration = Duration::from_millis(200);
const CONNECT_MAX: Duration = Duration::from_secs(5);
/// Route events queued for the reconciler before the fan-out waits for it.
const ROUTE_EVENTS: usize = 256;

/// What a [`Connect`] asks after each failed attempt: `on_error(error, wait)`
/// returns whether to retry after `wait` (see [`railyard_store::connect_until`]).
pub type OnError<'a> = &'a mut (dyn FnMut(&StoreError, Duration) -> bool + Send);

/// How the context gets its store: etcd in production, a store the caller
/// connected in tests. [`HostContext::connect`] is the only caller.
#[async_trait]
pub trait Connect: Send + Sync {
    /// Connects, waiting `backoff`'s delays between attempts for as long as
    /// `on_error` says to retry; a failure it does not retry is returned.
    /// `None` once `shutdown` turns true.
    async fn connect(
        &self,
        backoff: Backoff,
        shutdown: &mut watch::Receiver<bool>,
        on_error: OnError<'_>,
    ) -> std::result::Result<Option<Arc<dyn Store>>, StoreError>;
}

/// The production connector: one etcd client, made by
/// [`railyard_store::connect_until`].
#[derive(Debug)]
pub struct EtcdConnector(pub EtcdConfig);

#[async_trait]
impl Connect for EtcdConnector {
    async fn connect(
        &self,
        backoff: Backoff,
        shutdown: &mut watch::Receiver<bool>,
        on_error: OnError<'_>,
    ) -> std::result::Result<Option<Arc<dyn Store>>, StoreError> {
        connect_until(&self.0, backoff, shutdown, on_error).await
    }
}

/// A store the caller already connected (the cluster test connects it from the
/// root namespace, where etcd listens).
pub struct Connected(pub Arc<dyn Store>);

#[async_trait]
impl Connect for Connected {
    async fn connect(
        &self,
        _: Backoff,
        _: &mut watch::Receiver<bool>,
        _: OnError<'_>,
    ) -> std::result::Result<Option<Arc<dyn Store>>, StoreError> {
        Ok(Some(Arc::clone(&self.0)))
    }
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connected")
    }
}

/// The context's store, for a part that starts before etcd is reachable.
#[derive(Clone)]
pub struct StoreSlot(watch::Receiver<Option<Arc<dyn Store>>>);

impl std::fmt::Debug for StoreSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSlot")
            .field("connected", &self.0.borrow().is_some())
            .finish()
    }
}

impl StoreSlot {
    /// The store once connected; `None` if the context went away first (shutdown
    /// while etcd was unreachable, or a configuration etcd refused).
    pub async fn get(mut self) -> Option<Arc<dyn Store>> {
        self.0.wait_for(Option::is_some).await.ok()?.clone()
    }
}

/// Everything one daemon process shares (see the module doc).
pub struct HostContext {
    pub config: DaemonConfig,
    pub metrics: Arc<Metrics>,
    /// The one discovery source.
    pub source: Arc<Discovered>,
    pub kernel: Arc<NetlinkRoutes>,
    /// Notified on link and address events and overruns, for the registration.
    pub registration_links: Arc<Notify>,
    /// The same events, for the IPAM NIC list.
    pub ipam_links: Arc<Notify>,
    route_events: Option<mpsc::Receiver<KernelEvent>>,
    connector: Arc<dyn Connect>,
    store: watch::Sender<Option<Arc<dyn Store>>>,
    fan_out: JoinHandle<()>,
}

impl std::fmt::Debug for HostContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostContext")
            .field("node", &self.config.node_name)
            .field("connected", &self.store.borrow().is_some())
            .finish_non_exhaustive()
    }
}

impl HostContext {
    /// Subscribes to kernel events and opens netlink and discovery; no store yet.
    /// The subscription comes first, so no change slips between it and the first
    /// discovery or reconcile. Needs a tokio runtime.
    pub fn start(
        config: DaemonConfig,
        metrics: Arc<Metrics>,
        connector: Arc<dyn Connect>,
    ) -> Result<HostContext> {
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
        let (store, _) = watch::channel(None);
        let registration_links = Arc::new(Notify::new());
        let ipam_links = Arc::new(Notify::new());
        let (routes, route_events) = mpsc::channel(ROUTE_EVENTS);
        let fan_out = tokio::spawn(fan_out(
            kernel_watch,
            [Arc::clone(&registration_links), Arc::clone(&ipam_links)],
            routes,
            store.subscribe(),
        ));
        Ok(HostContext {
            config,
            metrics,
            source,
            kernel,
            registration_links,
            ipam_links,
            route_events: Some(route_events),
            connector,
            store,
            fan_out,
        })
    }

    /// The store, for a part started before [`connect`](Self::connect) returns.
    pub fn store_slot(&self) -> StoreSlot {
        StoreSlot(self.store.subscribe())
    }

    /// The route events, for the one reconciler; `None` when already taken.
    pub fn take_route_events(&mut self) -> Option<mpsc::Receiver<KernelEvent>> {
        self.route_events.take()
    }

    /// Connects the process's one store; see `connect_once`.
    pub async fn connect(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Arc<dyn Store>>> {
        connect_once(
            self.connector.as_ref(),
            &self.store,
            &self.metrics,
            shutdown,
        )
        .await
    }
}

impl Drop for HostContext {
    fn drop(&mut self) {
        self.fan_out.abort();
    }
}

/// Connects through `connector`, retrying an unreachable store with backoff
/// (200 ms to 5 s), and publishes the store in `slot`. A store already
/// published is returned without connecting again: one connection per process.
/// `None` when shut down while waiting; an error etcd will not get over (a TLS
/// or endpoint mistake) ends the daemon.
pub(crate) async fn connect_once(
    connector: &dyn Connect,
    slot: &watch::Sender<Option<Arc<dyn Store>>>,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Arc<dyn Store>>> {
    if let Some(store) = slot.borrow().clone() {
        return Ok(Some(store));
    }
    let mut on_error = |e: &StoreError, wait: Duration| {
        if !e.is_retryable() {
            return false;
        }
        metrics.store_errors.inc();
        warn!(error = %e, retry_in = ?wait, "etcd not reachable yet; retrying (IPAM serves from its local log meanwhile)");
        true
    };
    let backoff = Backoff::new(CONNECT_FIRST, CONNECT_MAX);
    let Some(store) = connector.connect(backoff, shutdown, &mut on_error).await? else {
        return Ok(None);
    };
    info!("connected to etcd (one connection for registration, routes and IPAM)");
    slot.send_replace(Some(Arc::clone(&store)));
    Ok(Some(store))
}

/// The one consumer of the kernel subscription. Link events (and overruns,
/// which may have hidden some) wake every NIC follower; every event goes to the
/// reconciler, which picks the tables it cares about.
///
/// Until the store is connected no reconciler runs, so route events are
/// dropped: it starts with a full read of every table anyway, and queueing them
/// would only hold the link events up behind a full channel during a long
/// outage at start.
async fn fan_out(
    mut watch: KernelWatch,
    links: [Arc<Notify>; 2],
    routes: mpsc::Sender<KernelEvent>,
    connected: watch::Receiver<Option<Arc<dyn Store>>>,
) {
    let mut routes = Some(routes);
    while let Some(event) = watch.recv().await {
        if matches!(event, KernelEvent::LinksChanged | KernelEvent::Overrun) {
            for l in &links {
                l.notify_one();
            }
        }
        if connected.borrow().is_none() {
            continue;
        }
        if let Some(tx) = &routes {
            if tx.send(event).await.is_err() {
                routes = None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
