//! The kernel port in memory: routing tables, a policy rule list and links
//! (devices and gateway shims) with the semantics the reconcile relies on, so
//! the daemon's loop and other crates' tests run without root.
//!
//! Ownership is a flag per route and rule instead of a protocol number; what
//! the port writes is flagged as ours, and what the test puts there as someone
//! else ([`MemoryRoutes::with_foreign`], [`MemoryRoutes::add_foreign_rule`]) is
//! not. Links are ours by name and alias, as in the kernel
//! ([`super::shims::is_ours`]). It passes the same conformance suite as the netlink implementation, so
//! a test that is green here does not rely on a kinder kernel than Linux.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::{ActualRoute, IfName, Route, RouteDiff};

use super::rail_links::ifacer_alias;
use super::shims::is_ours;
use super::{
    ApplyReport, Ensured, GatewayShims, LinkKind, LinkStep, PolicyRule, PolicyRules, RailLink,
    RailLinks, RouteFailure, RouteOp, RouteTable, Shim, ShimState, StepOutcome,
};
use crate::error::Result;

/// [`RouteTable`] and [`PolicyRules`] in memory, as one kernel shared by
/// everyone holding it.
#[derive(Debug, Default)]
pub struct MemoryRoutes {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    routes: Vec<ActualRoute>,
    /// Device name -> error every add or replace through it gets.
    refused: HashMap<String, String>,
    /// Policy rules and whether railyard owns them.
    rules: Vec<(PolicyRule, bool)>,
    /// Links by name: the devices a test put there and the shims.
    links: BTreeMap<IfName, MemoryLink>,
}

/// A link of the in-memory kernel, as `ip -d addr show` would describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryLink {
    /// The macvlan's parent; `None` for a device of its own (a NIC).
    pub parent: Option<IfName>,
    /// A macvlan in bridge mode (what a shim is); false for anything else.
    pub macvlan_bridge: bool,
    /// An 802.1Q VLAN of `parent` with this id.
    pub vlan_id: Option<u16>,
    /// A bond.
    pub bond: bool,
    /// The bond it is enslaved to.
    pub controller: Option<IfName>,
    /// A default route leaves through it.
    pub default_route: bool,
    pub mac: [u8; 6],
    pub alias: Option<String>,
    pub up: bool,
    /// Global addresses in the order they were added.
    pub addresses: Vec<IpNet>,
}

impl MemoryRoutes {
    /// A table already holding routes someone else (another protocol) put there.
    pub fn with_foreign(routes: impl IntoIterator<Item = Route>) -> Self {
        let me = MemoryRoutes::default();
        for route in routes {
            me.add_foreign_route(route);
        }
        me
    }

    /// A route someone else (another protocol) adds, like `ip route add ... proto
    /// static`. No check: the kernel would refuse a duplicate, a test should not
    /// write one.
    pub fn add_foreign_route(&self, route: Route) {
        self.lock().routes.push(ActualRoute {
            route,
            owned: false,
        });
    }

    /// Makes adds and replaces through `dev` fail, as the kernel does for a
    /// device that is administratively down.
    pub fn refuse_dev(&self, dev: &str, error: &str) {
        self.lock().refused.insert(dev.to_owned(), error.to_owned());
    }

    /// Undoes [`MemoryRoutes::refuse_dev`]: the device came up.
    pub fn accept_dev(&self, dev: &str) {
        self.lock().refused.remove(dev);
    }

    /// Removes a route behind the daemon's back, like `ip route del`.
    pub fn remove(&self, route: &Route) {
        self.lock().routes.retain(|a| a.route != *route);
    }

    /// Number of routes held, ours and foreign.
    pub fn len(&self) -> usize {
        self.lock().routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot(&self) -> Vec<ActualRoute> {
        self.lock().routes.clone()
    }

    /// An operator's rule, which railyard must leave alone.
    pub fn add_foreign_rule(&self, rule: PolicyRule) {
        self.lock().rules.push((rule, false));
    }

    /// Every rule, ours and foreign.
    pub fn rules(&self) -> Vec<PolicyRule> {
        self.lock().rules.iter().map(|(r, _)| *r).collect()
    }

    /// A device of its own (a NIC), up, with no addresses: a parent for shims.
    pub fn add_device(&self, name: IfName) {
        self.lock().links.insert(
            name,
            MemoryLink {
                parent: None,
                mac: [0; 6],
                up: true,
                ..MemoryLink::default()
            },
        );
    }

    /// `ip addr add ADDR dev NAME` (someone else's, or the host's own).
    pub fn add_address(&self, name: &IfName, addr: IpNet) {
        if let Some(l) = self.lock().links.get_mut(name) {
            if !l.addresses.contains(&addr) {
                l.addresses.push(addr);
            }
        }
    }

    /// `ip route add default dev NAME` (or its removal).
    pub fn set_default_route(&self, name: &IfName, on: bool) {
        if let Some(l) = self.lock().links.get_mut(name) {
            l.default_route = on;
        }
    }

    /// Someone else's link of a kind: `ip link add NAME link PARENT type vlan id
    /// ID` (with `vlan: Some((parent, id))`) or `ip link add NAME type bond`
    /// (`bond`), or a plain device when neither; down, no alias.
    pub fn add_foreign_kind(&self, name: IfName, vlan: Option<(IfName, u16)>, bond: bool) {
        self.lock().links.insert(
            name,
            MemoryLink {
                parent: vlan.map(|(p, _)| p),
                vlan_id: vlan.map(|(_, id)| id),
                bond,
                ..MemoryLink::default()
            },
        );
    }

    /// Someone else's link: a bridge-mode macvlan on `parent`, down, like `ip
    /// link add NAME link PARENT type macvlan mode bridge` (then `ip link set
    /// NAME alias ALIAS` when given).
    pub fn add_foreign_link(&self, name: IfName, parent: IfName, alias: Option<&str>) {
        self.lock().links.insert(
            name,
            MemoryLink {
                parent: Some(parent),
                macvlan_bridge: true,
                mac: [0x02, 0, 0, 0, 0, 0x01],
                alias: alias.map(str::to_owned),
                ..MemoryLink::default()
            },
        );
    }

    /// `ip link del NAME`, whoever owns it; its macvlan and VLAN children go
    /// with it and its slaves are released, as in the kernel.
    pub fn delete_link(&self, name: &IfName) {
        let mut st = self.lock();
        st.links.remove(name);
        st.links.retain(|_, l| l.parent.as_ref() != Some(name));
        for l in st.links.values_mut() {
            if l.controller.as_ref() == Some(name) {
                l.controller = None;
            }
        }
    }

    /// `ip link set NAME up|down`.
    pub fn set_link_up(&self, name: &IfName, up: bool) {
        if let Some(l) = self.lock().links.get_mut(name) {
            l.up = up;
        }
    }

    /// `ip addr del ADDR dev NAME`.
    pub fn delete_address(&self, name: &IfName, addr: IpNet) {
        if let Some(l) = self.lock().links.get_mut(name) {
            l.addresses.retain(|a| *a != addr);
        }
    }

    /// The link `name` as it is, whoever owns it.
    pub fn link(&self, name: &IfName) -> Option<MemoryLink> {
        self.lock().links.get(name).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the Vec half-written; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn same_key(a: &Route, b: &Route) -> bool {
    key(a) == key(b)
}

fn key(r: &Route) -> (u32, IpNet) {
    (r.table, r.dst)
}

#[async_trait]
impl RouteTable for MemoryRoutes {
    async fn routes(&self, tables: &[u32]) -> Result<Vec<ActualRoute>> {
        Ok(self
            .lock()
            .routes
            .iter()
            .filter(|a| tables.contains(&a.route.table))
            .cloned()
            .collect())
    }

    async fn apply(&self, diff: &RouteDiff) -> Result<ApplyReport> {
        let mut st = self.lock();
        let mut report = ApplyReport::default();
        for r in &diff.delete {
            if let Some(i) = st.routes.iter().position(|a| a.owned && a.route == *r) {
                st.routes.remove(i);
            }
            report.deleted += 1;
        }
        let refused = |st: &State, op, r: &Route| {
            st.refused.get(r.dev.as_ref()).map(|e| RouteFailure {
                op,
                route: r.clone(),
                error: e.clone(),
            })
        };
        for r in &diff.replace {
            if let Some(f) = refused(&st, RouteOp::Replace, r) {
                report.failures.push(f);
                continue;
            }
            // Like NLM_F_REPLACE: the first route at that key gives way.
            if let Some(i) = st.routes.iter().position(|a| same_key(&a.route, r)) {
                st.routes.remove(i);
            }
            st.routes.push(ActualRoute {
                route: r.clone(),
                owned: true,
            });
            report.replaced += 1;
        }
        // A set of the keys taken, so a bulk add (a first reconcile of thousands)
        // is not quadratic; a few adds just scan.
        let mut taken: Option<HashSet<(u32, IpNet)>> =
            (diff.add.len() > 32).then(|| st.routes.iter().map(|a| key(&a.route)).collect());
        for r in &diff.add {
            let exists = match &mut taken {
                Some(set) => !set.insert(key(r)),
                None => st.routes.iter().any(|a| same_key(&a.route, r)),
            };
            if let Some(f) = refused(&st, RouteOp::Add, r) {
                report.failures.push(f);
            } else if exists {
                report.conflicts.push(r.clone());
            } else {
                st.routes.push(ActualRoute {
                    route: r.clone(),
                    owned: true,
                });
                report.added += 1;
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl PolicyRules for MemoryRoutes {
    async fn owned_rules(&self) -> Result<Vec<PolicyRule>> {
        let mut out: Vec<PolicyRule> = self
            .lock()
            .rules
            .iter()
            .filter(|(_, owned)| *owned)
            .map(|(r, _)| *r)
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    async fn ensure_policy_rule(&self, rule: PolicyRule) -> Result<bool> {
        let mut st = self.lock();
        if st.rules.iter().any(|(r, _)| *r == rule) {
            return Ok(false);
        }
        st.rules.push((rule, true));
        Ok(true)
    }

    async fn remove_policy_rule(&self, rule: PolicyRule) -> Result<bool> {
        let mut st = self.lock();
        let before = st.rules.len();
        st.rules.retain(|(r, owned)| !(*owned && *r == rule));
        Ok(st.rules.len() != before)
    }
}

#[async_trait]
impl GatewayShims for MemoryRoutes {
    async fn owned_shims(&self) -> Result<Vec<ShimState>> {
        Ok(self
            .lock()
            .links
            .iter()
            .filter(|(name, l)| is_ours(name, l.alias.as_deref()))
            .map(|(name, l)| {
                let mut addresses = l.addresses.clone();
                addresses.sort_unstable();
                ShimState {
                    name: *name,
                    parent: l.parent.filter(|_| l.macvlan_bridge),
                    mac: l.mac,
                    up: l.up,
                    addresses,
                }
            })
            .collect())
    }

    async fn ensure_shim(&self, shim: &Shim) -> Result<Ensured> {
        let mut st = self.lock();
        if !st.links.contains_key(&shim.parent) {
            return Ok(Ensured::Refused(format!(
                "parent device {:?} of shim {:?} does not exist",
                shim.parent.as_ref(),
                shim.name.as_ref()
            )));
        }
        let wanted = MemoryLink {
            parent: Some(shim.parent),
            macvlan_bridge: true,
            mac: shim.mac,
            alias: Some(shim.alias()),
            up: true,
            addresses: shim.addresses.clone(),
            ..MemoryLink::default()
        };
        let Some(link) = st.links.get_mut(&shim.name) else {
            st.links.insert(shim.name, wanted);
            return Ok(Ensured::Created);
        };
        if !is_ours(&shim.name, link.alias.as_deref()) {
            return Ok(Ensured::Conflict);
        }
        let mut have = link.addresses.clone();
        have.sort_unstable();
        let same = link.parent == wanted.parent
            && link.macvlan_bridge
            && link.mac == shim.mac
            && link.alias == wanted.alias
            && link.up
            && have == shim.addresses;
        if same {
            return Ok(Ensured::Unchanged);
        }
        *link = wanted;
        Ok(Ensured::Repaired)
    }

    async fn remove_shim(&self, name: &IfName) -> Result<bool> {
        let mut st = self.lock();
        match st.links.get(name) {
            Some(l) if is_ours(name, l.alias.as_deref()) => {
                st.links.remove(name);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl RailLinks for MemoryRoutes {
    async fn rail_links(&self) -> Result<Vec<RailLink>> {
        Ok(self
            .lock()
            .links
            .iter()
            .map(|(name, l)| {
                let mut addresses = l.addresses.clone();
                addresses.sort_unstable();
                RailLink {
                    name: *name,
                    kind: match (l.vlan_id, l.bond) {
                        (Some(id), _) => LinkKind::Vlan {
                            parent: l.parent,
                            id,
                        },
                        (None, true) => LinkKind::Bond,
                        (None, false) => LinkKind::Other,
                    },
                    controller: l.controller,
                    alias: l.alias.clone(),
                    up: l.up,
                    addresses,
                    default_route: l.default_route,
                }
            })
            .collect())
    }

    async fn apply_link_step(&self, step: &LinkStep) -> Result<StepOutcome> {
        let mut st = self.lock();
        let refused = |why: String| Ok(StepOutcome::Refused(why));
        match step {
            LinkStep::CreateBond { name, network, .. } => {
                if st.links.contains_key(name) {
                    return refused(format!("a link named {:?} exists", name.as_str()));
                }
                st.links.insert(
                    *name,
                    MemoryLink {
                        bond: true,
                        alias: Some(ifacer_alias(network)),
                        ..MemoryLink::default()
                    },
                );
            }
            LinkStep::Enslave { slave, bond } => {
                if !st.links.get(bond).is_some_and(|b| b.bond) {
                    return refused(format!("bond {:?} does not exist", bond.as_str()));
                }
                let Some(l) = st.links.get_mut(slave) else {
                    return refused(format!("slave {:?} does not exist", slave.as_str()));
                };
                match l.controller {
                    Some(c) if c == *bond => {}
                    Some(c) => {
                        return refused(format!(
                            "{:?} is enslaved to {:?} already",
                            slave.as_str(),
                            c.as_str()
                        ))
                    }
                    None => {
                        l.controller = Some(*bond);
                        // Down and up again: the kernel drops a link's IPv6
                        // addresses when it goes down.
                        l.addresses.retain(|a| a.addr().is_ipv4());
                        l.up = true;
                    }
                }
            }
            LinkStep::CreateVlan {
                name,
                parent,
                id,
                network,
            } => {
                if !st.links.contains_key(parent) {
                    return refused(format!("parent {:?} does not exist", parent.as_str()));
                }
                if st.links.contains_key(name) {
                    return refused(format!("a link named {:?} exists", name.as_str()));
                }
                st.links.insert(
                    *name,
                    MemoryLink {
                        parent: Some(*parent),
                        vlan_id: Some(*id),
                        alias: Some(ifacer_alias(network)),
                        ..MemoryLink::default()
                    },
                );
            }
            LinkStep::MoveAddress { address, from, to } => {
                let Some(l) = st.links.get_mut(to) else {
                    return refused(format!("{:?} does not exist", to.as_str()));
                };
                if !l.addresses.contains(address) {
                    l.addresses.push(*address);
                }
                if let Some(l) = st.links.get_mut(from) {
                    l.addresses.retain(|a| a != address);
                }
            }
            LinkStep::SetUp { name } => {
                let Some(l) = st.links.get_mut(name) else {
                    return refused(format!("{:?} does not exist", name.as_str()));
                };
                l.up = true;
            }
        }
        Ok(StepOutcome::Done)
    }
}
