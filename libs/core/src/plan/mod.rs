//! The CIDR plan: which rail index each NIC subnet gets, which host index each host
//! gets, and the blocks that follow from them.
//!
//! [`Planner`] is incremental so the planner service can apply one join in
//! microseconds; [`plan`] is the whole computation from a snapshot, built on it so
//! both paths give the same answer.

mod model;
mod planner;

use std::collections::{BTreeMap, BTreeSet};

pub use model::{
    Block, Change, HostPlan, Interface, Plan, PlanMeta, Renumber, Unplanned, UnplannedInterface,
};
pub use planner::Planner;

use crate::inventory::HostInventory;
use crate::spec::Network;

/// The whole plan from a snapshot: `hosts` are the registered hosts now, `previous`
/// the plan last written. Deterministic: the same inputs give the same plan.
pub fn plan(
    network: &Network,
    hosts: &[HostInventory],
    previous: Option<&Plan>,
    now: u64,
    grace_secs: u64,
) -> Plan {
    let mut p = Planner::new(network, previous);
    if let Some(prev) = previous {
        let live: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let gone = prev
            .hosts
            .keys()
            .chain(prev.unplanned.iter().map(|u| &u.host));
        for name in gone.filter(|n| !live.contains(n.as_str())) {
            p.remove_host(name, now);
        }
        p.expire(now, grace_secs);
    }
    p.register_rails(hosts);
    // Hosts already waiting for an index go first, longest waiting first.
    let waiting = p.waiting();
    if !waiting.is_empty() {
        let by_name: BTreeMap<&str, &HostInventory> =
            hosts.iter().map(|h| (h.name.as_str(), h)).collect();
        for name in &waiting {
            if let Some(h) = by_name.get(name.as_str()) {
                p.upsert_host(h);
            }
        }
    }
    let mut sorted: Vec<&HostInventory> = hosts.iter().collect();
    // Registrations listed from etcd arrive sorted by key, i.e. by name.
    if !sorted.is_sorted_by(|a, b| a.name <= b.name) {
        sorted.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    }
    for h in sorted {
        p.upsert_host(h);
    }
    p.into_plan()
}
