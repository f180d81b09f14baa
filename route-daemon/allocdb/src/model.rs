//! The engine's inputs and outputs, apart from the protocol types it shares with
//! the CNI plugin (`railyard_core::ipam`).

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use railyard_core::ipam::{AttachmentId, NicAllocation, PodRef, Selection};
use railyard_core::pools::Pool;
use railyard_core::spec::RailRoute;
use railyard_core::{Block, Gateway, HostPlan, IfName, Interface, Network, Plan, Strategy};
use serde::{Deserialize, Serialize};

/// What the engine needs of one network on this host: the attach policy, the
/// excludes that fall inside blocks, the rails (for pod routes) and this host's
/// blocks. Logged whenever it changes, so after a restart the host can allocate
/// before etcd is reachable again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    pub name: String,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub policy_target: String,
    #[serde(default)]
    pub excludes: Vec<IpNet>,
    pub interfaces: Vec<Interface>,
    pub blocks: Vec<Block>,
    /// The network's extra pod routes per rail (`spec.routes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RailRoute>,
    /// The network's workload pools (`spec.ipam.pools`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<Pool>,
    /// Each block's gateway (`spec.ipam.gateway`): left out when it is the
    /// default (offset 1), so a network without the setting logs exactly
    /// what it did before. New in log format version 2.
    #[serde(default, skip_serializing_if = "Gateway::is_default")]
    pub gateway: Gateway,
}

impl NetworkConfig {
    /// `host` is this host's entry of the plan; `None` while it has none (the
    /// network exists but the host has no block yet).
    pub fn new(network: &Network, interfaces: &[Interface], host: Option<&HostPlan>) -> Self {
        NetworkConfig {
            name: network.name.clone(),
            strategy: network.strategy,
            policy_target: network.policy_target.clone(),
            excludes: network.excludes.clone(),
            interfaces: interfaces.to_vec(),
            blocks: host.map(|h| h.blocks.clone()).unwrap_or_default(),
            // Validated with the network; a spec that fails now has none.
            routes: network
                .spec
                .rail_routes(&network.subnets, network.interface_block)
                .unwrap_or_default(),
            pools: network
                .spec
                .pools(
                    &network.subnets,
                    network.interface_block,
                    network.host_block,
                )
                .unwrap_or_default(),
            gateway: network.gateway,
        }
    }

    pub fn from_plan(network: &Network, plan: &Plan, host: &str) -> Self {
        Self::new(network, &plan.interfaces, plan.hosts.get(host))
    }
}

/// One ADD request as the daemon received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddArgs {
    pub attachment: AttachmentId,
    pub pod: PodRef,
    pub selection: Selection,
    /// Standalone mode: only this NIC's block.
    pub master: Option<String>,
}

impl AddArgs {
    pub fn new(attachment: AttachmentId) -> Self {
        AddArgs {
            attachment,
            pod: PodRef::default(),
            selection: Selection::default(),
            master: None,
        }
    }
}

/// What an attachment holds, as logged and as mirrored to etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: AttachmentId,
    #[serde(default)]
    pub pod: PodRef,
    pub nics: Vec<NicAllocation>,
}

/// The result of [`crate::AllocDb::adopt`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Now held here, as etcd said.
    pub adopted: Vec<AttachmentId>,
    /// Refused: an address is held here by another attachment (the reason says
    /// which), so the record is older than the log's decision.
    pub stale: Vec<(AttachmentId, String)>,
}

/// A durable change, for the daemon to mirror to etcd in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(Arc<Attachment>),
    Released(AttachmentId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Log sequence number: increasing, so a mirror can tell old from new.
    pub lsn: u64,
    pub change: Change,
}

/// The result of [`crate::AllocDb::drain_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub events: Vec<ChangeEvent>,
    /// The feed is bounded; when the daemon fell behind, the oldest events were
    /// dropped and it must resync from [`crate::AllocDb::attachments`] instead.
    pub overflowed: bool,
}

/// Counters for metrics and for the balance policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub blocks: Vec<BlockStats>,
    /// Pod addresses per NIC, across networks (what `balance` ranks by).
    pub nic_allocations: BTreeMap<String, u32>,
    pub attachments: usize,
    pub wal: WalStats,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStats {
    pub network: String,
    pub nic: IfName,
    pub interface: u32,
    pub cidr: IpNet,
    pub allocated: u32,
    pub free: u32,
    /// False for a block that left the plan but still holds live addresses.
    pub in_plan: bool,
}

/// How well group commit is working: `records / syncs` is the batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    pub records: u64,
    pub syncs: u64,
    pub bytes: u64,
    pub sync_micros: u64,
    pub compactions: u64,
}
