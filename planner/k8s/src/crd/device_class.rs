//! `DeviceClass`: the named set of NIC kinds the `devClass` attach policy and a
//! pod's `class` cni-arg refer to.
//!
//! The matching rules live in `railyard_core::attach::DeviceClass`, which the
//! route-daemon evaluates; this is its Kubernetes form. The core type cannot derive
//! the schema itself (the core crate depends on serde only), so the CRD spec mirrors
//! its fields and [`DeviceClass::to_core`] converts; the round-trip test keeps the
//! two in step.

use kube::{CustomResource, KubeSchema, ResourceExt};
use railyard_core::{attach, validate_key_segment, CoreError};
use serde::{Deserialize, Serialize};

/// The schema's bounds (the `#[schemars]` attributes below), repeated for
/// [`DeviceClass::validated`], which checks objects the schema never saw.
const MAX_RULES: usize = 64;
const MAX_PRODUCTS: usize = 64;
const MAX_DRIVER: usize = 64;

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
    /// A NIC of unknown speed never meets a minimum. At most 4294967295 (the
    /// route-daemon's `u32`).
    ///
    /// `i64` here, not `u32`, and bounded in the schema: the apiserver checks
    /// `minimum`/`maximum` but not integer formats, so without the bound a value of
    /// 2^32 is stored and would fail to deserialize as a `u32`. Read as `i64`, such a
    /// value (from an object stored before the bound) reaches
    /// [`DeviceClass::validated`], which names the field and the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    pub min_speed_mbps: Option<i64>,
}

impl DeviceClass {
    /// The class as the attach policy evaluates it, unchecked (see
    /// [`validated`](Self::validated) for what may go to etcd).
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
                    // Saturates: only `validated` callers reach the daemons, and it
                    // refuses what does not fit.
                    min_speed_mbps: r
                        .min_speed_mbps
                        .map(|s| u32::try_from(s.max(0)).unwrap_or(u32::MAX)),
                })
                .collect(),
        }
    }

    /// [`to_core`](Self::to_core), refusing what must not reach the route-daemons.
    ///
    /// The schema already refuses most of this at `kubectl apply`, but a CRD
    /// installed from an older release, or an object stored before a schema change,
    /// skips it; the daemons trust etcd, so the controller checks again. One rule
    /// more than the schema: a rule that sets no field. The apiserver prunes unknown
    /// fields, so a misspelt key (`vender:`) arrives as `{}`, which would match every
    /// NIC and grant a `devClass` network all of them.
    pub fn validated(&self) -> Result<attach::DeviceClass, CoreError> {
        let name = self.name_any();
        validate_key_segment("metadata.name", &name)?;
        let rules = &self.spec.rules;
        if rules.is_empty() || rules.len() > MAX_RULES {
            return Err(CoreError::invalid(
                "spec.rules",
                format!("{} rules", rules.len()),
                format!("must hold 1 to {MAX_RULES} rules; a class without rules matches no NIC"),
            ));
        }
        for (i, rule) in rules.iter().enumerate() {
            rule.validate(&format!("spec.rules[{i}]"))?;
        }
        Ok(self.to_core())
    }
}

impl DeviceMatchSpec {
    fn validate(&self, at: &str) -> Result<(), CoreError> {
        if self.vendor.is_none()
            && self.products.is_empty()
            && self.driver.is_none()
            && self.min_speed_mbps.is_none()
        {
            return Err(CoreError::invalid(
                at,
                "{}",
                "sets none of vendor, products, driver, minSpeedMbps and would match every NIC \
                 (a misspelt field is dropped by the apiserver)",
            ));
        }
        if let Some(v) = &self.vendor {
            check_pci_id(&format!("{at}.vendor"), v)?;
        }
        if self.products.len() > MAX_PRODUCTS {
            return Err(CoreError::invalid(
                format!("{at}.products"),
                format!("{} IDs", self.products.len()),
                format!("must hold at most {MAX_PRODUCTS} IDs"),
            ));
        }
        for (j, p) in self.products.iter().enumerate() {
            check_pci_id(&format!("{at}.products[{j}]"), p)?;
        }
        if let Some(d) = &self.driver {
            if d.is_empty()
                || d.len() > MAX_DRIVER
                || d.contains('/')
                || d.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(CoreError::invalid(
                    format!("{at}.driver"),
                    d,
                    format!("must be a kernel driver name: 1 to {MAX_DRIVER} characters, no '/' or whitespace"),
                ));
            }
        }
        if let Some(speed) = self.min_speed_mbps {
            if speed < 1 || u32::try_from(speed).is_err() {
                return Err(CoreError::invalid(
                    format!("{at}.minSpeedMbps"),
                    speed.to_string(),
                    format!(
                        "must be between 1 and {} (leave it out for no minimum)",
                        u32::MAX
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A PCI ID as sysfs (`0x15b3`) or lspci (`15b3`) writes it.
fn check_pci_id(field: &str, value: &str) -> Result<(), CoreError> {
    let hex = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .unwrap_or(value);
    if hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(CoreError::invalid(
            field,
            value,
            "must be a 4-digit hexadecimal PCI ID (15b3 or 0x15b3)",
        ))
    }
}
