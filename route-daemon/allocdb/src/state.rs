//! The in-memory state machine: networks, their blocks, and the attachments that
//! hold addresses in them. Live requests and log replay go through the same
//! functions, so what a restart rebuilds is what was running.
//!
//! One invariant keeps an address from ever being handed out twice even when a
//! plan change leaves an old block overlapping a new one: every held address is
//! marked in every block of its network that contains it.
//!
//! A second keeps a pod from silently getting fewer rails than it is owed: the
//! rails (and families) this host has been planned on are remembered, so a rail
//! whose NIC lost its address, and whose block the planner therefore withdrew,
//! still counts for "every NIC" and fails the ADD by name instead of vanishing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use railyard_core::alloc::PoolTake;
use railyard_core::attach::{select_nics, wanted_class, Candidate, DeviceClass};
use railyard_core::ipam::{AttachmentId, NicAllocation, PodRoute, Selection};
use railyard_core::{Block, BlockAllocator, IfName, Nic};

use crate::block::BlockState;
use crate::error::{DbError, Result};
use crate::frame::Snapshot;
use crate::model::{AddArgs, Attachment, BlockStats, NetworkConfig};

#[derive(Debug)]
pub(crate) struct NetState {
    pub config: Arc<NetworkConfig>,
    pub blocks: Vec<BlockState>,
    pub attachments: HashMap<AttachmentId, Arc<Attachment>>,
    /// (rail, family index) -> NIC for every block this host has been planned
    /// with, kept after the block leaves the plan while the rail still exists:
    /// what a pod on this host is owed.
    pub rails_seen: BTreeMap<(u32, usize), IfName>,
}

#[derive(Debug, Default)]
pub(crate) struct Core {
    pub networks: BTreeMap<String, NetState>,
    /// Attachments per NIC across networks: the load `balance` spreads.
    pub nic_load: HashMap<IfName, u32>,
    /// Attachments released whose etcd mirror record is not known to be deleted
    /// yet. The mirror may delete a record of this host only if it is here (or
    /// stale by the addresses): anything else in etcd it cannot account for and
    /// must adopt rather than erase.
    pub released: HashSet<AttachmentId>,
}

impl NetState {
    fn empty(name: &str) -> Self {
        NetState {
            config: Arc::new(NetworkConfig {
                routes: Vec::new(),
                pools: Vec::new(),
                gateway: Default::default(),
                name: name.to_string(),
                strategy: Default::default(),
                policy_target: String::new(),
                excludes: Vec::new(),
                interfaces: Vec::new(),
                blocks: Vec::new(),
            }),
            blocks: Vec::new(),
            attachments: HashMap::new(),
            rails_seen: BTreeMap::new(),
        }
    }

    fn family_of(&self, b: &Block) -> usize {
        self.config
            .interfaces
            .iter()
            .find(|i| i.index == b.interface)
            .and_then(|i| i.cidrs.iter().position(|c| c.contains(&b.cidr.network())))
            .unwrap_or(usize::from(!b.cidr.addr().is_ipv4()))
    }

    pub(crate) fn rail_cidr(&self, b: &Block) -> Option<IpNet> {
        let i = self
            .config
            .interfaces
            .iter()
            .find(|i| i.index == b.interface)?;
        i.cidrs
            .iter()
            .copied()
            .find(|c| c.contains(&b.cidr.network()))
    }

    /// The routes a pod gets on `rail` in `b`'s family: the rail's CIDR and
    /// the network's own routes for that rail (`spec.routes`), via `gw` (a
    /// device route when the network has no gateways).
    pub(crate) fn pod_routes(
        &self,
        b: &Block,
        rail: u32,
        gw: Option<IpAddr>,
    ) -> impl Iterator<Item = PodRoute> + '_ {
        let v4 = b.cidr.addr().is_ipv4();
        let own = self
            .config
            .routes
            .iter()
            .filter(move |r| r.rail == rail && r.dst.addr().is_ipv4() == v4)
            .map(move |r| PodRoute { dst: r.dst, gw });
        self.rail_cidr(b)
            .map(|dst| PodRoute { dst, gw })
            .into_iter()
            .chain(own)
    }

    /// Marks `addr` in every block containing it; false if no block does.
    fn hold(&mut self, addr: IpAddr) -> bool {
        let mut held = false;
        for b in self.blocks.iter_mut().filter(|b| b.cidr().contains(&addr)) {
            held = true;
            if !b.alloc.tracks(addr) {
                // Beyond the addresses its allocator tracks (a leftover block
                // made from a pod's shorter prefix): never handed out by it,
                // so the pod holds it without a bit to set (see `check`).
                tracing::warn!(network = %self.config.name, %addr, block = %b.cidr(), "address beyond the tracked addresses of its block");
                continue;
            }
            if let Err(e) = b.claim(addr) {
                tracing::error!(network = %self.config.name, %addr, error = %e, "address held twice in the allocation log");
            }
        }
        held
    }

    /// Whether `addr` is held: allocated in a block that tracks it, or
    /// tracked by no block containing it (then no allocator can hand it out,
    /// whatever order the log replayed the blocks in).
    fn is_held(&self, addr: IpAddr) -> bool {
        let mut tracked = false;
        for b in self.blocks.iter().filter(|b| b.cidr().contains(&addr)) {
            if b.alloc.is_allocated(addr) {
                return true;
            }
            tracked |= b.alloc.tracks(addr);
        }
        !tracked && self.blocks.iter().any(|b| b.cidr().contains(&addr))
    }

    /// The attachment holding `addr`, if one does (a linear scan: only for
    /// the error of a refused static address).
    fn holder_of(&self, addr: IpAddr) -> Option<&Attachment> {
        self.attachments.values().map(|a| &**a).find(|a| {
            a.nics
                .iter()
                .any(|n| n.addresses.iter().any(|x| x.addr() == addr))
        })
    }

    fn unhold(&mut self, addr: IpAddr) {
        for b in self.blocks.iter_mut().filter(|b| b.cidr().contains(&addr)) {
            b.alloc.release(addr);
        }
    }

    /// Updates `rails_seen` from the config just applied. A host with no block at
    /// all is not planned on the network (not ready anyway): nothing is owed. A
    /// rail the network no longer has is forgotten.
    fn remember_rails(&mut self) {
        let cfg = self.config.clone();
        if cfg.blocks.is_empty() {
            self.rails_seen.clear();
            return;
        }
        self.rails_seen
            .retain(|(rail, _), _| cfg.interfaces.iter().any(|i| i.index == *rail));
        for b in &cfg.blocks {
            let family = self.family_of(b);
            self.rails_seen.insert((b.interface, family), b.nic);
        }
    }

    /// "IPv4"/"IPv6" for a family index of `rail`, from the rail's subnets.
    fn family_name(&self, rail: u32, family: usize) -> &'static str {
        let v4 = self
            .config
            .interfaces
            .iter()
            .find(|i| i.index == rail)
            .and_then(|i| i.cidrs.get(family))
            .map_or(family == 0, |c| c.addr().is_ipv4());
        if v4 {
            "IPv4"
        } else {
            "IPv6"
        }
    }

    fn drop_empty_leftovers(&mut self) {
        let name = &self.config.name;
        self.blocks.retain(|b| {
            let keep = b.in_plan || b.alloc.allocated() > 0;
            if !keep {
                tracing::info!(network = %name, block = %b.cidr(), "last address of a block no longer in the plan released; block dropped");
            }
            keep
        });
    }
}

impl Core {
    /// Adopts a network's new config: new blocks get an allocator, blocks the plan
    /// dropped keep their live addresses until released.
    pub fn apply_network(&mut self, cfg: Arc<NetworkConfig>) {
        let net = self
            .networks
            .entry(cfg.name.clone())
            .or_insert_with(|| NetState::empty(&cfg.name));
        // A new gateway reserves another address: rebuilt as for excludes.
        let excludes_changed =
            net.config.excludes != cfg.excludes || net.config.gateway != cfg.gateway;
        let pools_changed = net.config.pools != cfg.pools;
        net.config = cfg.clone();
        for b in &cfg.blocks {
            let family = net.family_of(b);
            if let Some(s) = net.blocks.iter_mut().find(|s| s.cidr() == b.cidr) {
                s.block = b.clone();
                s.in_plan = true;
                s.family = family;
                if excludes_changed {
                    for addr in s.rebuild(&cfg.excludes, cfg.gateway) {
                        tracing::warn!(network = %cfg.name, %addr, "address held by a pod is inside a new excludeCIDRs entry, or the new gateway; it stays with the pod until released");
                    }
                }
                if excludes_changed || pools_changed {
                    // A pooled address a pod already holds stays with it.
                    s.alloc.set_pools(&cfg.pools);
                }
                continue;
            }
            let mut s = BlockState::new(b.clone(), &cfg.excludes, cfg.gateway, family);
            s.alloc.set_pools(&cfg.pools);
            let cidr = s.cidr();
            for a in net.attachments.values() {
                for addr in addresses(a).filter(|x| cidr.contains(x)) {
                    let _ = s.alloc.allocate_specific(addr);
                }
            }
            net.blocks.push(s);
        }
        for s in net.blocks.iter_mut() {
            if s.in_plan && !cfg.blocks.iter().any(|b| b.cidr == s.cidr()) {
                s.in_plan = false;
                if s.alloc.allocated() > 0 {
                    tracing::warn!(network = %cfg.name, block = %s.cidr(), live = s.alloc.allocated(), "block left the plan; its addresses stay held until their pods release them");
                }
            }
        }
        net.drop_empty_leftovers();
        net.blocks
            .sort_by_key(|s| (s.block.interface, s.family, s.cidr()));
        net.remember_rails();
    }

    pub fn config(&self, network: &str) -> Option<&NetworkConfig> {
        self.networks.get(network).map(|n| &*n.config)
    }

    pub fn get(&self, id: &AttachmentId) -> Option<&Arc<Attachment>> {
        self.networks.get(&id.network)?.attachments.get(id)
    }

    /// Whether the network can allocate now: it has at least one planned block.
    pub fn ready(&self, network: &str) -> bool {
        self.networks
            .get(network)
            .is_some_and(|n| n.blocks.iter().any(|b| b.in_plan))
    }

    /// A new attachment: NICs by the attach policy, one address per NIC and family,
    /// all or nothing.
    pub fn allocate(
        &mut self,
        args: &AddArgs,
        nics: &[Nic],
        classes: &[DeviceClass],
    ) -> Result<Arc<Attachment>> {
        let id = &args.attachment;
        let Core {
            networks,
            nic_load,
            released,
        } = self;
        let net = networks
            .get_mut(&id.network)
            .filter(|n| n.blocks.iter().any(|b| b.in_plan))
            .ok_or_else(|| DbError::UnknownNetwork(id.network.clone()))?;
        let (selection, picked) = pick(net, nic_load, args, nics, classes)?;
        let cfg = net.config.clone();
        let mut taken: Vec<(usize, IpAddr)> = Vec::new();
        let mut out = Vec::with_capacity(picked.len());
        // Static addresses (the pod's `ips`): each must land in a block of a
        // picked NIC, and is taken there instead of the next free one.
        let mut wanted: Vec<IpAddr> = selection.ips.clone();
        let undo = |net: &mut NetState, taken: &[(usize, IpAddr)]| {
            for (j, addr) in taken {
                net.blocks[*j].alloc.release(*addr);
            }
        };
        for c in picked {
            // Candidates are made from this network's planned blocks just above.
            let Some(nic) = net
                .blocks
                .iter()
                .find(|b| b.in_plan && b.block.nic == c.name)
                .map(|b| b.block.nic)
            else {
                continue;
            };
            let mut a = NicAllocation {
                nic,
                interface: c.interface,
                addresses: Vec::new(),
                gateways: Vec::new(),
                routes: Vec::new(),
                mac: None,
            };
            for i in 0..net.blocks.len() {
                let b = &mut net.blocks[i];
                if !b.in_plan || b.block.nic != c.name {
                    continue;
                }
                let cidr = b.cidr();
                let addr = match wanted.iter().position(|w| cidr.contains(w)) {
                    Some(k) => {
                        let want = wanted.swap_remove(k);
                        match b.alloc.allocate_specific(want) {
                            Ok(()) => want,
                            Err(e) => {
                                let why = static_refused(want, &e, net.holder_of(want));
                                undo(net, &taken);
                                return Err(DbError::Invalid(why));
                            }
                        }
                    }
                    None if selection.pool.is_some() || !selection.pool_ips.is_empty() => {
                        match take_pooled(&mut b.alloc, &selection, &c.name, &cfg) {
                            Ok(addr) => addr,
                            Err(e) => {
                                undo(net, &taken);
                                return Err(e);
                            }
                        }
                    }
                    None => match b.take() {
                        Some(addr) => addr,
                        None => {
                            let err = DbError::Exhausted {
                                network: id.network.clone(),
                                nic: c.name.clone(),
                                block: cidr.to_string(),
                                allocated: b.alloc.allocated(),
                            };
                            undo(net, &taken);
                            return Err(err);
                        }
                    },
                };
                taken.push((i, addr));
                // None for a network without gateways: device routes.
                let gw = b.alloc.gateway();
                let prefix = b.cidr().prefix_len();
                a.addresses
                    .push(IpNet::new(addr, prefix).unwrap_or(b.cidr()));
                a.gateways.extend(gw);
                a.routes
                    .extend(net.pod_routes(&net.blocks[i].block, c.interface, gw));
            }
            out.push(a);
        }
        if let Some(w) = wanted.first() {
            let blocks: Vec<String> = out
                .iter()
                .flat_map(|a| {
                    a.addresses
                        .iter()
                        .map(|n| format!("{} ({})", n.trunc(), a.nic))
                })
                .collect();
            let twice = out
                .iter()
                .flat_map(|a| a.addresses.iter())
                .any(|n| n.trunc().contains(w));
            undo(net, &taken);
            return Err(DbError::Invalid(if twice {
                format!(
                    "requested address {w} is a second address for one rail and family; a pod \
                     gets one address per rail and family"
                )
            } else {
                format!(
                    "requested address {w} lies in none of the blocks this pod gets on this \
                     host ({}); ask for an address of one of them, or select the NIC whose \
                     block holds it (masters)",
                    blocks.join(", ")
                )
            }));
        }
        if let Err(why) = assign_macs(&selection, &mut out) {
            undo(net, &taken);
            return Err(DbError::Invalid(why));
        }
        for (i, addr) in taken {
            for (j, b) in net.blocks.iter_mut().enumerate() {
                if j != i && b.cidr().contains(&addr) {
                    let _ = b.alloc.allocate_specific(addr);
                }
            }
        }
        let att = Arc::new(Attachment {
            id: id.clone(),
            pod: args.pod.clone(),
            nics: out,
        });
        for n in &att.nics {
            *nic_load.entry(n.nic).or_default() += 1;
        }
        released.remove(id);
        net.attachments.insert(id.clone(), att.clone());
        Ok(att)
    }

    /// [`Self::allocate`], taking over the addresses retained for a
    /// StatefulSet pod of this name (`retain.rs`): they become the pod's
    /// static addresses unless it asks for others. If they cannot be had now
    /// (the plan moved, the pod selects other NICs) the pod gets fresh ones
    /// and the retained ones are freed; on any error the retained attachment
    /// is kept. Returns the retained attachment's ID when it was taken over.
    pub fn allocate_retained(
        &mut self,
        args: &AddArgs,
        nics: &[Nic],
        classes: &[DeviceClass],
    ) -> Result<(Arc<Attachment>, Option<AttachmentId>)> {
        let Some(kept_id) = crate::retain::for_add(&args.attachment, &args.pod) else {
            return Ok((self.allocate(args, nics, classes)?, None));
        };
        let Some(kept) = self.release(&kept_id) else {
            return Ok((self.allocate(args, nics, classes)?, None));
        };
        let mut again = args.clone();
        if again.selection.ips.is_empty() {
            again.selection.ips = addresses(&kept).collect();
        }
        let got = match self.allocate(&again, nics, classes) {
            Ok(a) => Ok(a),
            Err(e) if again.selection.ips != args.selection.ips => {
                tracing::warn!(network = %kept_id.network, container = %kept_id.container_id, error = %e,
                    "the addresses kept for this StatefulSet pod cannot be had now; it gets fresh ones");
                self.allocate(args, nics, classes)
            }
            Err(e) => Err(e),
        };
        match got {
            Ok(a) => Ok((a, Some(kept_id))),
            Err(e) => {
                self.claim(kept);
                Err(e)
            }
        }
    }

    /// Replays an attachment from the log: its addresses are held again, in a
    /// leftover block if the plan no longer has one containing them.
    pub fn claim(&mut self, att: Arc<Attachment>) {
        if self.get(&att.id).is_some() {
            tracing::warn!(container = %att.id.container_id, "attachment logged twice without a release; keeping the later one");
            self.release(&att.id);
        }
        let net = self
            .networks
            .entry(att.id.network.clone())
            .or_insert_with(|| NetState::empty(&att.id.network));
        for n in &att.nics {
            for a in &n.addresses {
                if net.hold(a.addr()) {
                    continue;
                }
                let block = Block {
                    interface: n.interface,
                    nic: n.nic,
                    nic_address: a.network(),
                    cidr: a.trunc(),
                };
                let family = net.family_of(&block);
                let mut s =
                    BlockState::new(block, &net.config.excludes, net.config.gateway, family);
                s.in_plan = false;
                net.blocks.push(s);
                net.hold(a.addr());
            }
            *self.nic_load.entry(n.nic).or_default() += 1;
        }
        self.released.remove(&att.id);
        net.attachments.insert(att.id.clone(), att);
    }

    /// Why `att` (a record found in etcd and not in the log) cannot be adopted:
    /// one of its addresses is held here by another attachment. The log decided
    /// later than that record, so the record is stale.
    pub fn adopt_conflict(&self, att: &Attachment) -> Option<String> {
        let net = self.networks.get(&att.id.network)?;
        for addr in addresses(att) {
            let holder = net
                .attachments
                .values()
                .find(|a| a.id != att.id && addresses(a).any(|x| x == addr));
            if let Some(h) = holder {
                return Some(format!(
                    "{addr} is held by container {} (interface {})",
                    h.id.container_id, h.id.ifname
                ));
            }
        }
        None
    }

    pub fn release(&mut self, id: &AttachmentId) -> Option<Arc<Attachment>> {
        let net = self.networks.get_mut(&id.network)?;
        let att = net.attachments.remove(id)?;
        self.released.insert(id.clone());
        for n in &att.nics {
            for a in &n.addresses {
                net.unhold(a.addr());
            }
            if let Some(l) = self.nic_load.get_mut(&n.nic) {
                *l = l.saturating_sub(1);
            }
        }
        net.drop_empty_leftovers();
        Some(att)
    }

    pub fn attachment_ids(&self, network: &str) -> Vec<AttachmentId> {
        let mut ids: Vec<AttachmentId> = self
            .networks
            .get(network)
            .map(|n| n.attachments.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub fn attachments(&self, network: Option<&str>) -> Vec<Arc<Attachment>> {
        self.networks
            .values()
            .filter(|n| network.is_none_or(|w| n.config.name == w))
            .flat_map(|n| n.attachments.values().cloned())
            .collect()
    }

    /// Whether another attachment of `att`'s pod (by namespace and name) on
    /// the same network and interface is held here: a StatefulSet pod's
    /// successor that was added before its predecessor's DEL.
    pub fn has_successor(&self, att: &Attachment) -> bool {
        self.networks.get(&att.id.network).is_some_and(|n| {
            n.attachments.values().any(|a| {
                a.id != att.id
                    && a.id.ifname == att.id.ifname
                    && !a.id.is_retained()
                    && a.pod.namespace == att.pod.namespace
                    && a.pod.name == att.pod.name
            })
        })
    }

    pub fn live(&self) -> usize {
        self.networks.values().map(|n| n.attachments.len()).sum()
    }

    /// CHECK: the attachment exists and each of its addresses is still held.
    pub fn check(&self, id: &AttachmentId) -> Result<Arc<Attachment>> {
        let att = self
            .get(id)
            .ok_or_else(|| DbError::UnknownAttachment(id.clone()))?;
        let net = self
            .networks
            .get(&id.network)
            .ok_or_else(|| DbError::UnknownAttachment(id.clone()))?;
        for addr in addresses(att) {
            if !net.is_held(addr) {
                return Err(DbError::Inconsistent {
                    id: id.clone(),
                    reason: format!("address {addr} is not held in any block"),
                });
            }
        }
        Ok(att.clone())
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for n in self.networks.values() {
            s.networks.push(n.config.clone());
            s.attachments.extend(n.attachments.values().cloned());
            s.cursors
                .extend(n.blocks.iter().filter_map(|b| Some((b.cidr(), b.last?))));
            s.rails_seen.extend(
                n.rails_seen
                    .iter()
                    .map(|((rail, family), nic)| (n.config.name.clone(), *rail, *family, *nic)),
            );
        }
        s.released = self.released.iter().cloned().collect();
        s.released.sort();
        s
    }

    pub fn restore(&mut self, s: Snapshot) {
        for cfg in s.networks {
            self.apply_network(cfg);
        }
        for a in s.attachments {
            self.claim(a);
        }
        for (net, rail, family, nic) in s.rails_seen {
            if let Some(n) = self.networks.get_mut(&net) {
                n.rails_seen.entry((rail, family)).or_insert(nic);
            }
        }
        self.released.extend(s.released);
        for (cidr, last) in s.cursors {
            for n in self.networks.values_mut() {
                for b in n.blocks.iter_mut().filter(|b| b.cidr() == cidr) {
                    b.last = Some(last);
                }
            }
        }
    }

    /// After replay: each block continues after its last handed-out address.
    pub fn resume_all(&mut self) {
        for n in self.networks.values_mut() {
            n.blocks.iter_mut().for_each(BlockState::resume);
        }
    }

    pub fn block_stats(&self) -> Vec<BlockStats> {
        self.networks
            .values()
            .flat_map(|n| {
                n.blocks.iter().map(|b| BlockStats {
                    network: n.config.name.clone(),
                    nic: b.block.nic,
                    interface: b.block.interface,
                    cidr: b.cidr(),
                    allocated: b.alloc.allocated(),
                    free: b.alloc.free(),
                    in_plan: b.in_plan,
                })
            })
            .collect()
    }
}

fn addresses(a: &Attachment) -> impl Iterator<Item = IpAddr> + '_ {
    a.nics
        .iter()
        .flat_map(|n| n.addresses.iter().map(|x| x.addr()))
}

/// The pod's effective selection and the NICs the attach policy picks for
/// it on `net`, in ranking order: what an ADD allocates on and what external
/// IPAM's choose names (one rule for both).
pub(crate) fn pick(
    net: &NetState,
    load: &HashMap<IfName, u32>,
    args: &AddArgs,
    nics: &[Nic],
    classes: &[DeviceClass],
) -> Result<(Selection, Vec<Candidate>)> {
    let selection = effective_selection(args)?;
    let cfg = &net.config;
    let class_name = wanted_class(cfg.strategy, &cfg.policy_target, &selection)?;
    let class = class_name.and_then(|n| classes.iter().find(|c| c.name == n));
    let candidates = candidates(net, nics, load);
    let picked = select_nics(
        cfg.strategy,
        &cfg.policy_target,
        &candidates,
        &selection,
        class,
    )?;
    Ok((selection, picked.into_iter().cloned().collect()))
}

/// Standalone mode's `master` is one more narrowing of the pod's selection.
pub(crate) fn effective_selection(args: &AddArgs) -> Result<Selection> {
    let mut sel = args.selection.clone();
    if let Some(m) = args.master.as_deref().filter(|m| !m.is_empty()) {
        if !sel.masters.is_empty() && !sel.masters.iter().any(|x| x == m) {
            return Err(DbError::Invalid(format!(
                "the attachment's master {m:?} is not among the pod's masters ({})",
                sel.masters.join(", ")
            )));
        }
        sel.masters = vec![m.to_string()];
    }
    Ok(sel)
}

/// The MACs the pod's annotation asked for, on the interfaces picked: one
/// MAC serves a pod with one interface only (interfaces may share an L2),
/// and a rail's MAC needs the pod to get that rail.
fn assign_macs(
    selection: &Selection,
    out: &mut [NicAllocation],
) -> std::result::Result<(), String> {
    let rails = out
        .iter()
        .map(|a| format!("{} ({})", a.interface, a.nic))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(mac) = &selection.annotated_mac {
        if out.len() != 1 {
            return Err(format!(
                "one MAC {mac} for the pod's only interface, but it gets {} rails ({}); give one \
                 per rail (\"0=<mac>,1=<mac>\") or select one NIC",
                out.len(),
                rails
            ));
        }
        out[0].mac = Some(mac.clone());
    }
    for (rail, mac) in &selection.annotated_macs {
        match out.iter_mut().find(|a| a.interface == *rail) {
            Some(a) => a.mac = Some(mac.clone()),
            None => {
                return Err(format!(
                    "a MAC ({mac}) for rail {rail}, but the pod gets rails {rails}"
                ))
            }
        }
    }
    Ok(())
}

/// An address from the pod's pool (`selection.pool`) or listed addresses
/// (`selection.pool_ips`) in one block of a picked NIC, or why not.
fn take_pooled(
    alloc: &mut BlockAllocator,
    selection: &Selection,
    nic: &str,
    cfg: &NetworkConfig,
) -> Result<IpAddr> {
    let block = alloc.block();
    if let Some(pool) = &selection.pool {
        if !cfg.pools.iter().any(|p| &p.name == pool) {
            let known: Vec<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
            return Err(DbError::Invalid(format!(
                "pool {pool:?} is not a pool of network {} (its pools: {})",
                cfg.name,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        return match alloc.allocate_pooled(pool) {
            PoolTake::Taken(a) => Ok(a),
            PoolTake::Full { size } => Err(DbError::Invalid(format!(
                "pool {pool:?} has no free address in block {block} ({nic}): all {size} are held"
            ))),
            PoolTake::NotHere => Err(DbError::Invalid(format!(
                "pool {pool:?} has no address in block {block} ({nic}), which this pod gets on \
                 this host; list one there, or select the NICs whose blocks hold the pool's \
                 addresses (masters)"
            ))),
        };
    }
    let listed: Vec<String> = selection
        .pool_ips
        .iter()
        .filter(|a| block.contains(*a))
        .map(ToString::to_string)
        .collect();
    alloc.allocate_listed(&selection.pool_ips).ok_or_else(|| {
        DbError::Invalid(if listed.is_empty() {
            format!(
                "ip_pool lists no address in block {block} ({nic}), which this pod gets on \
                 this host"
            )
        } else {
            format!(
                "every ip_pool address in block {block} ({nic}) is held or reserved: {}",
                listed.join(", ")
            )
        })
    })
}

/// Why a requested (static) address cannot be had, naming it and, when a pod
/// holds it, that pod.
fn static_refused(
    addr: IpAddr,
    e: &railyard_core::CoreError,
    holder: Option<&Attachment>,
) -> String {
    match holder {
        Some(h) => {
            let pod = if h.pod.name.is_empty() {
                String::new()
            } else {
                format!(" (pod {}/{})", h.pod.namespace, h.pod.name)
            };
            format!(
                "requested address {addr} is held by container {} interface {}{pod}",
                h.id.container_id, h.id.ifname
            )
        }
        None => format!("requested address {addr} cannot be had: {e}"),
    }
}

/// One candidate per rail this host is owed (see [`NetState::rails_seen`]), with
/// the host's facts about its NIC. A rail whose NIC cannot carry a pod interface
/// now is a candidate marked `unusable` with the reason, so a request for every
/// NIC fails naming it rather than silently getting one rail fewer:
///
/// - a planned NIC the host does not report (gone, renamed);
/// - a rail or family owed whose block is not in the plan now (the planner
///   withdraws a block when its NIC loses the address the rail is known by);
/// - a planned NIC that no longer holds the block's `nicAddress`, the next hop
///   every other host routes the block through (the plan has not caught up yet).
///
/// A remembered rail whose NIC is gone from the host is not owed any more: the
/// NIC was removed, not broken.
pub(crate) fn candidates(
    net: &NetState,
    nics: &[Nic],
    load: &HashMap<IfName, u32>,
) -> Vec<Candidate> {
    let families: BTreeSet<usize> = net.rails_seen.keys().map(|(_, f)| *f).collect();
    let mut rails: BTreeMap<u32, (IfName, bool)> = BTreeMap::new();
    for ((rail, _), nic) in &net.rails_seen {
        rails.entry(*rail).or_insert((*nic, false));
    }
    for b in net.blocks.iter().filter(|b| b.in_plan) {
        rails.insert(b.block.interface, (b.block.nic, true));
    }
    let mut out: Vec<Candidate> = Vec::new();
    for (rail, (name, planned)) in rails {
        if out.iter().any(|c| c.name == name.as_str()) {
            continue;
        }
        let Some(nic) = nics.iter().find(|n| n.name == name.as_str()) else {
            if planned {
                out.push(Candidate {
                    name: name.to_string(),
                    interface: rail,
                    up: true,
                    unusable: Some("the host has no NIC of that name now".into()),
                    ..Candidate::default()
                });
            }
            continue;
        };
        let l = load.get(nic.name.as_str()).copied().unwrap_or(0);
        let mut c = Candidate::from_nic(nic, rail, l);
        c.unusable = unusable(net, rail, &families, nic);
        out.push(c);
    }
    out
}

/// Why the NIC of `rail` cannot carry a pod interface with every family owed.
fn unusable(net: &NetState, rail: u32, families: &BTreeSet<usize>, nic: &Nic) -> Option<String> {
    let planned: Vec<&BlockState> = net
        .blocks
        .iter()
        .filter(|b| b.in_plan && b.block.interface == rail)
        .collect();
    let mut why = Vec::new();
    for &f in families {
        if !planned.iter().any(|b| b.family == f) {
            let fam = net.family_name(rail, f);
            why.push(format!(
                "no {fam} block for it in this host's plan: has it lost its {fam} address?"
            ));
        }
    }
    for b in &planned {
        if !nic
            .addresses
            .iter()
            .any(|a| a.addr() == b.block.nic_address)
        {
            why.push(format!(
                "it does not hold {}, the address the plan routes block {} through",
                b.block.nic_address,
                b.cidr()
            ));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use railyard_core::ipam::PodRef;

    fn pod(cid: &str, addr: &str) -> Arc<Attachment> {
        Arc::new(Attachment {
            id: AttachmentId {
                network: "n".into(),
                container_id: cid.into(),
                ifname: "net1".into(),
            },
            pod: PodRef::default(),
            nics: vec![NicAllocation {
                nic: IfName::new("eth0").expect("name"),
                interface: 0,
                addresses: vec![addr.parse().expect("address")],
                gateways: Vec::new(),
                routes: Vec::new(),
                mac: None,
            }],
        })
    }

    /// The fuzzer's `regress-address-beyond-tracked-window`: a pod address
    /// with a shorter prefix than its block's makes replay build a leftover
    /// block larger than an allocator tracks. Its addresses beyond the tracked
    /// window are held (no allocator can hand them out), and CHECK says so
    /// whatever order the log replays the pods in (it said "not held" before,
    /// depending on the order).
    #[test]
    fn untracked_addresses_of_leftover_blocks_are_held_in_any_replay_order() {
        let pods = [
            pod("p1", "192.168.1.5/24"),
            // 192.0.0.0/8 tracks 192.0.0.0 to 192.0.255.255 only.
            pod("p2", "192.200.0.9/8"),
            pod("p3", "192.0.0.20/8"),
        ];
        for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0], [1, 2, 0]] {
            let mut core = Core::default();
            for i in order {
                core.claim(Arc::clone(&pods[i]));
            }
            for p in &pods {
                assert!(
                    core.check(&p.id).is_ok(),
                    "{} in order {order:?}",
                    p.id.container_id
                );
            }
        }
    }
}
