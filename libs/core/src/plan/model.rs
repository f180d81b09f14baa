//! The plan as stored and read: rails, hosts and their blocks, and what could not
//! be planned.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ifname::IfName;
use crate::spec::NetworkSpec;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub network: String,
    pub interfaces: Vec<Interface>,
    pub hosts: BTreeMap<String, HostPlan>,
    /// Host indexes freed after their grace period, oldest first. They are reused
    /// only when no never-used index is left, so a returning pod address is
    /// unlikely to meet stale state elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned: Vec<Unplanned>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned_interfaces: Vec<UnplannedInterface>,
}

/// A rail: one NIC subnet shared by the same-numbered NIC of every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub index: u32,
    pub net_address: IpNet,
    /// The rail's share of the pod subnet, one per family.
    pub cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPlan {
    pub index: u32,
    /// Unix seconds at which the host's registration disappeared. The index and
    /// blocks stay reserved until the grace period after it runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departed_at: Option<u64>,
    pub blocks: Vec<Block>,
    /// Blocks (by CIDR) whose NIC dropped out of the host's registration (its
    /// address removed, the NIC gone), with the Unix second it did. They stay in
    /// `blocks`, so every peer keeps its routes, until the NIC grace period after
    /// that second runs out: a NIC that flaps for a moment must not cut its pods
    /// off. Stored in the plan, not in the planner's memory, so a new leader keeps
    /// counting from the same second instead of granting a fresh period.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nic_missing_since: BTreeMap<IpNet, u64>,
}

/// One host's pod block on one rail in one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub interface: u32,
    pub nic: IfName,
    /// The NIC's own address: the next hop other hosts use to reach this block.
    pub nic_address: IpAddr,
    pub cidr: IpNet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplanned {
    pub host: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnplannedInterface {
    pub net_address: IpNet,
    pub reason: String,
}

/// An assignment of the previous plan that the current spec cannot keep (an index
/// now excluded or beyond a shrunk block). The service refuses such a spec change
/// unless forced, because it renumbers hosts that may hold pod addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renumber {
    pub subject: String,
    pub old_index: u32,
    pub reason: String,
}

/// What an operation did to one host, so the service writes only what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Changed,
}

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
