//! How a plan is laid out in the store: one `meta` key for the network-wide part and
//! one key per host (see `keys`). Splitting it this way makes a host join one
//! small write, and lets a daemon watch the plan and apply just the keys that moved.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::plan::{HostPlan, Interface, Plan, Unplanned, UnplannedInterface};
use crate::spec::NetworkSpec;

/// Everything in a [`Plan`] except the per-host entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanMeta {
    pub network: String,
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned: Vec<Unplanned>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned_interfaces: Vec<UnplannedInterface>,
    /// The network spec this plan follows: the last one the planner accepted,
    /// which is not always what `/railyard/v1/networks/<net>` holds (a refused
    /// change stays there until fixed). Route-daemons read the spec here, never
    /// from `/networks`, so a refused spec changes nothing on any host. `None`
    /// only in a plan written before railyard published it (the planner
    /// rewrites the meta with it when it loads such a plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NetworkSpec>,
    /// The mod revision of the `/railyard/v1/networks/<net>` key `spec` came from.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spec_revision: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Plan {
    /// Splits a plan into its meta part and its host entries.
    pub fn split(&self) -> (PlanMeta, &BTreeMap<String, HostPlan>) {
        (
            PlanMeta {
                network: self.network.clone(),
                interfaces: self.interfaces.clone(),
                retired: self.retired.clone(),
                unplanned: self.unplanned.clone(),
                unplanned_interfaces: self.unplanned_interfaces.clone(),
                spec: None,
                spec_revision: 0,
            },
            &self.hosts,
        )
    }

    /// Reassembles a plan read back from the store.
    pub fn assemble(meta: PlanMeta, hosts: impl IntoIterator<Item = (String, HostPlan)>) -> Plan {
        Plan {
            network: meta.network,
            interfaces: meta.interfaces,
            hosts: hosts.into_iter().collect(),
            retired: meta.retired,
            unplanned: meta.unplanned,
            unplanned_interfaces: meta.unplanned_interfaces,
        }
    }
}

/// A deleted network whose pods still held addresses (`keys::tombstone`). Its
/// subnets stay reserved: a network overlapping them is refused until the
/// allocations under `/railyard/v1/allocations/<network>/` are gone, so no
/// address is handed out twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub network: String,
    pub subnets: Vec<IpNet>,
    /// Unix seconds of the deletion.
    pub deleted_at: u64,
}

/// The kernel routing table a network's routes live in when it has its own table.
/// Derived from the name (FNV-1a) so every daemon, and a restarted one, finds its
/// routes without coordination; kept clear of the reserved tables 0 and 252 to 255.
pub fn route_table_for(network: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in network.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    10_000 + h % 1_000_000
}
