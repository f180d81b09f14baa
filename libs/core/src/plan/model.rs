//! The plan as stored and read: rails, hosts and their blocks, and what could not
//! be planned.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ifname::IfName;

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
