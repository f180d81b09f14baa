//! Read-only views of what railyard keeps in etcd, so `kubectl get hostinterfaces`
//! and `kubectl get cidrs` answer the questions multi-nic-cni users ask of its
//! resources of the same names. etcd stays the source of truth: these objects are
//! written by the controller and overwritten on the next change, never read back.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::CustomResource;
use railyard_core::{HostInventory, Plan};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A host's NICs, as its route-daemon registered them.
#[derive(CustomResource, JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "railyard.dev",
    version = "v1",
    kind = "HostInterface",
    plural = "hostinterfaces",
    shortname = "hif",
    category = "railyard",
    derive = "PartialEq",
    doc = "A host's NIC inventory as its route-daemon registered it (read-only view of etcd).",
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.hostName"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct HostInterfaceSpec {
    pub host_name: String,
    #[serde(default)]
    pub interfaces: Vec<NicInfo>,
}

#[derive(JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicInfo {
    pub name: String,
    /// Addresses with prefix length; the prefix tells the NIC's rail subnet.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    /// The PCIe root complex (`pci0000:3a`): NICs and GPUs under one root
    /// move data between them without crossing the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie_root: Option<String>,
    /// The NIC's rail (interface index) in each network planned on it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rails: BTreeMap<String, u32>,
    /// The same facts under the names DRA device attributes use, in a
    /// ResourceSlice's shape, so a DRA driver or a claim's CEL selector can
    /// match them as they are (see docs/design/dra.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, DeviceAttribute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default)]
    pub up: bool,
}

/// One DRA device attribute value (`resource.k8s.io` `DeviceAttribute`):
/// exactly one of its fields is set.
#[derive(JsonSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAttribute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int: Option<i64>,
}

/// DRA's standard attribute for the PCIe root complex (Kubernetes 1.34,
/// `k8s.io/dynamic-resource-allocation/deviceattribute`).
pub const ATTR_PCIE_ROOT: &str = "resource.kubernetes.io/pcieRoot";
/// DRANET's names for the PCI address and NUMA node, so claims written for
/// DRANET's devices select railyard's NICs alike.
pub const ATTR_PCI_ADDRESS: &str = "dra.net/pciAddress";
pub const ATTR_NUMA_NODE: &str = "dra.net/numaNode";
/// railyard's: the rail index, when every network planned on the NIC puts
/// it on the same one (the usual rail-optimized layout).
pub const ATTR_RAIL: &str = "railyard.dev/rail";

impl From<&HostInventory> for HostInterfaceSpec {
    fn from(h: &HostInventory) -> Self {
        HostInterfaceSpec::with_rails(h, &BTreeMap::new())
    }
}

impl HostInterfaceSpec {
    /// The view of `h`, with `rails` (NIC name to network to rail index)
    /// from the plans that place the host.
    pub fn with_rails(h: &HostInventory, rails: &BTreeMap<String, BTreeMap<String, u32>>) -> Self {
        HostInterfaceSpec {
            host_name: h.name.clone(),
            interfaces: h
                .nics
                .iter()
                .map(|n| {
                    let rails = rails.get(&n.name).cloned().unwrap_or_default();
                    NicInfo {
                        name: n.name.clone(),
                        addresses: n.addresses.iter().map(ToString::to_string).collect(),
                        mac: n.mac.clone(),
                        mtu: n.mtu.map(i64::from),
                        speed_mbps: n.speed_mbps.map(i64::from),
                        numa_node: n.numa_node,
                        pci_address: n.pci_address.clone(),
                        pcie_root: n.pcie_root.clone(),
                        attributes: attributes(n, &rails),
                        rails,
                        vendor: n.vendor.clone(),
                        product: n.product.clone(),
                        driver: n.driver.clone(),
                        up: n.up,
                    }
                })
                .collect(),
        }
    }
}

fn attributes(
    n: &railyard_core::Nic,
    rails: &BTreeMap<String, u32>,
) -> BTreeMap<String, DeviceAttribute> {
    let string = |v: &Option<String>| {
        v.clone().map(|s| DeviceAttribute {
            string: Some(s),
            int: None,
        })
    };
    let int = |v: Option<i64>| {
        v.map(|i| DeviceAttribute {
            string: None,
            int: Some(i),
        })
    };
    let mut indexes: Vec<u32> = rails.values().copied().collect();
    indexes.dedup();
    let rail = match indexes.as_slice() {
        [one] => Some(i64::from(*one)),
        _ => None,
    };
    [
        (ATTR_PCIE_ROOT, string(&n.pcie_root)),
        (ATTR_PCI_ADDRESS, string(&n.pci_address)),
        (ATTR_NUMA_NODE, int(n.numa_node.map(i64::from))),
        (ATTR_RAIL, int(rail)),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
    .collect()
}

/// A network's plan: its rails and every host's blocks.
#[derive(CustomResource, JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "railyard.dev",
    version = "v1",
    kind = "CIDR",
    root = "Cidr",
    plural = "cidrs",
    singular = "cidr",
    category = "railyard",
    derive = "PartialEq",
    doc = "A network's CIDR plan: rails and per-host blocks (read-only view of etcd).",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CidrSpec {
    pub network: String,
    #[serde(default)]
    pub interfaces: Vec<RailInfo>,
    #[serde(default)]
    pub hosts: Vec<HostBlocks>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned: Vec<super::network::UnplannedHost>,
}

#[derive(JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RailInfo {
    pub index: i64,
    /// The NIC subnet that defines the rail.
    pub net_address: String,
    /// The rail's share of the pod subnet, one per family.
    pub cidrs: Vec<String>,
}

#[derive(JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostBlocks {
    pub host: String,
    pub index: i64,
    /// Set while a departed host's blocks wait out the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departed_at: Option<String>,
    pub blocks: Vec<BlockInfo>,
}

#[derive(JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockInfo {
    pub interface: i64,
    pub nic: String,
    /// The next hop other hosts use to reach this block.
    pub nic_address: String,
    pub cidr: String,
}

impl From<&Plan> for CidrSpec {
    fn from(p: &Plan) -> Self {
        let mut hosts: Vec<HostBlocks> = p
            .hosts
            .iter()
            .map(|(name, h)| HostBlocks {
                host: name.clone(),
                index: i64::from(h.index),
                departed_at: h.departed_at.map(unix_to_rfc3339),
                blocks: h
                    .blocks
                    .iter()
                    .map(|b| BlockInfo {
                        interface: i64::from(b.interface),
                        nic: b.nic.to_string(),
                        nic_address: b.nic_address.to_string(),
                        cidr: b.cidr.to_string(),
                    })
                    .collect(),
            })
            .collect();
        hosts.sort_by_key(|h| h.index);
        CidrSpec {
            network: p.network.clone(),
            interfaces: p
                .interfaces
                .iter()
                .map(|i| RailInfo {
                    index: i64::from(i.index),
                    net_address: i.net_address.to_string(),
                    cidrs: i.cidrs.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            hosts,
            unplanned: p
                .unplanned
                .iter()
                .map(|u| super::network::UnplannedHost {
                    host: u.host.clone(),
                    reason: u.reason.clone(),
                })
                .collect(),
        }
    }
}

/// The plan keeps Unix seconds; people read RFC 3339.
fn unix_to_rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map_or_else(|| secs.to_string(), |t| t.to_string())
}
