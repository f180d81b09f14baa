//! This host's registration: its NIC inventory under `keys::host(name)`, bound to
//! a lease the daemon keeps alive. The planner plans the hosts it finds there and
//! starts a host's grace period when the key vanishes.
//!
//! The key is rewritten only when the inventory changed (a link or address event,
//! debounced) or when the lease was lost; a healthy host costs etcd one keep-alive
//! per TTL/3 and nothing else. etcd being unreachable only delays the
//! registration: it never reaches the routes.
//!
//! Shutdown does not revoke the lease on purpose: a restarted daemon (an upgrade)
//! re-registers within the TTL and the host never looks departed, so peers keep
//! their routes to its still-running pods. A host that stays down disappears
//! after one TTL.

use std::sync::Arc;
use std::time::Duration;

use railyard_core::{keys, HostInventory};
use railyard_store::{spawn_keep_alive, KeepAlive, LeaseStatus, Store, StoreError};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{info, warn};

use crate::metrics::{Metrics, RegistrationState};
use railyard_store::Backoff;

/// The source is shared with the IPAM NIC list (one per process); it lives with
/// discovery.
pub use crate::discovery::{Discovered, InventorySource};

#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    pub node_name: String,
    pub lease_ttl_secs: i64,
    /// Quiet time after a link event before re-discovering: one `ip link set up`
    /// brings link, address and route events, and a NIC coming up brings several.
    pub debounce: Duration,
}

/// Why the registration must be (re)written.
#[derive(Debug, Default)]
struct Registrar {
    keep_alive: Option<KeepAlive>,
    status: Option<watch::Receiver<LeaseStatus>>,
    /// What the key holds under the current lease, as far as we know.
    stored: Option<HostInventory>,
    discovered: Option<HostInventory>,
    rediscover: bool,
    /// etcd was unreachable: read the key back before trusting `stored`.
    verify: bool,
}

/// Keeps this host registered until `shutdown` turns true. `links` is notified on
/// every link or address event (and after a kernel event overrun).
pub async fn run_registration(
    store: Arc<dyn Store>,
    source: Arc<dyn InventorySource>,
    cfg: RegistrationConfig,
    links: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reg = Registrar {
        rediscover: true,
        ..Registrar::default()
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut retry_at: Option<Instant> = None;
    loop {
        if retry_at.is_none() {
            match reg.step(&store, source.as_ref(), &cfg, &metrics).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    let wait = backoff.next_delay();
                    warn!(host = %cfg.node_name, error = %e, retry_in = ?wait, "registration failed; retrying");
                    retry_at = Some(Instant::now() + wait);
                }
            }
        }
        let links_changed = tokio::select! {
            () = crate::shutdown::stopped(&mut shutdown) => return,
            () = links.notified() => true,
            status = lease_change(&mut reg.status) => {
                reg.on_status(status, &cfg.node_name, &metrics);
                false
            }
            () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                retry_at = None;
                false
            }
        };
        if links_changed {
            if !debounce(&links, cfg.debounce, &mut shutdown).await {
                return;
            }
            reg.rediscover = true;
        }
    }
}

/// Waits until `links` has been quiet for `quiet` (at most ten times that, so a
/// flapping link still gets registered); false on shutdown.
async fn debounce(links: &Notify, quiet: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let cap = Instant::now() + quiet * 10;
    loop {
        tokio::select! {
            () = crate::shutdown::stopped(shutdown) => return false,
            () = links.notified(), if Instant::now() < cap => {}
            () = sleep(quiet) => return true,
        }
    }
}

/// The next lease status change; pends forever without a lease.
async fn lease_change(status: &mut Option<watch::Receiver<LeaseStatus>>) -> LeaseStatus {
    let Some(rx) = status else {
        return std::future::pending().await;
    };
    match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        // The keep-alive task ended: it does so only when the lease is gone.
        Err(_) => LeaseStatus::Lost,
    }
}

impl Registrar {
    async fn step(
        &mut self,
        store: &Arc<dyn Store>,
        source: &dyn InventorySource,
        cfg: &RegistrationConfig,
        metrics: &Metrics,
    ) -> std::result::Result<(), String> {
        if self.rediscover || self.discovered.is_none() {
            let inv = source
                .inventory()
                .await
                .map_err(|e| format!("NIC discovery: {e}"))?;
            self.rediscover = false;
            self.discovered = Some(inv);
        }
        let Some(inventory) = &self.discovered else {
            return Ok(());
        };
        let key = keys::host(&cfg.node_name);
        let lease = match &self.keep_alive {
            Some(k) => k.lease(),
            None => {
                let lease = store.grant(cfg.lease_ttl_secs).await.map_err(|e| {
                    metrics.store_errors.inc();
                    format!("grant lease: {e}")
                })?;
                let k = spawn_keep_alive(Arc::clone(store), lease, cfg.lease_ttl_secs);
                self.status = Some(k.subscribe());
                self.keep_alive = Some(k);
                self.stored = None;
                lease
            }
        };
        if self.verify {
            let kv = store.get(&key).await.map_err(|e| {
                metrics.store_errors.inc();
                format!("read back {key}: {e}")
            })?;
            let same = kv.is_some_and(|kv| {
                kv.lease == Some(lease) && kv.decode_json::<HostInventory>().ok() == self.stored
            });
            if !same {
                self.stored = None;
            }
            self.verify = false;
        }
        if self.stored.as_ref() != Some(inventory) {
            let value =
                serde_json::to_vec(inventory).map_err(|e| format!("encode inventory: {e}"))?;
            store
                .put(&key, value, Some(lease))
                .await
                .map_err(|e: StoreError| {
                    metrics.store_errors.inc();
                    format!("write {key}: {e}")
                })?;
            metrics.registrations.inc();
            info!(
                host = %cfg.node_name,
                nics = inventory.nics.len(),
                %lease,
                "registered this host's NICs"
            );
            self.stored = Some(inventory.clone());
        }
        metrics.set_registration(match self.status.as_ref().map(|s| *s.borrow()) {
            Some(LeaseStatus::Unconfirmed | LeaseStatus::Expired) => RegistrationState::Unconfirmed,
            _ => RegistrationState::Registered,
        });
        Ok(())
    }

    fn on_status(&mut self, status: LeaseStatus, host: &str, metrics: &Metrics) {
        match status {
            LeaseStatus::Alive => {
                if metrics.registration_state() == RegistrationState::Unconfirmed {
                    info!(host, "etcd confirms the lease again");
                    self.verify = true;
                }
                if self.stored.is_some() {
                    metrics.set_registration(RegistrationState::Registered);
                }
            }
            LeaseStatus::Unconfirmed | LeaseStatus::Expired => {
                metrics.set_registration(RegistrationState::Unconfirmed);
            }
            LeaseStatus::Lost => {
                warn!(
                    host,
                    "registration lease lost; registering again under a new one"
                );
                self.keep_alive = None;
                self.status = None;
                self.stored = None;
                metrics.set_registration(RegistrationState::Unregistered);
            }
        }
    }
}

#[cfg(test)]
mod tests;
