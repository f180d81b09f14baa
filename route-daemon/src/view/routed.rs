//! Routed rails in the view (`docs/design/routed-rails.md`): which networks
//! are routed, this host's link addresses, and from them what a routed
//! network asks of this host beyond an l2 one: routes through its own leaves
//! instead of the peers' NIC addresses, per-NIC source tables and rules, and
//! BIRD's configuration. The decisions are the core's (`railyard_core::fabric`)
//! and the renderer's; this only feeds them the view's plans.
//!
//! An l2 network never gets here: [`ClusterView::via_leaves`] returns its
//! routes untouched, so everything railyard did before is byte-identical.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use railyard_core::fabric::{
    is_source_table, routed_links, router_id, sessions, source_routes, source_tables, Fabric,
    LinkProblem, RoutedLink, RoutedNetwork, SessionConflict,
};
use railyard_core::{Block, IfName, Network, Plan, Route};
use tracing::warn;

use super::ClusterView;
use crate::bgp::render;
use crate::kernel::PolicyRule;

/// The name source tables go by where the loop labels tables by network
/// (logs, metrics): they belong to no one network.
pub const SOURCE_ROUTING: &str = "source-routing";

/// What the routed networks ask of this host besides their routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutedHost {
    /// The host's links under routed blocks, and the blocks that have none.
    pub links: Vec<RoutedLink>,
    pub problems: Vec<LinkProblem>,
    /// Source tables' default routes (via each NIC's leaf), sorted.
    pub source_routes: Vec<Route>,
    /// `from <link address> lookup <source table>`, one per link address.
    pub source_rules: BTreeSet<PolicyRule>,
    /// BIRD's whole configuration, and the networks it could not announce.
    pub bird: String,
    pub conflicts: Vec<SessionConflict>,
}

impl ClusterView {
    /// Records `network`'s fabric from its accepted spec; true when it changed.
    pub(super) fn put_fabric(&mut self, network: &str, net: &Network) -> bool {
        // Validated by the planner, and again by `validate` just before.
        let fabric = net.spec.fabric().unwrap_or_default();
        let old = self.fabrics.insert(network.to_owned(), fabric);
        old.is_some_and(|o| o != fabric)
    }

    /// The fabric of a live network (l2 when unknown).
    pub fn fabric(&self, network: &str) -> Fabric {
        self.fabrics.get(network).copied().unwrap_or_default()
    }

    /// Whether any live network is routed: only then does the host need its
    /// link addresses, source tables and BIRD.
    pub fn any_routed(&self) -> bool {
        self.networks.keys().any(|n| self.fabric(n).is_routed())
    }

    /// Takes this host's addresses (every NIC's global addresses with their
    /// prefixes, from the kernel's link listing); true when they changed.
    /// Routed networks' routes follow them (their leaves are the other ends).
    pub fn set_addresses(&mut self, mut addresses: Vec<(IfName, IpNet)>) -> bool {
        addresses.sort();
        addresses.dedup();
        if addresses == self.addresses {
            return false;
        }
        self.addresses = addresses;
        true
    }

    /// This host's blocks in the routed networks' plans (none if it departed).
    fn routed_blocks(&self, me: &str) -> Vec<Block> {
        self.networks
            .keys()
            .filter(|n| self.fabric(n).is_routed())
            .filter_map(|n| self.plans.get(n)?.hosts.get(me))
            .filter(|h| h.departed_at.is_none())
            .flat_map(|h| h.blocks.iter().cloned())
            .collect()
    }

    /// `routes` of `network` (from `desired_routes` on `plan`) as this host
    /// sends them: unchanged on an l2 network; through its own leaf on a
    /// routed one, where a route whose NIC has no usable link is left out
    /// (a peer's NIC address is not on-link there, and the kernel would
    /// refuse it anyway). The problems are reported by [`Self::routed_host`].
    pub(super) fn via_leaves(
        &self,
        network: &str,
        plan: &Plan,
        me: &str,
        routes: Vec<Route>,
    ) -> Vec<Route> {
        let fabric = self.fabric(network);
        let (via, dropped) =
            railyard_core::fabric::own_leaf_routes(plan, fabric, me, routes, &self.addresses);
        if !dropped.is_empty() {
            // Logged on every pass, as conflicts are: until the NIC holds a
            // usable link address, this rail reaches no peer from here.
            warn!(
                network,
                dropped = dropped.len(),
                "routed network: routes whose NIC has no link to a leaf left out"
            );
        }
        via
    }

    /// Everything the routed networks ask of host `me` besides their routes.
    /// `owned_rules` are the policy rules of ours the kernel holds: the source
    /// rules among them keep their tables (`source_tables`), so ids survive a
    /// restart. With no routed network this is empty and BIRD announces
    /// nothing.
    pub fn routed_host(&self, me: &str, owned_rules: &[PolicyRule], priority: u32) -> RoutedHost {
        let (links, problems) = routed_links(&self.routed_blocks(me), &self.addresses);
        let existing: Vec<_> = owned_rules
            .iter()
            .filter(|r| is_source_table(r.table))
            .map(|r| (r.from.addr(), r.table))
            .collect();
        let tables: BTreeMap<IfName, u32> = source_tables(&existing, &links);
        let (source_routes, rules) = source_routes(&links, &tables);
        let source_rules = rules
            .into_iter()
            .map(|r| PolicyRule {
                from: r.from,
                table: r.table,
                priority,
            })
            .collect();
        let networks: Vec<RoutedNetwork<'_>> = self
            .networks
            .keys()
            .filter_map(|n| match (self.fabric(n), self.plans.get(n)) {
                (Fabric::Routed(bgp), Some(plan)) => Some(RoutedNetwork { name: n, bgp, plan }),
                _ => None,
            })
            .collect();
        let (sessions, conflicts) = sessions(&networks, me, &links);
        let index = self
            .plans
            .values()
            .find_map(|p| p.hosts.get(me))
            .map_or(0, |h| h.index);
        let id = router_id(&sessions, index);
        RoutedHost {
            links,
            problems,
            source_routes,
            source_rules,
            bird: render(id, &sessions),
            conflicts,
        }
    }
}

/// What a [`ClusterView::refresh_routed`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutedChange {
    /// Source tables whose routes changed (or that are gone).
    pub tables: BTreeSet<u32>,
    pub rules: bool,
    pub bird: bool,
}

impl ClusterView {
    /// Recomputes and keeps what the routed networks ask of `me` besides
    /// their routes (see [`Self::routed_host`]). `owned_rules` are the rules
    /// of ours just read from the kernel, if they were; otherwise the source
    /// rules of the last refresh stand for them, so table ids hold between
    /// reads.
    pub fn refresh_routed(
        &mut self,
        me: &str,
        owned_rules: Option<&[PolicyRule]>,
        priority: u32,
    ) -> RoutedChange {
        let kept: Vec<PolicyRule> = match owned_rules {
            Some(rules) => rules.to_vec(),
            None => self.routed.source_rules.iter().copied().collect(),
        };
        let new = self.routed_host(me, &kept, priority);
        let old = std::mem::replace(&mut self.routed, new);
        let by_table = |h: &RoutedHost| {
            let mut m: BTreeMap<u32, Vec<Route>> = BTreeMap::new();
            for r in &h.source_routes {
                m.entry(r.table).or_default().push(r.clone());
            }
            m
        };
        let (before, after) = (by_table(&old), by_table(&self.routed));
        let tables = before
            .keys()
            .chain(after.keys())
            .filter(|t| before.get(t) != after.get(t))
            .copied()
            .collect();
        RoutedChange {
            tables,
            rules: old.source_rules != self.routed.source_rules,
            bird: old.bird != self.routed.bird,
        }
    }

    /// What the last [`Self::refresh_routed`] found.
    pub fn routed(&self) -> &RoutedHost {
        &self.routed
    }

    /// The source tables in use, for the loop's set of managed tables.
    pub fn source_tables(&self) -> BTreeSet<u32> {
        self.routed.source_routes.iter().map(|r| r.table).collect()
    }

    /// What source table `table` should hold.
    pub(super) fn source_routes_of(&self, table: u32) -> Vec<Route> {
        self.routed
            .source_routes
            .iter()
            .filter(|r| r.table == table)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests;
