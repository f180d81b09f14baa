//! The daemon's picture of the cluster: which networks are live (their accepted
//! specs) and each network's plan, kept up to date from the watches. Pure: the
//! loop feeds it watch updates and asks it what the kernel should hold.
//!
//! A network is live here exactly while its plan meta carries an accepted spec:
//! the planner publishes there the last spec it accepted, never a refused one.
//! The `/railyard/v1/networks/` key is only what a user asked for (a refused
//! change, an overlapping network or a deleted key with pods still attached all
//! live there too), so it decides nothing on a host: a network's rules and routes
//! go when the planner deletes its plan.
//!
//! A plan is kept assembled (`Plan`), and a watch event touches only the key it
//! names: a join in a 10,000-host network costs one map insert, not a rebuild.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use railyard_core::fabric::{is_source_table, Fabric};
use railyard_core::{desired_routes, keys, HostPlan, IfName, Plan, PlanMeta, Route};
use railyard_store::{KeyValue, WatchEvent, WatchUpdate};
use tracing::{debug, info, warn};

use crate::kernel::{PolicyRule, RoutingMode};

mod routed;
mod share;
pub use routed::{RoutedChange, RoutedHost, SOURCE_ROUTING};
pub use share::HostShare;

#[derive(Debug, Default)]
pub struct ClusterView {
    /// Live networks (a plan meta with an accepted spec) and that spec's subnets.
    networks: BTreeMap<String, Vec<IpNet>>,
    plans: BTreeMap<String, Plan>,
    /// Each live network's rails, l2 or routed (`routed.rs`).
    fabrics: BTreeMap<String, Fabric>,
    /// This host's link addresses, for routed networks' next hops (`routed.rs`).
    addresses: Vec<(IfName, IpNet)>,
    /// What the routed networks asked of this host at the last refresh.
    routed: RoutedHost,
    specs_synced: bool,
    plans_synced: bool,
}

/// A network's plan as read key by key: the meta (if any) and the host entries.
type PlanParts = (Option<PlanMeta>, Vec<(String, HostPlan)>);

/// What a plan update changed, as precisely as the daemon can use it: one host's
/// entry (the usual join or departure), or a whole network (a re-list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanChange {
    Network(String),
    /// `before` is the entry as it was; the view holds the new one.
    Host {
        network: String,
        host: String,
        before: Option<HostPlan>,
    },
}

impl PlanChange {
    pub fn network(&self) -> &str {
        match self {
            PlanChange::Network(n) | PlanChange::Host { network: n, .. } => n,
        }
    }
}

/// Which part of a plan a key under `keys::PLANS` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKey<'a> {
    Meta { network: &'a str },
    Host { network: &'a str, host: &'a str },
}

pub fn parse_plan_key(key: &str) -> Option<PlanKey<'_>> {
    let rest = key.strip_prefix(keys::PLANS)?;
    let (network, rest) = rest.split_once('/')?;
    if network.is_empty() {
        return None;
    }
    if rest == "meta" {
        return Some(PlanKey::Meta { network });
    }
    let host = rest.strip_prefix("hosts/")?;
    (!host.is_empty() && !host.contains('/')).then_some(PlanKey::Host { network, host })
}

impl ClusterView {
    /// True once both watches delivered their first listing. Until then the view
    /// says nothing about what is wanted, and the daemon must not touch routes:
    /// an empty view would read as "delete everything".
    pub fn synced(&self) -> bool {
        self.specs_synced && self.plans_synced
    }

    pub fn networks(&self) -> impl Iterator<Item = &str> {
        self.networks.keys().map(String::as_str)
    }

    pub fn plan(&self, network: &str) -> Option<&Plan> {
        self.plans.get(network)
    }

    /// Notes the first listing of the `/networks` watch and nothing else: which
    /// networks are live, and their subnets, come from the plan metas (see the
    /// module doc). Returns no change, ever.
    pub fn apply_networks(&mut self, update: WatchUpdate) -> BTreeSet<String> {
        if update.is_snapshot() {
            self.specs_synced = true;
        }
        BTreeSet::new()
    }

    /// Takes the accepted spec a plan meta publishes; returns whether the
    /// network's liveness, subnets or fabric (l2 or routed) changed.
    fn put_meta(&mut self, network: &str, meta: &PlanMeta) -> bool {
        let net = match meta.spec.as_ref().map(|s| s.validate(network)) {
            Some(Ok(net)) => net,
            Some(Err(e)) => {
                // The planner validated it; a corrupt value must not take routes away.
                warn!(network, error = %e, "the plan's accepted spec is invalid; keeping what was known");
                return false;
            }
            None => {
                warn!(network, "the plan publishes no accepted spec (a planner older than this daemon?); the network gets no rules or routes here");
                return self.networks.remove(network).is_some();
            }
        };
        // A network turned routed (or back) changes every route of it.
        let fabric_changed = self.put_fabric(network, &net);
        let subnets = net.subnets;
        let changed = match self.networks.get_mut(network) {
            Some(old) if *old == subnets => false,
            Some(old) => {
                info!(network, ?subnets, "accepted spec changed");
                *old = subnets;
                true
            }
            None => {
                info!(network, ?subnets, "network is live");
                self.networks.insert(network.to_owned(), subnets);
                true
            }
        };
        changed || fabric_changed
    }

    /// Applies an update of the plan watch; returns what changed. A meta key is
    /// reported (as the whole network) only when the accepted spec's subnets, or
    /// the network's liveness, changed: the policy rules follow those.
    pub fn apply_plans(&mut self, update: WatchUpdate) -> Vec<PlanChange> {
        match update {
            WatchUpdate::Snapshot(range) => {
                self.plans_synced = true;
                let old = std::mem::take(&mut self.plans);
                let mut parts: BTreeMap<&str, PlanParts> = BTreeMap::new();
                for kv in &range.kvs {
                    let Some(key) = parse_plan_key(&kv.key) else {
                        continue;
                    };
                    match key {
                        PlanKey::Meta { network } => {
                            let meta = decode::<PlanMeta>(kv)
                                .or_else(|| old.get(network).map(|p| p.split().0));
                            parts.entry(network).or_default().0 = meta;
                        }
                        PlanKey::Host { network, host } => {
                            let plan = decode::<HostPlan>(kv).or_else(|| {
                                old.get(network).and_then(|p| p.hosts.get(host)).cloned()
                            });
                            if let Some(plan) = plan {
                                parts
                                    .entry(network)
                                    .or_default()
                                    .1
                                    .push((host.to_owned(), plan));
                            }
                        }
                    }
                }
                let live = std::mem::take(&mut self.networks);
                for (network, (meta, hosts)) in parts {
                    let meta = meta.unwrap_or_else(|| PlanMeta {
                        network: network.to_owned(),
                        ..PlanMeta::default()
                    });
                    if let Some(subnets) = live.get(network) {
                        // Kept if the re-listed spec is unreadable (see put_meta).
                        self.networks.insert(network.to_owned(), subnets.clone());
                    }
                    self.put_meta(network, &meta);
                    self.plans
                        .insert(network.to_owned(), Plan::assemble(meta, hosts));
                }
                for gone in live.keys().filter(|n| !self.plans.contains_key(*n)) {
                    info!(network = %gone, "network's plan deleted; its routes and rules go");
                }
                // Everything changed as far as the caller knows; a re-list is rare.
                let networks: BTreeSet<String> =
                    old.into_keys().chain(self.plans.keys().cloned()).collect();
                networks.into_iter().map(PlanChange::Network).collect()
            }
            WatchUpdate::Events(events) => events
                .iter()
                .filter_map(|e| self.apply_plan_event(e))
                .collect(),
        }
    }

    fn apply_plan_event(&mut self, event: &WatchEvent) -> Option<PlanChange> {
        let key = parse_plan_key(event.key())?;
        let (network, host) = match key {
            PlanKey::Meta { network } => {
                let changed = match event {
                    WatchEvent::Put(kv) => {
                        let meta = decode::<PlanMeta>(kv)?;
                        let changed = self.put_meta(network, &meta);
                        let plan = self.plan_mut(network);
                        let hosts = std::mem::take(&mut plan.hosts);
                        *plan = Plan::assemble(meta, hosts);
                        changed
                    }
                    // The planner deleted the network's plan (the network was
                    // deleted): its rules and routes go. The host keys' deletes
                    // come in the same batch.
                    WatchEvent::Delete { .. } => {
                        let was_live = self.networks.remove(network).is_some();
                        if was_live {
                            info!(network = %network, "network's plan deleted; its routes and rules go");
                        }
                        was_live
                    }
                };
                return changed.then(|| PlanChange::Network(network.to_owned()));
            }
            PlanKey::Host { network, host } => (network, host),
        };
        let before = match event {
            WatchEvent::Put(kv) => {
                let entry = decode::<HostPlan>(kv)?;
                let plan = self.plan_mut(network);
                log_host_change(network, host, plan.hosts.get(host), &entry);
                plan.hosts.insert(host.to_owned(), entry)
            }
            WatchEvent::Delete { .. } => {
                let plan = self.plans.get_mut(network)?;
                let before = plan.hosts.remove(host)?;
                info!(network = %network, host = %host, "host left the plan");
                if plan.hosts.is_empty() && plan.interfaces.is_empty() {
                    self.plans.remove(network);
                }
                Some(before)
            }
        };
        Some(PlanChange::Host {
            network: network.to_owned(),
            host: host.to_owned(),
            before,
        })
    }

    /// The routes `me` needs to reach `peer` (given as its plan entry) in
    /// `network`: `desired_routes` of a plan holding just the two, so the rule
    /// stays the core's. For updating a table when one peer changed, without
    /// recomputing the routes to every other peer.
    pub fn routes_to(
        &self,
        network: &str,
        me: &str,
        peer: &str,
        entry: Option<&HostPlan>,
        table: u32,
    ) -> Vec<Route> {
        let (Some(plan), Some(entry)) = (self.plans.get(network), entry) else {
            return Vec::new();
        };
        let Some(mine) = plan.hosts.get(me) else {
            return Vec::new();
        };
        let pair = Plan {
            network: network.to_owned(),
            hosts: [
                (me.to_owned(), mine.clone()),
                (peer.to_owned(), entry.clone()),
            ]
            .into(),
            ..Plan::default()
        };
        self.via_leaves(network, plan, me, desired_routes(&pair, me, table))
    }

    fn plan_mut(&mut self, network: &str) -> &mut Plan {
        self.plans
            .entry(network.to_owned())
            .or_insert_with(|| Plan {
                network: network.to_owned(),
                ..Plan::default()
            })
    }

    /// Every table some network's routes go to, with those networks.
    pub fn tables(&self, mode: RoutingMode) -> BTreeMap<u32, Vec<&str>> {
        let mut out: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for name in self.networks.keys() {
            out.entry(mode.table(name)).or_default().push(name);
        }
        for table in self.source_tables() {
            out.entry(table).or_default().push(SOURCE_ROUTING);
        }
        out
    }

    /// What table `table` should hold for host `me`: the routes of every existing
    /// network that lives there (several share the main table, and two names may
    /// hash to one table).
    pub fn desired(&self, me: &str, table: u32, mode: RoutingMode) -> Vec<Route> {
        if is_source_table(table) {
            return self.source_routes_of(table);
        }
        let mut out = Vec::new();
        let mut parts = 0;
        for name in self.networks.keys().filter(|n| mode.table(n) == table) {
            if let Some(plan) = self.plans.get(name) {
                out.extend(self.via_leaves(name, plan, me, desired_routes(plan, me, table)));
                parts += 1;
            }
        }
        if parts > 1 {
            out.sort_by_key(|r| r.dst);
        }
        out
    }

    /// The `from <subnet>` rules the networks need (none in main-table mode),
    /// and the routed networks' `from <link address>` source rules (in
    /// either mode).
    pub fn rules(&self, mode: RoutingMode, priority: u32) -> BTreeSet<PolicyRule> {
        let mut rules: BTreeSet<PolicyRule> = self.routed.source_rules.clone();
        if !mode.needs_rule() {
            return rules;
        }
        rules.extend(self.networks.iter().flat_map(|(name, subnets)| {
            subnets.iter().map(move |&from| PolicyRule {
                from,
                table: mode.table(name),
                priority,
            })
        }));
        rules
    }

    /// The network whose subnet holds `dst`, for labelling a route in logs and
    /// metrics when several networks share a table.
    pub fn network_of(&self, dst: &IpNet) -> Option<&str> {
        self.networks
            .iter()
            .find(|(_, subnets)| subnets.iter().any(|s| s.contains(dst)))
            .map(|(n, _)| n.as_str())
    }
}

fn decode<T: serde::de::DeserializeOwned>(kv: &KeyValue) -> Option<T> {
    kv.decode_json()
        .map_err(|e| warn!(key = %kv.key, error = %e, "ignoring an unreadable plan key"))
        .ok()
}

fn log_host_change(network: &str, host: &str, old: Option<&HostPlan>, new: &HostPlan) {
    match (old, new.departed_at) {
        (None, _) => debug!(network, host, index = new.index, "host joined the plan"),
        (Some(o), Some(_)) if o.departed_at.is_none() => {
            info!(
                network,
                host,
                index = new.index,
                "host departed; routes to it go"
            )
        }
        (Some(o), None) if o.departed_at.is_some() => {
            info!(
                network,
                host,
                index = new.index,
                "host is back; routes to it return"
            )
        }
        _ => debug!(network, host, index = new.index, "host plan changed"),
    }
}

#[cfg(test)]
mod tests;
