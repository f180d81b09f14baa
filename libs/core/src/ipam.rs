//! The IPAM protocol between the `railyard-ipam` CNI plugin and the route-daemon's
//! allocation service: JSON, one request and one response per line, over a unix
//! socket (root only; there is deliberately no TCP listener).
//!
//! An attachment is identified by (network, container ID, interface name), never by
//! pod name: a pod re-created under the same name is a different attachment, and a
//! repeated ADD of the same attachment must return the same addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::align::GpuPlace;
use crate::ifname::IfName;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Where the daemon listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/railyard/ipam.sock";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentId {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

/// Container IDs of attachments the daemon keeps for a StatefulSet pod's
/// name between its DEL and its recreation (`retained:<ns>:<name>`): they
/// hold addresses but are no pod's, so the connection check skips them.
/// A runtime's container IDs never start so (they are hex, or names
/// without a colon).
pub const RETAINED_PREFIX: &str = "retained:";

impl AttachmentId {
    /// Whether this is a retained attachment ([`RETAINED_PREFIX`]).
    pub fn is_retained(&self) -> bool {
        self.container_id.starts_with(RETAINED_PREFIX)
    }
}

/// The pod, from CNI_ARGS (K8S_POD_*). Informational: recorded with the allocation
/// so operators can see who holds an address, never used as the key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The kind of the pod's controller (`StatefulSet`), as the daemon read it
    /// from the API at ADD: a StatefulSet pod's addresses are kept for its name
    /// after its DEL. Never sent by the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
}

/// The pod's wishes, from Multus cni-args (`nics`, `masters`, `class`, `numa`).
/// They narrow what the network's attach policy would pick; they never widen it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// How many NICs (the first N the policy ranks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nics: Option<u32>,
    /// Exactly these NICs, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<String>,
    /// A DeviceClass name (devClass policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Preferred NUMA node (topology policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa: Option<i32>,
    /// Static addresses: each is taken in the block (of a selected NIC) that
    /// holds it instead of the next free one, or the ADD fails naming it.
    /// From the CNI `ips` capability (`runtimeConfig.ips`) or `args.cni.ips`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    /// The pod's GPUs as the kubelet placed them (railyard-cni reads them from
    /// pod-resources): the topology policy prefers NICs aligned with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuPlace>,
    /// Rails whose pod interface must be a device the kubelet gave the pod (an
    /// SR-IOV VF of the rail's resource), each with the host NICs (the VFs'
    /// PFs) the pod holds one on. A NIC of a listed rail that is not named is
    /// left out, so the pod never gets a rail it has no VF for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_rails: Vec<DeviceRail>,
    /// A workload pool of the network (`spec.ipam.pools`): every address comes
    /// from it. From `args.cni.pool`, or the pod's or its namespace's
    /// `railyard.dev/pool` annotation (read by the daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Kube-OVN's `ip_pool`: on each rail and family, the first free listed
    /// address of the block the pod gets (and none listed there is an error).
    #[serde(
        default,
        rename = "ipPool",
        alias = "ip_pool",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pool_ips: Vec<IpAddr>,
    /// A MAC for the pod's only interface, from Kube-OVN's `mac_address`
    /// annotation (the daemon reads it; `args.cni.macs` and the CNI `mac`
    /// capability are railyard-cni's own). More than one rail is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotated_mac: Option<String>,
    /// Per rail, from `mac_address: "0=02:..,1=02:.."`. A rail the pod does
    /// not get is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotated_macs: BTreeMap<u32, String>,
}

/// One rail that needs the pod's own device, and the NICs it holds one on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRail {
    pub rail: u32,
    #[serde(default)]
    pub nics: Vec<String>,
}

// One request per socket line, never held in bulk: boxing `Add` would only
// add an allocation to the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Allocate one address per selected NIC (per family for dual stack), all or
    /// nothing. Idempotent: the same attachment gets the same answer.
    Add {
        attachment: AttachmentId,
        #[serde(default)]
        pod: PodRef,
        #[serde(default)]
        selection: Selection,
        /// Standalone mode behind one ipvlan/macvlan attachment: allocate only from
        /// the block of this NIC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        master: Option<String>,
    },
    /// Release an attachment's addresses. Unknown attachments succeed.
    Del { attachment: AttachmentId },
    /// Verify the attachment holds what it was given.
    Check { attachment: AttachmentId },
    /// Release every attachment of `network` on this host that is not in `valid`.
    Gc {
        network: String,
        valid: Vec<AttachmentId>,
    },
    /// Whether the daemon can allocate on `network` now (CNI STATUS).
    Status { network: String },
    /// External IPAM (`multiNICIPAM: false`): which NICs the attach policy
    /// gives the pod and each one's host blocks, by the same rules as `Add`,
    /// but nothing is allocated or recorded (the external plugin allocates).
    Choose {
        attachment: AttachmentId,
        #[serde(default)]
        pod: PodRef,
        #[serde(default)]
        selection: Selection,
    },
}

/// One NIC `Choose` picked: what an external IPAM plugin is told to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicChoice {
    /// The host NIC (the delegate's `master`).
    pub nic: IfName,
    /// The rail (interface index) the NIC is on.
    pub interface: u32,
    /// This host's blocks on the NIC, one per family, primary family first.
    pub blocks: Vec<ChosenBlock>,
    /// Routes the pod needs on this interface, as `Add` gives them.
    pub routes: Vec<PodRoute>,
}

/// One host block of a chosen NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChosenBlock {
    pub cidr: IpNet,
    /// The block's gateway: never a pod's address. None for a network
    /// whose pods route without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The network's excluded CIDRs that overlap the block: never a pod's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<IpNet>,
}

/// One selected NIC and what the pod gets on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicAllocation {
    /// The host NIC (the delegate's `master`).
    pub nic: IfName,
    /// The rail (interface index) the NIC is on.
    pub interface: u32,
    /// Pod addresses with the host block's prefix length, one per family.
    pub addresses: Vec<IpNet>,
    /// Per address (same order): the block's gateway. Empty when the
    /// network has none (`spec.ipam.gateway: none`); a daemon before that
    /// setting always sent one per address, and `default` reads a
    /// message without the field as empty.
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
    /// Routes the pod needs on this interface: the rail's CIDR (every host's block
    /// on this rail) via the gateway, or a device route without one.
    pub routes: Vec<PodRoute>,
    /// The MAC the pod's interface on this NIC must have (Kube-OVN's
    /// `mac_address` annotation asked for it); railyard-cni gives it to the
    /// delegate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// An attachment as the route-daemon mirrors it to etcd
/// (`/railyard/v1/allocations/<net>/<host>/<containerID>/<ifname>`): what the
/// CLI, the connection check and the Kubernetes view read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    pub id: AttachmentId,
    #[serde(default)]
    pub pod: PodRef,
    pub nics: Vec<NicAllocation>,
}

impl AllocationRecord {
    /// Every address the attachment holds, rail by rail.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.nics
            .iter()
            .flat_map(|n| n.addresses.iter().map(|a| a.addr()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRoute {
    pub dst: IpNet,
    /// The block's gateway; `None` (left out of the JSON) for a network
    /// without one (`spec.ipam.gateway: none`): a device route. What every
    /// earlier daemon sent, a route with a `gw`, reads as `Some`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Response {
    Added {
        nics: Vec<NicAllocation>,
    },
    Done,
    /// GC: how many attachments were released.
    Collected {
        released: u32,
    },
    /// Choose: the NICs and blocks, in the policy's ranking order.
    Chosen {
        nics: Vec<NicChoice>,
    },
    Error(ErrorReply),
}

/// An error the plugin turns into a CNI error with the same code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: u32,
    pub message: String,
}

/// Error codes the daemon answers with: the CNI spec's where one fits, ours from 100.
pub mod codes {
    /// The network or attachment is not known (CHECK of an unknown attachment).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_CONFIG: u32 = 7;
    /// Retry later: the host has no plan for the network yet, or etcd is needed and down.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// No NIC satisfies the attach policy and the pod's selection.
    pub const NO_NIC: u32 = 100;
    /// A selected NIC's block has no free address.
    pub const BLOCK_EXHAUSTED: u32 = 101;
    /// The daemon refused the request (malformed, or an internal failure).
    pub const REFUSED: u32 = 102;
}
