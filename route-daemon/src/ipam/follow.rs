//! What the allocation service follows in etcd, through the daemon's one store
//! connection: this host's share of the plans (folded by the reconciler's plan
//! watch, see `view::HostShare`, and applied here) and the DeviceClasses.

use std::sync::Arc;

use railyard_allocdb::{AllocDb, NetworkConfig};
use railyard_core::attach::DeviceClass;
use railyard_core::keys;
use railyard_store::{Mirror, Store};
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::daemon::Follow;

/// Records each network's config in the database, in the order the plan
/// watch produced them, until `shutdown` or until the sender is gone.
pub async fn apply_networks(
    mut configs: mpsc::UnboundedReceiver<NetworkConfig>,
    db: Arc<AllocDb>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let config = tokio::select! {
            c = configs.recv() => match c {
                Some(c) => c,
                None => return,
            },
            () = crate::shutdown::stopped(&mut shutdown) => return,
        };
        let network = config.name.clone();
        if let Err(e) = db.set_network(config).await {
            warn!(network, error = %e, "could not record the network's blocks");
        }
    }
}

/// Follows the DeviceClasses (`/railyard/v1/deviceclasses/`) for the devClass
/// policy until `shutdown`, resuming after the watch ends or fails.
pub async fn follow_classes(
    store: Arc<dyn Store>,
    tx: watch::Sender<Vec<DeviceClass>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut updates = Follow::new(store, keys::DEVICE_CLASSES);
    let mut classes: Mirror<DeviceClass> = Mirror::new();
    loop {
        let u = tokio::select! {
            u = updates.next() => u,
            () = crate::shutdown::stopped(&mut shutdown) => return,
        };
        let u = match u {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "device class watch interrupted");
                continue;
            }
        };
        // A snapshot replaces everything: a listed class that does not decode
        // is dropped, not kept from before (only an event keeps it).
        if u.is_snapshot() {
            classes = Mirror::new();
        }
        classes.apply(&u, |kv| kv.decode_json().ok());
        tx.send_replace(classes.values().cloned().collect());
    }
}
