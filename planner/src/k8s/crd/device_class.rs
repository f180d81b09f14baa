//! `DeviceClass`: the named set of NIC kinds the `devClass` attach policy and a
//! pod's `class` cni-arg refer to.
//!
//! The matching rules live in `railyard_core::attach::DeviceClass`, which the
//! route-daemon evaluates; this is its Kubernetes form. The core type cannot derive
//! the schema itself (the core crate depends on serde only), so the CRD spec mirrors
//! its fields and [`DeviceClass::to_core`] converts; the round-trip test keeps the
//! two in step.

use kube::{CustomResource, KubeSchema, ResourceExt};
use railyard_core::attach;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "railyard.dev",
    version = "v1",
    kind = "DeviceClass",
    plural = "deviceclasses",
    shortname = "devclass",
    category = "railyard",
    derive = "PartialEq",
    doc = "A named set of NIC kinds (PCI vendor and device IDs, driver, minimum speed) for the devClass attach policy.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct DeviceClassSpec {
    /// A NIC is in the class when any rule matches it. A class without rules would
    /// match nothing, which is never what its author meant, so one is required.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<DeviceMatchSpec>,
}

/// Every field that is set must match.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMatchSpec {
    /// PCI vendor ID, as sysfs (`0x15b3`) or lspci (`15b3`) writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^(0[xX])?[0-9a-fA-F]{4}$"))]
    pub vendor: Option<String>,
    /// PCI device IDs; any of them matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(pattern(r"^(0[xX])?[0-9a-fA-F]{4}$")))]
    pub products: Vec<String>,
    /// Kernel driver name (`mlx5_core`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub driver: Option<String>,
    /// A NIC of unknown speed never meets a minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_speed_mbps: Option<u32>,
}

impl DeviceClass {
    /// The class as the attach policy evaluates it.
    pub fn to_core(&self) -> attach::DeviceClass {
        attach::DeviceClass {
            name: self.name_any(),
            rules: self
                .spec
                .rules
                .iter()
                .map(|r| attach::DeviceMatch {
                    vendor: r.vendor.clone(),
                    products: r.products.clone(),
                    driver: r.driver.clone(),
                    min_speed_mbps: r.min_speed_mbps,
                })
                .collect(),
        }
    }
}
