//! The CIDR plan: which rail index each NIC subnet gets, which host index each host
//! gets, and the blocks that follow from them.
//!
//! [`Planner`] is incremental so the planner service can apply one join in
//! microseconds; [`plan`] is the whole computation from a snapshot, built on it so
//! both paths give the same answer.

mod model;
mod planner;

use std::collections::BTreeSet;

pub use model::{
    Block, Change, HostPlan, Interface, Plan, Renumber, Unplanned, UnplannedInterface,
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
        for name in prev.hosts.keys().filter(|n| !live.contains(n.as_str())) {
            p.remove_host(name, now);
        }
        p.expire(now, grace_secs);
    }
    p.register_rails(hosts);
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
