//! The `railyard` commands that talk to etcd. Each returns what to print, so the
//! binary stays a dispatcher and the tests can call these directly.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use railyard_core::spec::overlaps;
use railyard_core::{
    keys, route_table_for, HostInventory, HostPlan, Layout, NetworkManifest, Plan, PlanMeta,
    Tombstone,
};
use railyard_store::Store;
use serde::Serialize;

use crate::error::{CliError, Result};
use crate::offline::{self, plan_output, PlanOutput};
use crate::table;
use railyard_core::status::NetworkStatus;
use railyard_core::ALLOW_RENUMBER;

/// How `railyard apply` writes and waits.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Accept a change that renumbers hosts holding pod addresses.
    pub force: bool,
    /// How long to wait for the planner's verdict on each network.
    pub wait: Duration,
}

/// `railyard apply -f FILE [--force] [--wait D]`: validates everything it can
/// before writing (the spec, as the planner does; overlaps with the live
/// networks and reserved ranges it can see), stores each network, then waits for
/// the planner's verdict in its status. Calls `say` with one line per network as
/// it is judged: "created"/"configured" only once the planner accepted it,
/// "pending" when no planner answered in time. A refusal is an error naming why
/// (the previous spec stays in force).
pub async fn apply(
    store: &dyn Store,
    path: &str,
    text: &str,
    opts: &ApplyOptions,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let manifests = offline::parse_manifests(path, text)?;
    let taken = taken_ranges(store).await?;
    for (i, (_, net)) in manifests.iter().enumerate() {
        let earlier = manifests[..i].iter().map(|(_, n)| {
            (
                n.name.as_str(),
                "earlier in this file",
                n.subnets.as_slice(),
            )
        });
        let others = taken
            .iter()
            .map(|(n, what, s)| (n.as_str(), *what, s.as_slice()))
            // A network may overlap its own accepted spec, not its tombstone.
            .filter(|(n, what, _)| *n != net.name || *what == TOMBSTONED);
        for (other, what, subnets) in earlier.chain(others) {
            let hit = net
                .subnets
                .iter()
                .find_map(|m| subnets.iter().find(|t| overlaps(m, t)).map(|t| (m, t)));
            if let Some((mine, theirs)) = hit {
                return Err(CliError::Parse {
                    path: path.to_string(),
                    message: format!(
                        "network {}: spec.subnet: {mine} overlaps {theirs} of network {other} ({what}); the planner would refuse it",
                        net.name
                    ),
                });
            }
        }
    }
    let planner_running = railyard_store::election::leader(store, railyard_core::keys::ELECTION)
        .await?
        .is_some();
    for (mut manifest, net) in manifests {
        if opts.force {
            manifest
                .metadata
                .annotations
                .insert(ALLOW_RENUMBER.to_string(), "true".to_string());
        } else {
            manifest.metadata.annotations.remove(ALLOW_RENUMBER);
        }
        let key = keys::network(&net.name);
        let existed = store.get(&key).await?.is_some();
        let value = serde_json::to_vec(&manifest).map_err(|e| CliError::Usage(e.to_string()))?;
        let revision = store.put(&key, value, None).await?;
        let verb = if existed { "configured" } else { "created" };
        if !planner_running {
            say(&format!(
                "network/{} {verb}: pending (no planner is running to judge it)",
                net.name
            ));
            continue;
        }
        match verdict(store, &net.name, revision, opts.wait).await? {
            Some(s) if s.applied_revision >= revision => {
                say(&format!("network/{} {verb}", net.name));
            }
            Some(s) => {
                return Err(CliError::Usage(format!(
                    "network/{} refused by the planner: {} (the spec in force is still the one of revision {})",
                    net.name,
                    s.last_error.unwrap_or_else(|| "no reason given".into()),
                    s.applied_revision
                )));
            }
            None => say(&format!(
                "network/{} {verb}: pending (no planner answered in {}s)",
                net.name,
                opts.wait.as_secs_f64()
            )),
        }
    }
    Ok(())
}

const TOMBSTONED: &str = "deleted, its pods still hold addresses";

/// The ranges a new spec must not overlap, as far as the CLI can see: each
/// network's accepted spec (published in its plan meta) and the tombstones.
async fn taken_ranges(store: &dyn Store) -> Result<Vec<(String, &'static str, Vec<IpNet>)>> {
    let mut out = Vec::new();
    for kv in store.range(keys::NETWORKS).await?.kvs {
        let name = keys::last_segment(&kv.key).to_string();
        let Some(meta) = store.get(&keys::plan_meta(&name)).await? else {
            continue;
        };
        let Ok(meta) = meta.decode_json::<PlanMeta>() else {
            continue;
        };
        if let Some(Ok(net)) = meta.spec.map(|s| s.validate(&name)) {
            out.push((name, "live", net.subnets));
        }
    }
    for kv in store.range(keys::TOMBSTONES).await?.kvs {
        if let Ok(t) = kv.decode_json::<Tombstone>() {
            out.push((t.network, TOMBSTONED, t.subnets));
        }
    }
    Ok(out)
}

/// The status once the planner judged the value written at `revision`, or None
/// if it did not within `wait`.
async fn verdict(
    store: &dyn Store,
    network: &str,
    revision: i64,
    wait: Duration,
) -> Result<Option<NetworkStatus>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(kv) = store.get(&keys::status(network)).await? {
            if let Ok(s) = kv.decode_json::<NetworkStatus>() {
                if s.observed_revision >= revision {
                    return Ok(Some(s));
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `railyard delete network NAME [--force]`. Refuses while pods hold addresses
/// in the network (naming how many and where) unless forced; forced, the
/// planner keeps the range reserved until those addresses are released.
pub async fn delete_network(store: &dyn Store, name: &str, force: bool) -> Result<String> {
    let key = keys::network(name);
    if store.get(&key).await?.is_none() {
        return Err(CliError::Usage(format!("network {name:?} not found")));
    }
    let prefix = keys::allocations_of(name);
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for kv in store.range(&prefix).await?.kvs {
        let host = kv.key[prefix.len()..].split('/').next().unwrap_or("?");
        *per_host.entry(host.to_string()).or_default() += 1;
    }
    let total: usize = per_host.values().sum();
    let hosts = per_host
        .iter()
        .map(|(h, n)| format!("{h}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if total > 0 && !force {
        return Err(CliError::Usage(format!(
            "network {name} has {total} live allocation(s) ({hosts}): its pods still hold addresses. Delete those pods first, or use --force (the range then stays reserved until they are released)"
        )));
    }
    if !store.delete(&key).await? {
        return Err(CliError::Usage(format!("network {name:?} not found")));
    }
    if total > 0 {
        Ok(format!(
            "network/{name} deleted; {total} allocation(s) remain ({hosts}), its range stays reserved until they are released"
        ))
    } else {
        Ok(format!("network/{name} deleted"))
    }
}

#[derive(Debug, Serialize)]
pub struct NetworkView {
    pub name: String,
    pub spec: railyard_core::NetworkSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NetworkStatus>,
}

pub async fn networks(store: &dyn Store) -> Result<Vec<NetworkView>> {
    let specs = store.range(keys::NETWORKS).await?;
    let statuses = store.range(keys::STATUS).await?;
    let mut status_by_name: BTreeMap<String, NetworkStatus> = BTreeMap::new();
    for kv in &statuses.kvs {
        if let Ok(s) = kv.decode_json::<NetworkStatus>() {
            status_by_name.insert(keys::last_segment(&kv.key).to_string(), s);
        }
    }
    let mut out = Vec::new();
    for kv in &specs.kvs {
        let m: NetworkManifest = kv.decode_json()?;
        let name = keys::last_segment(&kv.key).to_string();
        out.push(NetworkView {
            status: status_by_name.remove(&name),
            name,
            spec: m.spec,
        });
    }
    Ok(out)
}

pub fn networks_table(views: &[NetworkView]) -> String {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let s = v.status.as_ref();
            vec![
                v.name.clone(),
                v.spec.subnet.clone(),
                s.map_or("-".into(), |s| format!("{:?}", s.condition)),
                s.map_or("-".into(), |s| s.hosts_planned.to_string()),
                s.map_or("-".into(), |s| s.hosts_unplanned.len().to_string()),
                s.map_or("-".into(), |s| s.capacity.hosts_free.to_string()),
                s.and_then(|s| s.last_error.clone()).unwrap_or_default(),
            ]
        })
        .collect();
    table::render(
        &[
            "NAME",
            "SUBNET",
            "CONDITION",
            "PLANNED",
            "UNPLANNED",
            "FREE",
            "ERROR",
        ],
        &rows,
    )
}

pub async fn hosts(store: &dyn Store) -> Result<Vec<HostInventory>> {
    let r = store.range(keys::HOSTS).await?;
    r.kvs.iter().map(|kv| Ok(kv.decode_json()?)).collect()
}

pub fn hosts_table(hosts: &[HostInventory]) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let nics: Vec<String> = h
                .nics
                .iter()
                .map(|n| {
                    let addrs: Vec<String> = n.addresses.iter().map(ToString::to_string).collect();
                    format!("{}={}", n.name, addrs.join("|"))
                })
                .collect();
            vec![h.name.clone(), h.nics.len().to_string(), nics.join(" ")]
        })
        .collect();
    table::render(&["NAME", "NICS", "ADDRESSES"], &rows)
}

/// The stored plan of `network` (or of every network).
pub async fn plans(store: &dyn Store, network: Option<&str>) -> Result<Vec<Plan>> {
    let prefix = match network {
        Some(n) => keys::plan_prefix(n),
        None => keys::PLANS.to_string(),
    };
    let r = store.range(&prefix).await?;
    let mut metas: BTreeMap<String, PlanMeta> = BTreeMap::new();
    let mut hosts: BTreeMap<String, Vec<(String, HostPlan)>> = BTreeMap::new();
    for kv in &r.kvs {
        let rest = kv.key.strip_prefix(keys::PLANS).unwrap_or(&kv.key);
        let Some((net, tail)) = rest.split_once('/') else {
            continue;
        };
        if tail == "meta" {
            metas.insert(net.to_string(), kv.decode_json()?);
        } else if let Some(h) = tail.strip_prefix("hosts/") {
            hosts
                .entry(net.to_string())
                .or_default()
                .push((h.to_string(), kv.decode_json()?));
        }
    }
    if let (Some(n), true) = (network, metas.is_empty()) {
        return Err(CliError::Usage(format!(
            "network {n:?} has no plan (not applied, invalid, or no planner running)"
        )));
    }
    Ok(metas
        .into_iter()
        .map(|(net, meta)| Plan::assemble(meta, hosts.remove(&net).unwrap_or_default()))
        .collect())
}

pub fn plan_view(plans: &[Plan]) -> PlanOutput {
    plan_output(plans)
}

pub fn plan_table(plans: &[Plan]) -> String {
    let mut rows = Vec::new();
    for p in plans {
        let mut hosts: Vec<(&String, &HostPlan)> = p.hosts.iter().collect();
        hosts.sort_by_key(|(_, h)| h.index);
        for (name, h) in hosts {
            for b in &h.blocks {
                rows.push(vec![
                    p.network.clone(),
                    name.clone(),
                    h.index.to_string(),
                    b.interface.to_string(),
                    b.nic.to_string(),
                    b.nic_address.to_string(),
                    b.cidr.to_string(),
                    if h.departed_at.is_some() {
                        "departed".into()
                    } else {
                        String::new()
                    },
                ]);
            }
        }
        for u in &p.unplanned {
            rows.push(vec![
                p.network.clone(),
                u.host.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                u.reason.clone(),
            ]);
        }
    }
    table::render(
        &[
            "NETWORK",
            "HOST",
            "INDEX",
            "IF",
            "NIC",
            "NIC ADDRESS",
            "BLOCK",
            "NOTE",
        ],
        &rows,
    )
}

/// `railyard describe host NAME`: what the cluster knows of one host.
pub async fn describe_host(store: &dyn Store, name: &str) -> Result<String> {
    use std::fmt::Write;
    let inventory: Option<HostInventory> = match store.get(&keys::host(name)).await? {
        Some(kv) => Some(kv.decode_json()?),
        None => None,
    };
    let plans = plans(store, None).await?;
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {name}");
    let _ = writeln!(
        out,
        "Registered:   {}",
        if inventory.is_some() {
            "yes"
        } else {
            "no (no live registration)"
        }
    );
    if let Some(inv) = &inventory {
        let _ = writeln!(out, "NICs:");
        for n in &inv.nics {
            let addrs: Vec<String> = n.addresses.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  {:<10} {:<30} up={} speed={} numa={} pci={} root={}",
                n.name,
                addrs.join(","),
                n.up,
                n.speed_mbps.map_or("-".into(), |s| format!("{s}Mb/s")),
                n.numa_node.map_or("-".into(), |s| s.to_string()),
                n.pci_address.as_deref().unwrap_or("-"),
                n.pcie_root.as_deref().unwrap_or("-"),
            );
        }
    }
    let mut found = false;
    for p in &plans {
        if let Some(u) = p.unplanned.iter().find(|u| u.host == name) {
            let _ = writeln!(out, "Network {}: unplanned: {}", p.network, u.reason);
            found = true;
        }
        let Some(h) = p.hosts.get(name) else { continue };
        found = true;
        let _ = writeln!(
            out,
            "Network {}: index {}{}",
            p.network,
            h.index,
            h.departed_at.map_or(String::new(), |t| format!(
                " (departed at {t}, in grace period)"
            ))
        );
        for b in &h.blocks {
            let _ = writeln!(
                out,
                "  block {:<20} rail {} on {} ({})",
                b.cidr.to_string(),
                b.interface,
                b.nic,
                b.nic_address
            );
        }
        // A routed network's routes go through the host's own leaves: the
        // accepted spec says which, the registration where the links are.
        let fabric = match store.get(&keys::plan_meta(&p.network)).await? {
            Some(kv) => kv
                .decode_json::<PlanMeta>()?
                .spec
                .map(|s| s.fabric().unwrap_or_default())
                .unwrap_or_default(),
            None => railyard_core::fabric::Fabric::L2,
        };
        let addresses = inventory
            .as_ref()
            .map(railyard_core::fabric::inventory_addresses)
            .unwrap_or_default();
        let routes = railyard_core::fabric::host_routes(
            p,
            fabric,
            name,
            route_table_for(&p.network),
            &addresses,
        );
        let _ = writeln!(
            out,
            "  expected routes: {} (table {})",
            routes.len(),
            route_table_for(&p.network)
        );
        for r in routes.iter().take(20) {
            let _ = writeln!(out, "    {} via {} dev {}", r.dst, r.gateway, r.dev);
        }
        if routes.len() > 20 {
            let _ = writeln!(out, "    ... {} more", routes.len() - 20);
        }
        let read = crate::allocations::load(store, Some(&p.network)).await?;
        let filter = crate::allocations::Filter {
            host: Some(name.to_owned()),
            ..Default::default()
        };
        let mine = |key: &String| key.starts_with(&keys::allocations_of_host(&p.network, name));
        let unreadable: Vec<(String, String)> = read
            .unreadable
            .into_iter()
            .filter(|(k, _)| mine(k))
            .collect();
        let rows = crate::allocations::rows(&read.records, &filter);
        let pods = read.records.iter().filter(|(k, _)| mine(k)).count();
        let _ = writeln!(out, "  allocations: {pods}");
        if !rows.is_empty() || !unreadable.is_empty() {
            for line in crate::allocations::table(&rows, &unreadable).lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    if inventory.is_none() && !found {
        return Err(CliError::Usage(format!("host {name:?} not found")));
    }
    Ok(out)
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CapacityRow {
    pub host_block: u8,
    pub hosts: u64,
    pub pods_per_host_per_rail: u64,
    pub current: bool,
}

/// The hostBlock trade-off of a network: for each choice, how many hosts and how
/// many pods per host per rail (primary family) it allows.
pub fn capacity(net: &railyard_core::Network) -> Vec<CapacityRow> {
    let subnet = net.subnets[0];
    let free = subnet.max_prefix_len() - subnet.prefix_len() - net.interface_block;
    let max_hb = free
        .saturating_sub(railyard_core::spec::MIN_POD_BITS)
        .min(railyard_core::spec::MAX_HOST_BLOCK);
    (0..=max_hb)
        .map(|hb| {
            let mut n = net.clone();
            n.host_block = hb;
            let layout = Layout::new(&n);
            CapacityRow {
                host_block: hb,
                hosts: 1u64 << hb,
                pods_per_host_per_rail: u64::try_from(layout.pods_per_block(0)).unwrap_or(u64::MAX),
                current: hb == net.host_block,
            }
        })
        .collect()
}

pub fn capacity_table(net: &railyard_core::Network, rows: &[CapacityRow]) -> String {
    let mut out = format!(
        "network {}: subnet {}, interfaceBlock {} ({} rails)\n",
        net.name,
        net.subnets[0],
        net.interface_block,
        1u32 << net.interface_block
    );
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{}{}", r.host_block, if r.current { " *" } else { "" }),
                r.hosts.to_string(),
                r.pods_per_host_per_rail.to_string(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["HOSTBLOCK", "HOSTS", "PODS/HOST/RAIL"],
        &body,
    ));
    out
}
