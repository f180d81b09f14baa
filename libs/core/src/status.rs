//! What `/railyard/v1/status/<net>` holds: what a user asks of a network
//! ("is it ready, who is left out and why, how much room is left").

use crate::plan::{Planner, Unplanned, UnplannedInterface};
use serde::{Deserialize, Serialize};

/// The network's condition, as the Kubernetes status conditions will name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// Every registered host is planned.
    Ready,
    /// The spec is invalid, or a change was refused; `lastError` says why. A previous
    /// valid plan, if any, stays in force.
    Invalid,
    /// Some hosts or NIC subnets found no free index.
    Exhausted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    pub network: String,
    pub condition: Condition,
    pub hosts_planned: usize,
    /// Planned hosts whose registration is gone, waiting out the grace period.
    pub hosts_departed: usize,
    pub hosts_unplanned: Vec<Unplanned>,
    pub interfaces: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned_interfaces: Vec<UnplannedInterface>,
    pub capacity: Capacity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The store revision of the last plan write: a daemon at or past it has seen it.
    pub plan_revision: i64,
    /// The mod revision of the `/networks` value in force (the accepted spec, which
    /// the plan publishes and every daemon follows); 0 when none was accepted.
    #[serde(default)]
    pub applied_revision: i64,
    /// The mod revision of the latest `/networks` value the planner judged. Equal
    /// to `applied_revision` when it was accepted; otherwise `lastError` says why
    /// not. `railyard apply` waits for this to reach its write.
    #[serde(default)]
    pub observed_revision: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    pub hosts_total: u32,
    /// Indexes a new host can still take (never used, or retired).
    pub hosts_free: u32,
    pub interfaces_total: u32,
    /// Pod addresses per host per rail, one entry per family (primary first).
    pub pods_per_host_per_rail: Vec<u64>,
}

impl NetworkStatus {
    pub fn of(planner: &Planner, last_error: Option<String>, plan_revision: i64) -> Self {
        let meta = planner.meta();
        let layout = planner.layout();
        let (mut planned, mut departed) = (0, 0);
        for (_, h) in planner.hosts() {
            if h.departed_at.is_some() {
                departed += 1;
            } else {
                planned += 1;
            }
        }
        let condition = if last_error.is_some() {
            Condition::Invalid
        } else if meta.unplanned.is_empty() && meta.unplanned_interfaces.is_empty() {
            Condition::Ready
        } else {
            Condition::Exhausted
        };
        NetworkStatus {
            network: meta.network,
            condition,
            hosts_planned: planned,
            hosts_departed: departed,
            hosts_unplanned: meta.unplanned,
            interfaces: meta.interfaces.len(),
            unplanned_interfaces: meta.unplanned_interfaces,
            capacity: Capacity {
                hosts_total: layout.host_capacity(),
                hosts_free: planner.free_host_indexes(),
                interfaces_total: layout.rail_capacity(),
                pods_per_host_per_rail: (0..layout.subnets().len())
                    .map(|f| u64::try_from(layout.pods_per_block(f)).unwrap_or(u64::MAX))
                    .collect(),
            },
            last_error,
            plan_revision,
            applied_revision: 0,
            observed_revision: 0,
        }
    }

    /// Status of a network that never had a valid spec: no plan, only the error.
    pub fn invalid(network: &str, error: String) -> Self {
        NetworkStatus {
            network: network.to_string(),
            condition: Condition::Invalid,
            hosts_planned: 0,
            hosts_departed: 0,
            hosts_unplanned: Vec::new(),
            interfaces: 0,
            unplanned_interfaces: Vec::new(),
            capacity: Capacity::default(),
            last_error: Some(error),
            plan_revision: 0,
            applied_revision: 0,
            observed_revision: 0,
        }
    }
}
