//! This host's share of the plans, for the IPAM side: per network, the accepted
//! spec, the plan's rails and this host's blocks, as the allocation database
//! takes them (`NetworkConfig`). Pure: the reconciler folds every update of its
//! plan watch in here too, so one watch feeds both routes and IPAM.
//!
//! The spec is the one the plan meta publishes (the last the planner accepted),
//! never the `/railyard/v1/networks/` key: a refused change (a renumbering, an
//! overlap with another network's range) must not reach the allocator, or it
//! would hand out addresses the planner never gave this host.
//!
//! Kept apart from [`ClusterView`](super::ClusterView) on purpose: the allocator
//! hears of every meta write (its rails may change without the subnets
//! changing), and a deleted plan leaves the network's last config in place
//! (the allocator keeps serving what it holds); the route view decides neither.

use std::collections::BTreeMap;

use railyard_allocdb::NetworkConfig;
use railyard_core::{keys, HostPlan, PlanMeta};
use railyard_store::{Change, KeyValue, WatchUpdate};
use tracing::{info, warn};

#[derive(Debug, Default)]
pub struct HostShare {
    metas: BTreeMap<String, PlanMeta>,
    mine: BTreeMap<String, HostPlan>,
}

impl HostShare {
    /// Folds one update of the plan watch; returns the config of every network
    /// whose meta or whose entry for `host` it touched, when that network
    /// publishes a valid accepted spec (else the allocator keeps what it has).
    pub fn apply(&mut self, update: &WatchUpdate, host: &str) -> Vec<NetworkConfig> {
        self.fold(update, host)
            .into_iter()
            .filter_map(|net| self.config(&net))
            .collect()
    }

    fn config(&self, net: &str) -> Option<NetworkConfig> {
        let meta = self.metas.get(net)?;
        let spec = match meta.spec.as_ref().map(|s| s.validate(net)) {
            Some(Ok(spec)) => spec,
            Some(Err(e)) => {
                warn!(network = net, error = %e, "the plan's accepted spec is invalid; keeping the previous one");
                return None;
            }
            None => {
                warn!(network = net, "the plan publishes no accepted spec (a planner older than this daemon?); not allocating from it");
                return None;
            }
        };
        Some(NetworkConfig::new(
            &spec,
            &meta.interfaces,
            self.mine.get(net),
        ))
    }

    /// Applies the update; returns the networks it touched, in order.
    fn fold(&mut self, update: &WatchUpdate, host: &str) -> Vec<String> {
        // A snapshot replaces everything, so a listed key that does not decode
        // leaves nothing behind; cleared first, its changes are only its puts.
        if update.is_snapshot() {
            self.metas.clear();
            self.mine.clear();
        }
        let changes = update.changes(std::iter::empty::<&str>());
        let events = changes.iter().map(|c| match c {
            Change::Put(kv) => (c.key(), Some(*kv)),
            Change::Delete(_) => (c.key(), None),
        });
        let mut touched = Vec::new();
        for (key, kv) in events {
            let Some((net, tail)) = key
                .strip_prefix(keys::PLANS)
                .and_then(|r| r.split_once('/'))
            else {
                continue;
            };
            let net = net.to_string();
            if tail == "meta" {
                match kv.map(KeyValue::decode_json::<PlanMeta>) {
                    Some(Ok(m)) => {
                        self.metas.insert(net.clone(), m);
                    }
                    Some(Err(e)) => warn!(network = net, error = %e, "unreadable plan meta"),
                    None => {
                        self.metas.remove(&net);
                    }
                }
            } else if tail.strip_prefix("hosts/") == Some(host) {
                match kv.map(KeyValue::decode_json::<HostPlan>) {
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
