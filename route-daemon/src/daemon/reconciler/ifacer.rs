//! The rail interfaces networks ask for in `spec.ifacer` (VLAN sub-interfaces
//! and bonds, as Spiderpool's ifacer makes them): which each network wants
//! (folded from the plan metas, [`IfacerSpecs`]) and the steps that make this
//! host's links so ([`plan_ifacers`]). Pure: the loop lists the links through
//! the kernel port ([`crate::kernel::RailLinks`]) and applies the steps
//! (`rail_links.rs`).
//!
//! # Why the address moves
//!
//! In railyard's L3 model a rail NIC is the link holding the host's address in
//! one of the network's `masterNets`: discovery registers that link, the plan
//! puts the host's block on it, and peers route to the block via that address.
//! A VLAN or bond next to the address would carry nothing. So after making the
//! link, the address moves onto it (added there first, then deleted from the
//! old link, so the host always holds it); discovery sees the rail NIC under
//! its new name, and the planner keeps the block on the same (host, rail).
//!
//! # Safety
//!
//! A listed slave holding any global address outside the network's
//! `masterNets`, or carrying a default route, is refused and never enslaved: it
//! may be the management NIC, and enslaving it would cut the host off. A link
//! of a wanted name that is of the wrong kind (or a VLAN of another parent or
//! id) is a conflict: reported, never changed. Nothing is ever deleted.
//!
//! # Order
//!
//! Bonds first, so that a network with both gets its VLAN on the bond. For a
//! bond: create it (down), move the slaves' rail addresses onto it, enslave
//! each slave (down, master, up: the bonding driver refuses a slave that is
//! up; moving first also keeps IPv6 addresses, which the kernel drops from a
//! link that goes down), bring it up. For a VLAN: create `<link>.<id>` on every
//! link holding a rail address, move the addresses, bring it up.
//!
//! Networks are taken in name order, and the first to ask for a bond name, a
//! slave or a link's VLAN wins; a later network asking differently gets a
//! problem (logged as a warning) and nothing of its request for that link.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use railyard_core::{Bond, IfName, Ifacer, PlanMeta, MAX_IFNAME};
use railyard_store::{KeyValue, WatchEvent, WatchUpdate};

use crate::kernel::{ifacer_alias, LinkKind, LinkStep, RailLink};
use crate::view::{parse_plan_key, PlanKey};

/// One network's ifacer with the masterNets that say which addresses are rail
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedIfacer {
    pub network: String,
    pub ifacer: Ifacer,
    pub master_nets: Vec<IpNet>,
}

impl WantedIfacer {
    fn is_rail_address(&self, a: &IpNet) -> bool {
        self.master_nets.iter().any(|n| n.contains(&a.addr()))
    }

    /// The addresses of a link (holding `addresses`) that are rail addresses
    /// and move with the rail: none unless it holds one in masterNets; then
    /// those, and its addresses of a family no masterNets entry has. masterNets
    /// name rails by one family (the planner makes a rail of every entry), so a
    /// dual-stack rail NIC's other address is known by the NIC it is on.
    fn rail_addresses(&self, addresses: &[IpNet]) -> Vec<IpNet> {
        if !addresses.iter().any(|a| self.is_rail_address(a)) {
            return Vec::new();
        }
        addresses
            .iter()
            .filter(|a| {
                self.is_rail_address(a)
                    || !self
                        .master_nets
                        .iter()
                        .any(|n| n.addr().is_ipv4() == a.addr().is_ipv4())
            })
            .copied()
            .collect()
    }
}

/// The steps for this host, in order, and what cannot be done (each a
/// sentence naming the links and networks, for a warning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfacerPlan {
    pub steps: Vec<LinkStep>,
    pub problems: Vec<String>,
}

/// The links as the steps leave them: the planner's picture while it plans
/// (later steps depend on earlier ones: a VLAN on a bond just made), and the
/// model the tests apply plans to. Follows the in-memory kernel
/// (`kernel::memory`), which passes the conformance suite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkModel(pub BTreeMap<IfName, RailLink>);

impl LinkModel {
    pub fn new(links: &[RailLink]) -> Self {
        LinkModel(links.iter().map(|l| (l.name, l.clone())).collect())
    }

    #[cfg(test)]
    pub fn links(&self) -> Vec<RailLink> {
        self.0.values().cloned().collect()
    }

    /// Applies `step` as the kernel would; a step the kernel would refuse
    /// changes nothing.
    pub fn apply(&mut self, step: &LinkStep) {
        let links = &mut self.0;
        match step {
            LinkStep::CreateBond { name, network, .. } => {
                links.entry(*name).or_insert_with(|| RailLink {
                    name: *name,
                    kind: LinkKind::Bond,
                    controller: None,
                    alias: Some(ifacer_alias(network)),
                    up: false,
                    addresses: Vec::new(),
                    default_route: false,
                });
            }
            LinkStep::CreateVlan {
                name,
                parent,
                id,
                network,
            } => {
                if links.contains_key(parent) {
                    links.entry(*name).or_insert_with(|| RailLink {
                        name: *name,
                        kind: LinkKind::Vlan {
                            parent: Some(*parent),
                            id: *id,
                        },
                        controller: None,
                        alias: Some(ifacer_alias(network)),
                        up: false,
                        addresses: Vec::new(),
                        default_route: false,
                    });
                }
            }
            LinkStep::Enslave { slave, bond } => {
                let is_bond = links.get(bond).is_some_and(|b| b.kind == LinkKind::Bond);
                if let Some(s) = links.get_mut(slave).filter(|_| is_bond) {
                    if s.controller.is_none() {
                        s.controller = Some(*bond);
                        s.addresses.retain(|a| a.addr().is_ipv4());
                        s.up = true;
                    }
                }
            }
            LinkStep::MoveAddress { address, from, to } => {
                if let Some(t) = links.get_mut(to) {
                    if !t.addresses.contains(address) {
                        t.addresses.push(*address);
                        t.addresses.sort_unstable();
                    }
                    if let Some(f) = links.get_mut(from) {
                        f.addresses.retain(|a| a != address);
                    }
                }
            }
            LinkStep::SetUp { name } => {
                if let Some(l) = links.get_mut(name) {
                    l.up = true;
                }
            }
        }
    }
}

/// Plans the steps that give this host the links `wanted` asks for, from the
/// links it has. Applying them (to the kernel or a [`LinkModel`]) and planning
/// again gives no steps: the plan reaches a fixed point.
pub fn plan_ifacers(wanted: &[WantedIfacer], links: &[RailLink]) -> IfacerPlan {
    let mut wanted: Vec<&WantedIfacer> = wanted.iter().collect();
    wanted.sort_by(|a, b| a.network.cmp(&b.network));
    let mut p = Planning {
        model: LinkModel::new(links),
        out: IfacerPlan::default(),
    };
    // Bond name and slave name -> (network, bond) that claimed it.
    let mut claims: BTreeMap<IfName, (&str, &Bond)> = BTreeMap::new();
    for w in &wanted {
        for bond in &w.ifacer.bonds {
            if let Some((first, theirs)) = claims.get(&bond.name) {
                if theirs.name == bond.name && *theirs == bond {
                    continue;
                }
                p.problem(format!(
                    "network {} asks for bond {} differently from network {first}, whose bond is kept",
                    w.network, bond.name
                ));
                continue;
            }
            let taken = bond
                .interfaces
                .iter()
                .find_map(|s| claims.get(s).map(|(n, b)| (*s, *n, b.name)));
            if let Some((slave, first, theirs)) = taken {
                p.problem(format!(
                    "network {} puts {slave} in bond {}, but network {first} uses it for bond {theirs}; left to {first}",
                    w.network, bond.name
                ));
                continue;
            }
            claims.insert(bond.name, (&w.network, bond));
            for s in &bond.interfaces {
                claims.insert(*s, (&w.network, bond));
            }
            p.bond(w, bond);
        }
    }
    let slaves: BTreeSet<IfName> = wanted
        .iter()
        .flat_map(|w| &w.ifacer.bonds)
        .flat_map(|b| b.interfaces.iter().copied())
        .collect();
    // The VLAN each link got, and from which network.
    let mut vlans: BTreeMap<IfName, (&str, u16)> = BTreeMap::new();
    let with_vlan: Vec<(&WantedIfacer, u16)> = wanted
        .iter()
        .filter_map(|w| Some((*w, w.ifacer.vlan_id?)))
        .collect();
    for (k, &(w, id)) in with_vlan.iter().enumerate() {
        // An address in the masterNets of several networks asking for a VLAN
        // is the first one's: otherwise each pass would move it back and forth.
        let first_owner = |l: &RailLink, a: &IpNet| {
            with_vlan[..k]
                .iter()
                .find(|(e, _)| e.rail_addresses(&l.addresses).contains(a))
                .map(|(e, eid)| (e.network.as_str(), *eid))
        };
        let mut mine: Vec<IpNet> = Vec::new();
        let mut holders: Vec<IfName> = Vec::new();
        // A link some bond lists as a slave is the bond's business: it was
        // refused (reported above) or will be enslaved, never a VLAN's parent.
        for l in p.model.0.values().filter(|l| !slaves.contains(&l.name)) {
            for a in &w.rail_addresses(&l.addresses) {
                match first_owner(l, a) {
                    None => {
                        mine.push(*a);
                        if holders.last() != Some(&l.name) {
                            holders.push(l.name);
                        }
                    }
                    Some((first, theirs)) if theirs != id => p.out.problems.push(format!(
                        "network {} asks for VLAN {id} for {a} on {}, but network {first} has VLAN {theirs} for it; left to {first}",
                        w.network, l.name
                    )),
                    Some(_) => {}
                }
            }
        }
        for holder in holders {
            p.vlan(w, id, holder, &mine, &mut vlans);
        }
    }
    p.out
}

struct Planning {
    model: LinkModel,
    out: IfacerPlan,
}

impl Planning {
    fn step(&mut self, step: LinkStep) {
        self.model.apply(&step);
        self.out.steps.push(step);
    }

    fn problem(&mut self, p: String) {
        self.out.problems.push(p);
    }

    fn link(&self, name: &IfName) -> Option<&RailLink> {
        self.model.0.get(name)
    }

    /// Moves `from`'s addresses that `moves` says to move to `to`.
    fn move_addresses(&mut self, from: IfName, to: IfName, moves: impl Fn(&IpNet) -> bool) {
        let moving: Vec<IpNet> = self
            .link(&from)
            .map(|l| l.addresses.iter().filter(|a| moves(a)).copied().collect())
            .unwrap_or_default();
        for address in moving {
            self.step(LinkStep::MoveAddress { address, from, to });
        }
    }

    fn bond(&mut self, w: &WantedIfacer, bond: &Bond) {
        let name = bond.name;
        match self.link(&name) {
            Some(l) if l.kind != LinkKind::Bond => {
                self.problem(format!(
                    "network {}: link {name} exists and is not a bond; left alone (a conflict for an operator to resolve)",
                    w.network
                ));
                return;
            }
            Some(_) => {}
            None => self.step(LinkStep::CreateBond {
                name,
                mode: bond.mode,
                options: bond.options,
                network: w.network.clone(),
            }),
        }
        for &slave in &bond.interfaces {
            let Some(s) = self.link(&slave).cloned() else {
                self.problem(format!(
                    "network {}: slave {slave} of bond {name} does not exist",
                    w.network
                ));
                continue;
            };
            match s.controller {
                Some(c) if c == name => {
                    // Enslaved already; an address someone put back on it goes
                    // to the bond again.
                    let rail = w.rail_addresses(&s.addresses);
                    self.move_addresses(slave, name, |a| rail.contains(a));
                    if !s.up {
                        self.step(LinkStep::SetUp { name: slave });
                    }
                    continue;
                }
                Some(c) => {
                    self.problem(format!(
                        "network {}: {slave} is enslaved to {c}, not to bond {name}; left alone",
                        w.network
                    ));
                    continue;
                }
                None => {}
            }
            let rail = w.rail_addresses(&s.addresses);
            let foreign: Vec<String> = s
                .addresses
                .iter()
                .filter(|a| !rail.contains(a))
                .map(ToString::to_string)
                .collect();
            if !foreign.is_empty() {
                self.problem(format!(
                    "network {}: refusing to enslave {slave} to bond {name}: it holds {} outside spec.masterNets (the management NIC?)",
                    w.network,
                    foreign.join(", ")
                ));
                continue;
            }
            if s.default_route {
                self.problem(format!(
                    "network {}: refusing to enslave {slave} to bond {name}: the host's default route leaves through it (the management NIC?)",
                    w.network
                ));
                continue;
            }
            if s.kind == LinkKind::Bond {
                self.problem(format!(
                    "network {}: refusing to enslave {slave} to bond {name}: it is a bond itself",
                    w.network
                ));
                continue;
            }
            self.move_addresses(slave, name, |a| rail.contains(a));
            self.step(LinkStep::Enslave { slave, bond: name });
        }
        if self.link(&name).is_some_and(|b| !b.up) {
            self.step(LinkStep::SetUp { name });
        }
    }

    fn vlan<'w>(
        &mut self,
        w: &'w WantedIfacer,
        id: u16,
        holder: IfName,
        mine: &[IpNet],
        vlans: &mut BTreeMap<IfName, (&'w str, u16)>,
    ) {
        let Some(h) = self.link(&holder).cloned() else {
            return;
        };
        // The base the VLAN goes on: the holder itself; or, when the holder is
        // a VLAN of that id (done) or one of ours of another id (the spec's
        // vlanID changed), its parent.
        let done = matches!(h.kind, LinkKind::Vlan { id: have, .. } if have == id);
        let base = match h.kind {
            LinkKind::Vlan {
                parent: Some(parent),
                ..
            } if done || h.ours() => parent,
            _ => holder,
        };
        if h.controller.is_some() && !done {
            self.problem(format!(
                "network {}: {holder} holds a rail address but is enslaved to {}; no VLAN made on it",
                w.network,
                h.controller.map(|c| c.to_string()).unwrap_or_default()
            ));
            return;
        }
        // Claimed also when done, so a later network's other id stays refused
        // on every pass, not only on the one that made the VLAN.
        match vlans.get(&base) {
            Some((first, theirs)) if *theirs != id => {
                self.problem(format!(
                    "network {} asks for VLAN {id} on {base}, but network {first} has VLAN {theirs} there; left to {first}",
                    w.network
                ));
                return;
            }
            Some(_) => {}
            None => {
                vlans.insert(base, (&w.network, id));
            }
        }
        if done {
            if h.ours() && !h.up {
                self.step(LinkStep::SetUp { name: holder });
            }
            return;
        }
        let text = format!("{base}.{id}");
        if text.len() > MAX_IFNAME {
            self.problem(format!(
                "network {}: the VLAN name {text:?} is longer than {MAX_IFNAME} bytes; no VLAN made on {base} (rename the NIC)",
                w.network
            ));
            return;
        }
        let Ok(name) = IfName::new(&text) else {
            self.problem(format!(
                "network {}: {text:?} is not a valid interface name",
                w.network
            ));
            return;
        };
        match self.link(&name) {
            Some(v)
                if v.kind
                    == LinkKind::Vlan {
                        parent: Some(base),
                        id,
                    } => {}
            Some(_) => {
                self.problem(format!(
                    "network {}: link {name} exists and is not VLAN {id} on {base}; left alone (a conflict for an operator to resolve)",
                    w.network
                ));
                return;
            }
            None => {
                if self.link(&base).is_none() {
                    return;
                }
                self.step(LinkStep::CreateVlan {
                    name,
                    parent: base,
                    id,
                    network: w.network.clone(),
                });
            }
        }
        self.move_addresses(holder, name, |a| mine.contains(a));
        if self.link(&name).is_some_and(|v| !v.up) {
            self.step(LinkStep::SetUp { name });
        }
    }
}

/// Each network's `spec.ifacer` (validated) with its masterNets, from the
/// accepted specs the plan metas publish, as the view takes liveness and
/// subnets from them. An unreadable meta keeps what was known.
#[derive(Debug, Default)]
pub struct IfacerSpecs(BTreeMap<String, WantedIfacer>);

impl IfacerSpecs {
    /// Folds a plan watch update in; true when some network's ifacer changed.
    pub fn apply(&mut self, update: &WatchUpdate) -> bool {
        match update {
            WatchUpdate::Snapshot(range) => {
                let mut now = BTreeMap::new();
                for kv in &range.kvs {
                    if let Some(PlanKey::Meta { network }) = parse_plan_key(&kv.key) {
                        let w = match ifacer_of(network, kv) {
                            Some(w) => w,
                            None => self.0.get(network).cloned(),
                        };
                        if let Some(w) = w {
                            now.insert(network.to_owned(), w);
                        }
                    }
                }
                let changed = now != self.0;
                self.0 = now;
                changed
            }
            WatchUpdate::Events(events) => {
                let mut changed = false;
                for event in events {
                    let Some(PlanKey::Meta { network }) = parse_plan_key(event.key()) else {
                        continue;
                    };
                    changed |= match event {
                        WatchEvent::Put(kv) => match ifacer_of(network, kv) {
                            Some(Some(w)) => {
                                self.0.insert(network.to_owned(), w.clone()) != Some(w)
                            }
                            Some(None) => self.0.remove(network).is_some(),
                            None => false,
                        },
                        WatchEvent::Delete { .. } => self.0.remove(network).is_some(),
                    };
                }
                changed
            }
        }
    }

    /// The wanted ifacers, by network name.
    pub fn wanted(&self) -> Vec<WantedIfacer> {
        self.0.values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The network's wanted ifacer (`Some(None)`: it has none); `None` when the
/// meta or its spec cannot be read.
fn ifacer_of(network: &str, kv: &KeyValue) -> Option<Option<WantedIfacer>> {
    let meta: PlanMeta = kv.decode_json().ok()?;
    let Some(spec) = meta.spec else {
        return Some(None);
    };
    let net = spec.validate(network).ok()?;
    let ifacer = match &spec.ifacer {
        None => return Some(None),
        Some(i) => i.validate(!net.master_nets.is_empty()).ok()?,
    };
    Some(Some(WantedIfacer {
        network: network.to_owned(),
        ifacer,
        master_nets: net.master_nets,
    }))
}

#[cfg(test)]
mod tests;
