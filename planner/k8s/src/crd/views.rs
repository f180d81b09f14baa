//! Read-only views of what railyard keeps in etcd, so `kubectl get hostinterfaces`
//! and `kubectl get cidrs` answer the questions multi-nic-cni users ask of its
//! resources of the same names. etcd stays the source of truth: these objects are
//! written by the controller and overwritten on the next change, never read back.

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default)]
    pub up: bool,
}

impl From<&HostInventory> for HostInterfaceSpec {
    fn from(h: &HostInventory) -> Self {
        HostInterfaceSpec {
            host_name: h.name.clone(),
            interfaces: h
                .nics
                .iter()
                .map(|n| NicInfo {
                    name: n.name.clone(),
                    addresses: n.addresses.iter().map(ToString::to_string).collect(),
                    mac: n.mac.clone(),
                    mtu: n.mtu.map(i64::from),
                    speed_mbps: n.speed_mbps.map(i64::from),
                    numa_node: n.numa_node,
                    pci_address: n.pci_address.clone(),
                    vendor: n.vendor.clone(),
                    product: n.product.clone(),
                    driver: n.driver.clone(),
                    up: n.up,
                })
                .collect(),
        }
    }
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
