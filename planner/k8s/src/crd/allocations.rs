//! IPAllocation: one network's allocations on one host, a read-only view of
//! the records the route-daemons mirror to etcd.
//!
//! One object per (network, host), not per pod: a pod per object would be
//! about a hundred times more objects (10,000 hosts of 100 pods make a
//! million) and one API write per pod start and stop, where a per-host
//! summary is rewritten at most once per coalescing window for a whole burst
//! on that host. `kubectl get ipallocations` then answers "what does node-7
//! hold on rails" in one object, and `railyard who` answers the reverse.

use kube::CustomResource;
use railyard_core::ipam::AllocationRecord;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "railyard.dev",
    version = "v1",
    kind = "IPAllocation",
    root = "IpAllocation",
    plural = "ipallocations",
    singular = "ipallocation",
    category = "railyard",
    derive = "PartialEq",
    doc = "One network's pod addresses on one host (read-only view of etcd).",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    // Raw JSON form: a second `type_ = "string"` trips clippy's duplicated_attributes.
    printcolumn = r#"{"name": "Host", "type": "string", "jsonPath": ".spec.host"}"#,
    printcolumn(name = "Pods", type_ = "integer", json_path = ".spec.pods"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IpAllocationSpec {
    pub network: String,
    pub host: String,
    /// Attachments (pods) holding addresses.
    pub pods: i64,
    /// The first [`MAX_LISTED`] of them, by pod; `omitted` says how many
    /// more there are (`railyard get allocations --host` lists them all).
    #[serde(default)]
    pub allocations: Vec<PodAllocation>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: i64,
}

/// Attachments listed per object: a Kubernetes object must stay under etcd's
/// 1.5 MiB request limit, and a host block can hold tens of thousands of pods.
/// 2,000 attachments of 8 rails stay around 1 MiB.
pub const MAX_LISTED: usize = 2_000;

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One attachment: a pod's interface set on this network.
#[derive(JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodAllocation {
    /// `namespace/name`; empty when the runtime did not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The attachment's interface (Multus's `net1`).
    pub ifname: String,
    #[serde(default)]
    pub rails: Vec<RailAddresses>,
}

/// What the pod holds on one rail.
#[derive(JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RailAddresses {
    pub rail: i64,
    pub nic: String,
    pub addresses: Vec<String>,
}

impl IpAllocationSpec {
    /// The view of `records` (all of one network on one host), sorted by
    /// pod, container and interface so the same records give the same object.
    pub fn of<'a>(
        network: &str,
        host: &str,
        records: impl Iterator<Item = &'a AllocationRecord>,
    ) -> Self {
        let mut allocations: Vec<PodAllocation> = records
            .map(|r| PodAllocation {
                pod: if r.pod.name.is_empty() {
                    String::new()
                } else {
                    format!("{}/{}", r.pod.namespace, r.pod.name)
                },
                container_id: r.id.container_id.clone(),
                ifname: r.id.ifname.clone(),
                rails: r
                    .nics
                    .iter()
                    .map(|n| RailAddresses {
                        rail: i64::from(n.interface),
                        nic: n.nic.to_string(),
                        addresses: n.addresses.iter().map(|a| a.addr().to_string()).collect(),
                    })
                    .collect(),
            })
            .collect();
        allocations.sort_by(|a, b| {
            (&a.pod, &a.container_id, &a.ifname).cmp(&(&b.pod, &b.container_id, &b.ifname))
        });
        let pods = allocations.len();
        allocations.truncate(MAX_LISTED);
        IpAllocationSpec {
            network: network.to_owned(),
            host: host.to_owned(),
            pods: i64::try_from(pods).unwrap_or(i64::MAX),
            omitted: i64::try_from(pods - allocations.len()).unwrap_or(i64::MAX),
            allocations,
        }
    }
}
