//! [`Planner`]: the incremental computation behind every plan.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{
    Block, Change, HostPlan, Interface, Plan, PlanMeta, Renumber, Unplanned, UnplannedInterface,
};
use crate::bitmap::Bitmap;
use crate::host_index::HostIndexes;
use crate::ifname::IfName;
use crate::inventory::{HostInventory, Nic};
use crate::layout::Layout;
use crate::spec::Network;

#[derive(Debug, Clone)]
pub struct Planner {
    network: String,
    layout: Layout,
    master_nets: Vec<IpNet>,
    /// A routed fabric (`spec.fabric.mode: routed`): a NIC's rail is the
    /// `masterNets` entry its address lies in, not its own subnet (each host's
    /// link to a leaf is a subnet of its own). See `rail_net`.
    routed: bool,
    excluded_rails: Bitmap,
    rails: BTreeMap<u32, Interface>,
    /// Sorted by subnet: a handful of rails make a binary search cheaper than hashing.
    rail_by_net: Vec<(IpNet, u32)>,
    /// See `rail_for_position`. Rails never move once placed, so entries stay valid.
    rail_cache: Vec<Option<(IpNet, u32)>>,
    rail_taken: Bitmap,
    hosts: BTreeMap<String, HostPlan>,
    indexes: HostIndexes,
    /// Hosts left out, with the reason and their place in the queue: the order in
    /// which they became unplanned, so the longest-waiting host gets the next
    /// free index (see `waiting`).
    unplanned: BTreeMap<String, (u64, String)>,
    next_wait: u64,
    unplanned_rails: BTreeMap<IpNet, String>,
    renumbered: Vec<Renumber>,
    /// How long a block whose NIC dropped out of its host's registration is kept
    /// (see `HostPlan::nic_missing_since`); 0 withdraws it at once.
    nic_grace_secs: u64,
}

impl Planner {
    /// Starts from `previous`, keeping every assignment the network still allows.
    pub fn new(network: &Network, previous: Option<&Plan>) -> Self {
        let layout = Layout::new(network);
        let ex = layout.exclusions(&network.excludes);
        let mut p = Planner {
            network: network.name.clone(),
            master_nets: network.master_nets.clone(),
            routed: network.spec.fabric().is_ok_and(|f| f.is_routed()),
            rail_taken: ex.rails.clone(),
            excluded_rails: ex.rails,
            indexes: HostIndexes::new(layout.host_capacity(), ex.hosts),
            layout,
            rails: BTreeMap::new(),
            rail_by_net: Vec::new(),
            rail_cache: Vec::new(),
            hosts: BTreeMap::new(),
            unplanned: BTreeMap::new(),
            next_wait: 0,
            unplanned_rails: BTreeMap::new(),
            renumbered: Vec::new(),
            nic_grace_secs: 0,
        };
        for (i, net) in network.master_nets.clone().into_iter().enumerate() {
            p.place_rail(net, Some(i as u32));
        }
        if let Some(prev) = previous {
            p.adopt(prev);
        }
        p
    }

    /// Keeps what the previous plan assigned where the network still allows it.
    /// Anything that would *move* an existing block (an index no longer valid, but
    /// equally a new subnet, hostBlock, interfaceBlock or exclude that recomputes
    /// the same index to another CIDR) is listed in `renumbered`: pods keep the
    /// addresses they were given, so a moved block strands them.
    fn adopt(&mut self, prev: &Plan) {
        for rail in &prev.interfaces {
            if let Some(s) = self
                .layout
                .subnets()
                .iter()
                .find(|s| crate::spec::overlaps(s, &rail.net_address))
            {
                // Its NICs' addresses are now pod addresses and no longer name it.
                self.renumbered.push(Renumber {
                    subject: format!("interface {}", rail.net_address),
                    old_index: rail.index,
                    reason: format!("its NIC subnet is now inside the pod subnet {s}"),
                });
                continue;
            }
            match self.rail_index(&rail.net_address) {
                Some(i) if i == rail.index => self.check_rail_moved(rail),
                Some(i) => self.renumbered.push(Renumber {
                    subject: format!("interface {}", rail.net_address),
                    old_index: rail.index,
                    reason: format!("masterNets now puts it at index {i}"),
                }),
                None if !self.master_nets.is_empty() => self.renumbered.push(Renumber {
                    subject: format!("interface {}", rail.net_address),
                    old_index: rail.index,
                    reason: "no longer listed in masterNets".into(),
                }),
                None => {
                    if let Err(reason) = self.check_rail_index(rail.index) {
                        self.renumbered.push(Renumber {
                            subject: format!("interface {}", rail.net_address),
                            old_index: rail.index,
                            reason,
                        });
                    } else {
                        self.place_rail(rail.net_address, Some(rail.index));
                        self.check_rail_moved(rail);
                    }
                }
            }
        }
        for (name, host) in &prev.hosts {
            if let Err(reason) = self.indexes.check(host.index) {
                self.renumbered.push(Renumber {
                    subject: format!("host {name}"),
                    old_index: host.index,
                    reason,
                });
                continue;
            }
            self.indexes.hold(host.index);
            let mut plan = host.clone();
            // Recompute CIDRs from indexes: the subnet or bits may have changed.
            plan.blocks = blocks_for(
                &self.layout,
                host.index,
                host.blocks.iter().filter_map(|b| {
                    self.rails.contains_key(&b.interface).then_some((
                        b.interface,
                        b.nic,
                        b.nic_address,
                    ))
                }),
            );
            plan.nic_missing_since = carry_missing(host, &plan.blocks);
            if let Some(reason) = moved_block(&host.blocks, &plan.blocks) {
                self.renumbered.push(Renumber {
                    subject: format!("host {name}"),
                    old_index: host.index,
                    reason,
                });
            }
            self.hosts.insert(name.clone(), plan);
        }
        for &i in &prev.retired {
            if self.indexes.check(i).is_ok() {
                self.indexes.retire(i);
            }
        }
        // Hosts that waited for an index keep their place in the queue.
        for u in &prev.unplanned {
            if !self.hosts.contains_key(&u.host) {
                self.mark_unplanned(&u.host, u.reason.clone());
            }
        }
    }

    /// A rail kept at its index whose CIDRs the new layout puts elsewhere.
    fn check_rail_moved(&mut self, prev: &Interface) {
        let Some(now) = self.rails.get(&prev.index) else {
            return;
        };
        if now.cidrs != prev.cidrs {
            let show = |c: &[IpNet]| {
                c.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            self.renumbered.push(Renumber {
                subject: format!("interface {}", prev.net_address),
                old_index: prev.index,
                reason: format!(
                    "its block moves from {} to {} (subnet, interfaceBlock or hostBlock changed)",
                    show(&prev.cidrs),
                    show(&now.cidrs)
                ),
            });
        }
    }

    fn check_rail_index(&self, i: u32) -> Result<(), String> {
        if i >= self.layout.rail_capacity() {
            Err(format!(
                "index {i} is beyond interfaceBlock's {} interfaces",
                self.layout.rail_capacity()
            ))
        } else if self.excluded_rails.get(i) {
            Err(format!("index {i} is now inside an excludeCIDRs entry"))
        } else if self.rail_taken.get(i) {
            Err(format!("index {i} is held twice in the previous plan"))
        } else {
            Ok(())
        }
    }

    /// Gives `net` a rail index: `fixed` when masterNets or the previous plan says
    /// so, otherwise the lowest free one.
    fn place_rail(&mut self, net: IpNet, fixed: Option<u32>) -> Option<u32> {
        if let Some(i) = self.rail_index(&net) {
            return Some(i);
        }
        let index = match fixed {
            Some(i) => self.check_rail_index(i).map(|()| i),
            None => self.rail_taken.first_clear_from(0).ok_or_else(|| {
                format!(
                    "no free interface index: interfaceBlock {} allows {} interfaces",
                    self.interface_bits(),
                    self.layout.rail_capacity()
                )
            }),
        };
        match index {
            Ok(i) => {
                self.rail_taken.set(i);
                if let Err(pos) = self.rail_by_net.binary_search_by_key(&net, |(n, _)| *n) {
                    self.rail_by_net.insert(pos, (net, i));
                }
                let cidrs = (0..self.layout.subnets().len())
                    .map(|f| self.layout.rail_cidr(f, i))
                    .collect();
                self.rails.insert(
                    i,
                    Interface {
                        index: i,
                        net_address: net,
                        cidrs,
                    },
                );
                self.unplanned_rails.remove(&net);
                Some(i)
            }
            Err(reason) => {
                self.unplanned_rails.insert(net, reason);
                None
            }
        }
    }

    fn interface_bits(&self) -> u32 {
        self.layout.rail_capacity().trailing_zeros()
    }

    fn rail_index(&self, net: &IpNet) -> Option<u32> {
        self.rail_by_net
            .binary_search_by_key(net, |(n, _)| *n)
            .ok()
            .map(|pos| self.rail_by_net[pos].1)
    }

    /// The rail a NIC subnet belongs to, creating it if the network allows.
    fn rail_for(&mut self, net: IpNet) -> Option<u32> {
        if let Some(i) = self.rail_index(&net) {
            return Some(i);
        }
        if !self.master_nets.is_empty() {
            return None;
        }
        self.place_rail(net, None)
    }

    /// Registers the rails of many hosts at once in address order, so a fresh plan
    /// numbers rails by sorted NIC subnet rather than by which host came first.
    pub fn register_rails<'a>(&mut self, hosts: impl IntoIterator<Item = &'a HostInventory>) {
        if !self.master_nets.is_empty() {
            return;
        }
        // A few distinct subnets among tens of thousands of NICs: a linear `contains`
        // on a short vector beats a tree insert per NIC.
        let mut nets: Vec<IpNet> = Vec::new();
        for h in hosts {
            for nic in &h.nics {
                if let Some(a) = self.primary_address(nic) {
                    let net = a.trunc();
                    if !nets.contains(&net) {
                        nets.push(net);
                    }
                }
            }
        }
        nets.sort_unstable();
        for net in nets {
            self.rail_for(net);
        }
    }

    /// The address that puts a NIC on a rail: the first of the primary family that
    /// is neither link-local nor inside the pod subnet itself.
    fn primary_address(&self, nic: &Nic) -> Option<IpNet> {
        self.usable_address(nic, 0)
    }

    fn usable_address(&self, nic: &Nic, family: usize) -> Option<IpNet> {
        let subnets = self.layout.subnets();
        let want_v4 = subnets.get(family)?.addr().is_ipv4();
        nic.addresses.iter().copied().find(|a| {
            a.addr().is_ipv4() == want_v4
                && !is_link_local(&a.addr())
                && !subnets.iter().any(|s| s.contains(&a.addr()))
        })
    }

    /// The subnet that names a NIC's rail: its own (`primary.trunc()`), or on a
    /// routed fabric the `masterNets` entry holding its address (the NIC's own
    /// /31 to its leaf names nothing shared). An address outside them keeps its
    /// own subnet, which matches no rail.
    fn rail_net(&self, primary: IpNet) -> IpNet {
        if self.routed {
            if let Some(net) = self
                .master_nets
                .iter()
                .find(|n| n.contains(&primary.addr()))
            {
                return *net;
            }
        }
        primary.trunc()
    }

    /// `rail_for`, remembering the answer per NIC position: NIC k of one host is
    /// almost always on the same subnet as NIC k of the previous one, and an equality
    /// check is far cheaper than the search (this is the hot loop of a full plan).
    fn rail_for_position(&mut self, position: usize, net: IpNet) -> Option<u32> {
        if let Some(Some((n, r))) = self.rail_cache.get(position) {
            if *n == net {
                return Some(*r);
            }
        }
        let rail = self.rail_for(net)?;
        if self.rail_cache.len() <= position {
            self.rail_cache.resize(position + 1, None);
        }
        self.rail_cache[position] = Some((net, rail));
        Some(rail)
    }

    /// How long a block whose NIC dropped out of its host's registration keeps
    /// its routes (`upsert_host_at`, `expire_nics`). 0, the default, withdraws it
    /// at once, as an offline plan of a snapshot must: it has no clock.
    pub fn set_nic_grace(&mut self, secs: u64) {
        self.nic_grace_secs = secs;
    }

    pub fn nic_grace(&self) -> u64 {
        self.nic_grace_secs
    }

    /// A host registered or changed its NICs, with no clock: a block whose NIC
    /// is no longer registered is withdrawn at once. Keeps its index if it has one.
    pub fn upsert_host(&mut self, host: &HostInventory) -> Change {
        self.upsert(host, None)
    }

    /// A host registered or changed its NICs at Unix second `now`. Keeps its
    /// index if it has one. A block whose NIC is no longer registered stays
    /// (and keeps every peer's routes) until the NIC grace period after it went
    /// missing ends; a NIC back within it changes nothing.
    pub fn upsert_host_at(&mut self, host: &HostInventory, now: u64) -> Change {
        self.upsert(host, Some(now))
    }

    fn upsert(&mut self, host: &HostInventory, now: Option<u64>) -> Change {
        let mut rails: Vec<(u32, IfName, IpAddr)> = Vec::with_capacity(host.nics.len() * 2);
        // NICs are taken in name order (the first by name wins a shared subnet);
        // discovery already reports them sorted, so avoid building an order then.
        let order: Option<Vec<usize>> =
            (!host.nics.is_sorted_by(|a, b| a.name <= b.name)).then(|| {
                let mut o: Vec<usize> = (0..host.nics.len()).collect();
                o.sort_unstable_by(|&a, &b| host.nics[a].name.cmp(&host.nics[b].name));
                o
            });
        for position in 0..host.nics.len() {
            let nic = &host.nics[order.as_ref().map_or(position, |o| o[position])];
            let Some(primary) = self.primary_address(nic) else {
                continue;
            };
            // `HostInventory::validate` refuses such names before they get here.
            let Ok(name) = IfName::new(&nic.name) else {
                continue;
            };
            let Some(rail) = self.rail_for_position(position, self.rail_net(primary)) else {
                continue;
            };
            // Two NICs on one subnet: the first by name carries the rail.
            if rails.iter().any(|(r, _, _)| *r == rail) {
                continue;
            }
            rails.push((rail, name, primary.addr()));
            if let Some(secondary) = self.usable_address(nic, 1) {
                rails.push((rail, name, secondary.addr()));
            }
        }
        // One search of the host map, not a lookup and then an insert: with
        // 10,000 string keys the second search was a sixth of a full plan.
        let outcome = match self.hosts.entry(host.name.clone()) {
            Entry::Occupied(mut held) => {
                let index = held.get().index;
                let mut blocks = blocks_for(&self.layout, index, rails.into_iter());
                let mut nic_missing_since = BTreeMap::new();
                if let Some(now) = now.filter(|_| self.nic_grace_secs > 0) {
                    // Equal blocks (the common re-registration) miss nothing.
                    if held.get().blocks != blocks {
                        nic_missing_since =
                            keep_missing(held.get(), &mut blocks, now, self.nic_grace_secs);
                    }
                }
                let plan = HostPlan {
                    index,
                    departed_at: None,
                    blocks,
                    nic_missing_since,
                };
                if *held.get() == plan {
                    Ok(Change::Unchanged)
                } else {
                    held.insert(plan);
                    Ok(Change::Changed)
                }
            }
            Entry::Vacant(_) if rails.is_empty() => Err(None),
            Entry::Vacant(slot) => match self.indexes.take() {
                Some(index) => {
                    slot.insert(HostPlan {
                        index,
                        departed_at: None,
                        blocks: blocks_for(&self.layout, index, rails.into_iter()),
                        nic_missing_since: BTreeMap::new(),
                    });
                    Ok(Change::Changed)
                }
                None => Err(Some(format!(
                    "no free host index: hostBlock allows {} hosts and all are planned, reserved or excluded",
                    self.layout.host_capacity()
                ))),
            },
        };
        match outcome {
            Ok(change) => {
                if !self.unplanned.is_empty() {
                    self.unplanned.remove(&host.name);
                }
                change
            }
            Err(None) => {
                let reason = self.no_rail_reason(host);
                self.mark_unplanned(&host.name, reason)
            }
            Err(Some(reason)) => self.mark_unplanned(&host.name, reason),
        }
    }

    /// Records why `host` is left out. A host already waiting keeps its place.
    fn mark_unplanned(&mut self, host: &str, reason: String) -> Change {
        match self.unplanned.get_mut(host) {
            Some((_, old)) if *old == reason => Change::Unchanged,
            Some((_, old)) => {
                *old = reason;
                Change::Changed
            }
            None => {
                self.unplanned
                    .insert(host.to_string(), (self.next_wait, reason));
                self.next_wait += 1;
                Change::Changed
            }
        }
    }

    /// Unplanned hosts, longest waiting first. After indexes free up (`expire`, a
    /// spec change) the caller upserts these before anyone else, so a host that
    /// joined later never takes an index ahead of one that has been waiting.
    pub fn waiting(&self) -> Vec<String> {
        let mut w: Vec<(&u64, &String)> = self.unplanned.iter().map(|(h, (n, _))| (n, h)).collect();
        w.sort_unstable();
        w.into_iter().map(|(_, h)| h.clone()).collect()
    }

    fn no_rail_reason(&self, host: &HostInventory) -> String {
        let nets: Vec<String> = host
            .nics
            .iter()
            .filter_map(|n| {
                self.primary_address(n)
                    .map(|a| format!("{} {}", n.name, a.trunc()))
            })
            .collect();
        let why = if nets.is_empty() {
            "it has no NIC with a usable address of the subnet's family".to_string()
        } else if !self.master_nets.is_empty() {
            format!("none of its NICs ({}) is in masterNets", nets.join(", "))
        } else {
            format!(
                "its NIC subnets ({}) have no interface index",
                nets.join(", ")
            )
        };
        format!("no NIC on a planned interface: {why}")
    }

    /// A host's registration vanished: keep its index reserved from `now`.
    pub fn remove_host(&mut self, name: &str, now: u64) -> Change {
        let was_unplanned = self.unplanned.remove(name).is_some();
        match self.hosts.get_mut(name) {
            Some(h) if h.departed_at.is_none() => {
                h.departed_at = Some(now);
                Change::Changed
            }
            _ if was_unplanned => Change::Changed,
            _ => Change::Unchanged,
        }
    }

    /// Frees the indexes of hosts departed at least `grace_secs` ago; returns them.
    pub fn expire(&mut self, now: u64, grace_secs: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, h)| {
                h.departed_at
                    .is_some_and(|t| now >= t.saturating_add(grace_secs))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in &gone {
            if let Some(h) = self.hosts.remove(name) {
                self.indexes.retire(h.index);
            }
        }
        gone
    }

    /// Withdraws the blocks whose NIC has been missing for the whole NIC grace
    /// period at `now`; returns the hosts whose plan changed. The host keeps its
    /// index, so a withdrawn block goes to no other host while this one is
    /// planned, nor during its own (departed-host) grace period after it leaves.
    pub fn expire_nics(&mut self, now: u64) -> Vec<String> {
        let grace = self.nic_grace_secs;
        let mut changed = Vec::new();
        for (name, h) in &mut self.hosts {
            if h.nic_missing_since.is_empty() {
                continue;
            }
            let over: Vec<IpNet> = h
                .nic_missing_since
                .iter()
                .filter(|(_, since)| now >= since.saturating_add(grace))
                .map(|(cidr, _)| *cidr)
                .collect();
            if over.is_empty() {
                continue;
            }
            for cidr in &over {
                h.nic_missing_since.remove(cidr);
            }
            h.blocks.retain(|b| !over.contains(&b.cidr));
            changed.push(name.clone());
        }
        changed
    }

    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.get(name)
    }

    pub fn hosts(&self) -> impl Iterator<Item = (&String, &HostPlan)> {
        self.hosts.iter()
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    /// The network-wide part of the plan, without cloning every host entry.
    pub fn meta(&self) -> PlanMeta {
        PlanMeta {
            network: self.network.clone(),
            interfaces: self.rails.values().cloned().collect(),
            retired: self.indexes.retired().collect(),
            unplanned: self.unplanned_list(),
            unplanned_interfaces: self
                .unplanned_rails
                .iter()
                .map(|(n, r)| UnplannedInterface {
                    net_address: *n,
                    reason: r.clone(),
                })
                .collect(),
            spec: None,
            spec_revision: 0,
        }
    }

    /// The unplanned hosts in queue order (longest waiting first): the stored
    /// order carries each host's place across a planner restart.
    fn unplanned_list(&self) -> Vec<Unplanned> {
        self.waiting()
            .into_iter()
            .map(|host| Unplanned {
                reason: self.unplanned[&host].1.clone(),
                host,
            })
            .collect()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Assignments of the previous plan the current spec could not keep.
    pub fn renumbered(&self) -> &[Renumber] {
        &self.renumbered
    }

    /// Host indexes still never used and not excluded.
    pub fn free_host_indexes(&self) -> u32 {
        self.indexes.free()
    }

    pub fn to_plan(&self) -> Plan {
        Plan::assemble(self.meta(), self.hosts.clone())
    }

    pub fn into_plan(self) -> Plan {
        let unplanned = self.unplanned_list();
        Plan {
            network: self.network,
            interfaces: self.rails.into_values().collect(),
            hosts: self.hosts,
            retired: self.indexes.retired().collect(),
            unplanned,
            unplanned_interfaces: self
                .unplanned_rails
                .into_iter()
                .map(|(net_address, reason)| UnplannedInterface {
                    net_address,
                    reason,
                })
                .collect(),
        }
    }
}

/// A host's blocks at `index`, one per (rail, address) pair, ordered by rail. A
/// free function over the layout so `upsert_host` can call it while it holds an
/// entry of the host map.
fn blocks_for(
    layout: &Layout,
    index: u32,
    rails: impl Iterator<Item = (u32, IfName, IpAddr)>,
) -> Vec<Block> {
    let mut blocks: Vec<Block> = rails
        .filter_map(|(rail, nic, addr)| {
            let family = layout.family_of(&addr)?;
            Some(Block {
                interface: rail,
                nic,
                nic_address: addr,
                cidr: layout.host_cidr(family, rail, index),
            })
        })
        .collect();
    if !blocks.is_sorted_by_key(|b| (b.interface, b.cidr)) {
        blocks.sort_unstable_by_key(|b| (b.interface, b.cidr));
    }
    blocks
}

/// The NIC grace decision for a registered host: `blocks` are what its NICs
/// give now, `held` its plan so far. A held block with no block of the same rail
/// and family among `blocks` lost its NIC: it is put back (same CIDR, same NIC
/// and next hop, so peers' routes do not change) while `now` is within `grace`
/// seconds of when it first went missing, and left out after. Returns the kept
/// blocks with that first second; a block whose NIC came back is simply
/// present again and has no entry.
fn keep_missing(
    held: &HostPlan,
    blocks: &mut Vec<Block>,
    now: u64,
    grace: u64,
) -> BTreeMap<IpNet, u64> {
    let mut missing = BTreeMap::new();
    let mut kept = Vec::new();
    for b in &held.blocks {
        let present = blocks.iter().any(|n| {
            n.interface == b.interface && n.cidr.addr().is_ipv4() == b.cidr.addr().is_ipv4()
        });
        if present {
            continue;
        }
        let since = held.nic_missing_since.get(&b.cidr).copied().unwrap_or(now);
        if now < since.saturating_add(grace) {
            missing.insert(b.cidr, since);
            kept.push(b.clone());
        }
    }
    if !kept.is_empty() {
        blocks.extend(kept);
        blocks.sort_unstable_by_key(|b| (b.interface, b.cidr));
    }
    missing
}

/// A host's missing-NIC clocks carried over to its recomputed blocks (a spec
/// change may move a CIDR): each follows the block of the same rail and family.
fn carry_missing(before: &HostPlan, after: &[Block]) -> BTreeMap<IpNet, u64> {
    before
        .nic_missing_since
        .iter()
        .filter_map(|(cidr, since)| {
            let old = before.blocks.iter().find(|b| b.cidr == *cidr)?;
            let new = after.iter().find(|a| {
                a.interface == old.interface && a.cidr.addr().is_ipv4() == old.cidr.addr().is_ipv4()
            })?;
            Some((new.cidr, *since))
        })
        .collect()
}

/// Why a host's recomputed blocks no longer hold what it held, if they do not:
/// every previous block must come back with the same CIDR on the same rail.
fn moved_block(before: &[Block], after: &[Block]) -> Option<String> {
    let mut moved = before.iter().filter(|b| {
        !after
            .iter()
            .any(|a| a.interface == b.interface && a.cidr == b.cidr)
    });
    let first = moved.next()?;
    let to = after
        .iter()
        .find(|a| a.interface == first.interface && a.nic_address == first.nic_address)
        .map_or_else(
            || "is dropped".to_string(),
            |a| format!("moves to {}", a.cidr),
        );
    let more = moved.count();
    Some(format!(
        "block {} on interface {} {to}{}",
        first.cidr,
        first.interface,
        if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        }
    ))
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.is_unicast_link_local(),
    }
}
