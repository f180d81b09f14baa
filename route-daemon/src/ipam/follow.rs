//! Keeps the allocation database's view of each network current: the accepted
//! spec, the plan's rails and this host's blocks. Only this host's plan entry
//! matters here, so every other host key is ignored.
//!
//! The spec is the one the plan meta publishes (the last the planner accepted),
//! never the `/railyard/v1/networks/` key: a refused change (a renumbering, an
//! overlap with another network's range) must not reach the allocator, or it
//! would hand out addresses the planner never gave this host.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use railyard_allocdb::{AllocDb, NetworkConfig};
use railyard_core::attach::DeviceClass;
use railyard_core::{keys, HostPlan, PlanMeta};
use railyard_store::{watch_or_relist, KeyValue, Store, WatchEvent, WatchUpdate};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Default)]
struct Networks {
    metas: BTreeMap<String, PlanMeta>,
    mine: BTreeMap<String, HostPlan>,
}

/// Follows the plans until `shutdown`; feeds `db.set_network` on change.
pub async fn follow_networks(
    store: Arc<dyn Store>,
    db: Arc<AllocDb>,
    host: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut plans = watch_or_relist(Arc::clone(&store), keys::PLANS, None);
    let mut state = Networks::default();
    loop {
        let touched = tokio::select! {
            u = plans.next() => match u {
                Some(Ok(u)) => state.apply_plans(u, &host),
                Some(Err(e)) => { warn!(error = %e, "plan watch interrupted"); Vec::new() }
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        for net in touched {
            let Some(meta) = state.metas.get(&net) else {
                continue;
            };
            let spec = match meta.spec.as_ref().map(|s| s.validate(&net)) {
                Some(Ok(spec)) => spec,
                Some(Err(e)) => {
                    warn!(network = net, error = %e, "the plan's accepted spec is invalid; keeping the previous one");
                    continue;
                }
                None => {
                    warn!(network = net, "the plan publishes no accepted spec (a planner older than this daemon?); not allocating from it");
                    continue;
                }
            };
            let cfg = NetworkConfig::new(&spec, &meta.interfaces, state.mine.get(&net));
            if let Err(e) = db.set_network(cfg).await {
                warn!(network = net, error = %e, "could not record the network's blocks");
            }
        }
    }
}

impl Networks {
    fn apply_plans(&mut self, u: WatchUpdate, host: &str) -> Vec<String> {
        let mut touched = Vec::new();
        let events: Vec<(String, Option<KeyValue>)> = match u {
            WatchUpdate::Snapshot(range) => {
                self.metas.clear();
                self.mine.clear();
                range
                    .kvs
                    .into_iter()
                    .map(|kv| (kv.key.clone(), Some(kv)))
                    .collect()
            }
            WatchUpdate::Events(events) => events
                .into_iter()
                .map(|e| match e {
                    WatchEvent::Put(kv) => (kv.key.clone(), Some(kv)),
                    WatchEvent::Delete { key, .. } => (key, None),
                })
                .collect(),
        };
        for (key, kv) in events {
            let Some((net, tail)) = key
                .strip_prefix(keys::PLANS)
                .and_then(|r| r.split_once('/'))
            else {
                continue;
            };
            let net = net.to_string();
            if tail == "meta" {
                match kv.map(|kv| kv.decode_json::<PlanMeta>()) {
                    Some(Ok(m)) => {
                        self.metas.insert(net.clone(), m);
                    }
                    Some(Err(e)) => warn!(network = net, error = %e, "unreadable plan meta"),
                    None => {
                        self.metas.remove(&net);
                    }
                }
            } else if tail.strip_prefix("hosts/") == Some(host) {
                match kv.map(|kv| kv.decode_json::<HostPlan>()) {
                    Some(Ok(p)) => {
                        info!(
                            network = net,
                            index = p.index,
                            blocks = p.blocks.len(),
                            "this host's blocks"
                        );
                        self.mine.insert(net.clone(), p);
                    }
                    Some(Err(e)) => warn!(network = net, error = %e, "unreadable host plan"),
                    None => {
                        self.mine.remove(&net);
                    }
                }
            } else {
                continue;
            }
            if !touched.contains(&net) {
                touched.push(net);
            }
        }
        touched
    }
}

/// Follows the DeviceClasses (`/railyard/v1/deviceclasses/`) for the devClass policy.
pub async fn follow_classes(
    store: Arc<dyn Store>,
    tx: watch::Sender<Vec<DeviceClass>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut updates = watch_or_relist(store, keys::DEVICE_CLASSES, None);
    let mut classes: BTreeMap<String, DeviceClass> = BTreeMap::new();
    loop {
        let u = tokio::select! {
            u = updates.next() => u,
            _ = shutdown.changed() => return,
        };
        match u {
            None => return,
            Some(Err(e)) => warn!(error = %e, "device class watch interrupted"),
            Some(Ok(WatchUpdate::Snapshot(range))) => {
                classes = range
                    .kvs
                    .iter()
                    .filter_map(|kv| kv.decode_json().ok().map(|c| (kv.key.clone(), c)))
                    .collect();
            }
            Some(Ok(WatchUpdate::Events(events))) => {
                for e in events {
                    match e {
                        WatchEvent::Put(kv) => {
                            if let Ok(c) = kv.decode_json() {
                                classes.insert(kv.key.clone(), c);
                            }
                        }
                        WatchEvent::Delete { key, .. } => {
                            classes.remove(&key);
                        }
                    }
                }
            }
        }
        tx.send_replace(classes.values().cloned().collect());
    }
}
