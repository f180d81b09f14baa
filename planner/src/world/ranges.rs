//! Address ranges the planner must not give to a second network: overlaps
//! between networks, and the ranges of deleted networks whose pods still hold
//! addresses (tombstones, `/railyard/v1/tombstones/<net>`).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use railyard_core::spec::overlaps;
use railyard_core::{keys, Tombstone};
use railyard_store::{KeyValue, Op};
use tracing::{info, warn};

/// The first pair of overlapping subnets, `mine` first.
pub(super) fn first_overlap(mine: &[IpNet], theirs: &[IpNet]) -> Option<(IpNet, IpNet)> {
    mine.iter()
        .flat_map(|m| theirs.iter().map(move |t| (*m, *t)))
        .find(|(m, t)| overlaps(m, t))
}

/// Deleted networks' ranges, kept until their allocations are gone. The store
/// holds one key per tombstone so a restarted planner keeps the reservation.
#[derive(Debug, Default)]
pub struct Tombstones {
    live: BTreeMap<String, (Tombstone, Option<usize>)>,
    /// Writes not yet handed to the service: Some puts, None deletes.
    pending: BTreeMap<String, Option<Tombstone>>,
    /// Names whose key the store holds (as far as this leader knows).
    stored: BTreeSet<String>,
}

impl Tombstones {
    pub(super) fn load(&mut self, kvs: &[KeyValue]) {
        for kv in kvs {
            match kv.decode_json::<Tombstone>() {
                Ok(t) => {
                    self.stored.insert(t.network.clone());
                    self.live.insert(t.network.clone(), (t, None));
                }
                Err(e) => warn!(key = kv.key, error = %e, "ignoring an unreadable tombstone"),
            }
        }
    }

    /// Reserves a deleted network's range (until `set_allocations` finds none).
    pub(super) fn bury(&mut self, name: &str, subnets: Vec<IpNet>, now: u64) {
        let t = Tombstone {
            network: name.to_string(),
            subnets,
            deleted_at: now,
        };
        self.pending.insert(name.to_string(), Some(t.clone()));
        self.live.insert(name.to_string(), (t, None));
    }

    pub(super) fn names(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    /// Records how many allocations remain; at 0 the tombstone goes. Returns
    /// whether a range was freed.
    pub(super) fn set_allocations(&mut self, name: &str, count: usize) -> bool {
        let Some((_, seen)) = self.live.get_mut(name) else {
            return false;
        };
        if count > 0 {
            *seen = Some(count);
            return false;
        }
        info!(
            network = name,
            "no allocation left in the deleted network; its range is free"
        );
        self.live.remove(name);
        self.pending.insert(name.to_string(), None);
        true
    }

    pub(super) fn overlap(&self, name: &str, subnets: &[IpNet]) -> Option<String> {
        self.live.values().find_map(|(t, count)| {
            let (mine, theirs) = first_overlap(subnets, &t.subnets)?;
            let held = count.map_or("pods that".to_string(), |n| {
                format!("{n} allocation(s) that")
            });
            Some(format!(
                "spec.subnet: {mine} overlaps {theirs} of deleted network {}, whose {held} still hold addresses there; network {name} is refused until they are released",
                t.network
            ))
        })
    }

    /// The tombstone writes since the last call, one op per key at most.
    pub(super) fn take_ops(&mut self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (name, want) in std::mem::take(&mut self.pending) {
            match want {
                Some(t) => {
                    // Tombstones serialize infallibly (strings and CIDRs).
                    let value = serde_json::to_vec(&t).unwrap_or_default();
                    ops.push(Op::put(keys::tombstone(&name), value));
                    self.stored.insert(name);
                }
                None => {
                    if self.stored.remove(&name) {
                        ops.push(Op::delete(keys::tombstone(&name)));
                    }
                }
            }
        }
        ops
    }
}
