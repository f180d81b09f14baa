//! `railyard plan`: the plan and a host's routes computed from files, with no
//! cluster. The output shapes are a public interface scripts rely on; keep them.

use std::path::Path;

use railyard_core::fabric::{host_routes, inventory_addresses};
use railyard_core::{
    plan, route_table_for, HostInventory, InventoryFile, Network, NetworkManifest, Plan,
};
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PlanOutput {
    pub networks: Vec<NetworkOutput>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkOutput {
    pub name: String,
    pub interfaces: Vec<InterfaceOutput>,
    pub hosts: Vec<HostOutput>,
    pub unplanned: Vec<railyard_core::Unplanned>,
    /// NIC subnets left without an interface index (beyond interfaceBlock, or excluded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned_interfaces: Vec<railyard_core::plan::UnplannedInterface>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceOutput {
    pub index: u32,
    pub net_address: String,
    /// The primary family's rail CIDR.
    pub cidr: String,
    /// Dual stack only: the rail's CIDR in each family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct HostOutput {
    pub name: String,
    pub index: u32,
    pub blocks: Vec<railyard_core::Block>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RouteOutput {
    pub dst: String,
    pub gateway: String,
    pub dev: String,
    pub table: u32,
}

/// Every network in a (possibly multi-document) YAML or JSON file, validated.
pub fn parse_networks(path: &str, text: &str) -> Result<Vec<Network>> {
    Ok(parse_manifests(path, text)?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

/// Like `parse_networks`, keeping each manifest as written (for `railyard apply`).
pub fn parse_manifests(path: &str, text: &str) -> Result<Vec<(NetworkManifest, Network)>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| CliError::Parse {
            path: path.to_string(),
            message: format!("document {}: {e}", i + 1),
        })?;
        if value.is_null() {
            continue;
        }
        let manifest: NetworkManifest =
            serde_yaml::from_value(value).map_err(|e| CliError::Parse {
                path: path.to_string(),
                message: format!("document {}: {e}", i + 1),
            })?;
        let net = manifest.validate().map_err(|e| CliError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        out.push((manifest, net));
    }
    if out.is_empty() {
        return Err(CliError::Parse {
            path: path.to_string(),
            message: "holds no MultiNicNetwork".into(),
        });
    }
    Ok(out)
}

/// The hosts of an inventory file (YAML or JSON), in any of the shapes of
/// `InventoryFile`: a list of hosts, `{hosts: [...]}` or one host.
pub fn parse_inventory(path: &str, text: &str) -> Result<Vec<HostInventory>> {
    let file: InventoryFile = serde_yaml::from_str(text).map_err(|e| CliError::Parse {
        path: path.to_string(),
        message: format!("expected a list of hosts with their nics: {e}"),
    })?;
    file.into_hosts().map_err(|e| CliError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })
}

pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CliError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Fresh plans of every network for the inventory (no previous plan offline).
pub fn plan_all(networks: &[Network], hosts: &[HostInventory]) -> Vec<Plan> {
    networks
        .iter()
        .map(|n| plan(n, hosts, None, 0, 0))
        .collect()
}

pub fn plan_output(plans: &[Plan]) -> PlanOutput {
    PlanOutput {
        networks: plans.iter().map(network_output).collect(),
    }
}

fn network_output(p: &Plan) -> NetworkOutput {
    let mut hosts: Vec<HostOutput> = p
        .hosts
        .iter()
        .map(|(name, h)| HostOutput {
            name: name.clone(),
            index: h.index,
            blocks: h.blocks.clone(),
        })
        .collect();
    hosts.sort_by_key(|h| h.index);
    NetworkOutput {
        name: p.network.clone(),
        interfaces: p
            .interfaces
            .iter()
            .map(|i| InterfaceOutput {
                index: i.index,
                net_address: i.net_address.to_string(),
                cidr: i.cidrs.first().map(ToString::to_string).unwrap_or_default(),
                cidrs: if i.cidrs.len() > 1 {
                    i.cidrs.iter().map(ToString::to_string).collect()
                } else {
                    Vec::new()
                },
            })
            .collect(),
        hosts,
        unplanned: p.unplanned.clone(),
        unplanned_interfaces: p.unplanned_interfaces.clone(),
    }
}

/// Which kernel table a network's routes go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableChoice {
    /// Each network its own table (the route-daemon's default).
    PerNetwork,
    Fixed(u32),
}

impl std::str::FromStr for TableChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "per-network" => Ok(TableChoice::PerNetwork),
            "main" => Ok(TableChoice::Fixed(254)),
            n => n
                .parse()
                .map(TableChoice::Fixed)
                .map_err(|_| format!("--table: {n:?} is not per-network, main or a table number")),
        }
    }
}

/// `host`'s routes across all networks, in the route-daemon's order: on a
/// routed network (`spec.fabric`) through the host's own leaf on each rail,
/// the other end of its link in `hosts` (`plans` are `networks`' plans).
pub fn routes_output(
    plans: &[Plan],
    networks: &[Network],
    hosts: &[HostInventory],
    host: &str,
    table: TableChoice,
) -> Result<Vec<RouteOutput>> {
    let mut known = false;
    let mut out = Vec::new();
    let addresses = hosts
        .iter()
        .find(|h| h.name == host)
        .map(inventory_addresses)
        .unwrap_or_default();
    for (p, n) in plans.iter().zip(networks) {
        if let Some(u) = p.unplanned.iter().find(|u| u.host == host) {
            return Err(CliError::Usage(format!(
                "--routes: host {host:?} is unplanned in network {}: {}",
                p.network, u.reason
            )));
        }
        known |= p.hosts.contains_key(host);
        let t = match table {
            TableChoice::PerNetwork => route_table_for(&p.network),
            TableChoice::Fixed(t) => t,
        };
        let fabric = n.spec.fabric().unwrap_or_default();
        let routes = host_routes(p, fabric, host, t, &addresses);
        out.extend(routes.into_iter().map(|r| RouteOutput {
            dst: r.dst.to_string(),
            gateway: r.gateway.to_string(),
            dev: r.dev.to_string(),
            table: r.table,
        }));
    }
    if !known {
        return Err(CliError::Usage(format!(
            "--routes: host {host:?} is not in the inventory"
        )));
    }
    Ok(out)
}
