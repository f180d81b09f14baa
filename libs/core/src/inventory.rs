//! What a host has: its NICs as the route-daemon discovers them (or as an operator
//! writes them for an unmanaged host).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::ifname::IfName;
use crate::names::validate_host_name;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nic {
    pub name: String,
    /// Addresses with their prefix length (`10.0.1.5/24`): the prefix tells which
    /// rail subnet the NIC sits on.
    #[serde(default, deserialize_with = "addresses")]
    pub addresses: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Link speed in Mbit/s as sysfs reports it; unknown for virtual NICs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u32>,
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
    /// Operational state; a NIC that is down still keeps its rail and blocks.
    #[serde(default = "yes")]
    pub up: bool,
}

/// ipnet's own error ("invalid IP address syntax") does not say which value; ours does.
fn addresses<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            s.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "addresses: {s:?} is not an address with its prefix length (like 10.0.1.5/24)"
                ))
            })
        })
        .collect()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInventory {
    pub name: String,
    #[serde(default, alias = "interfaces")]
    pub nics: Vec<Nic>,
}

impl HostInventory {
    /// Rejects what would corrupt a key or make rail membership ambiguous.
    pub fn validate(&self, field: &str) -> Result<()> {
        validate_host_name(&format!("{field}.name"), &self.name)?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, nic) in self.nics.iter().enumerate() {
            if let Err(CoreError::InvalidName { reason, .. }) = IfName::new(&nic.name) {
                return Err(CoreError::invalid(
                    format!("{field}.nics[{i}].name"),
                    &nic.name,
                    format!("is not an interface name: {reason}"),
                ));
            }
            if !seen.insert(nic.name.as_str()) {
                return Err(CoreError::invalid(
                    format!("{field}.nics[{i}].name"),
                    &nic.name,
                    "appears twice on this host",
                ));
            }
        }
        Ok(())
    }
}

/// An inventory file: a bare list of hosts, or `{hosts: [...]}`.
///
/// Deliberately not an untagged enum: serde would then report only "matched no
/// variant" and hide which host and field was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryFile {
    pub hosts: Vec<HostInventory>,
}

impl InventoryFile {
    /// The hosts, checked, with duplicate host names refused (two registrations
    /// under one name would silently share one host index).
    pub fn into_hosts(self) -> Result<Vec<HostInventory>> {
        let hosts = self.hosts;
        let mut seen = std::collections::BTreeSet::new();
        for (i, h) in hosts.iter().enumerate() {
            h.validate(&format!("hosts[{i}]"))?;
            if !seen.insert(h.name.as_str()) {
                return Err(CoreError::invalid(
                    format!("hosts[{i}].name"),
                    &h.name,
                    "appears twice in the inventory",
                ));
            }
        }
        Ok(hosts)
    }
}
