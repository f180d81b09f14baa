//! The planner leader's state: every network's planner, the live host registrations,
//! and what the store holds. Pure: events go in, store operations come out. The
//! service (`service.rs`) does the IO around it, which keeps every planning decision
//! testable without etcd.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;
use railyard_core::{
    keys, Change, HostInventory, Network, NetworkManifest, NetworkSpec, Plan, Planner, Renumber,
};
use railyard_store::{KeyValue, Op};

use railyard_core::status::NetworkStatus;

mod load;
mod ranges;

pub use load::Listing;
pub use ranges::Tombstones;

pub use railyard_core::ALLOW_RENUMBER;

/// How long a rail NIC may be missing from its host's registration before the
/// host's block on that rail is withdrawn (the planner's `--nic-grace`).
pub const DEFAULT_NIC_GRACE_SECS: u64 = 30;

#[derive(Debug)]
pub struct World {
    grace_secs: u64,
    /// See [`World::with_nic_grace`].
    nic_grace_secs: u64,
    hosts: BTreeMap<String, HostInventory>,
    nets: BTreeMap<String, NetState>,
    /// Deletions of plans whose network spec is gone, and of the allocation
    /// records of hosts whose grace period ended (see `release_departed`).
    orphans: Vec<Op>,
    /// Ranges of deleted networks whose pods still hold addresses.
    tombstones: Tombstones,
    /// Hosts without a registration that hold records in a deleted network,
    /// by (network, host): since when they are known gone (see
    /// [`World::tombstone_holders`]).
    gone_holders: BTreeMap<(String, String), GoneHolder>,
    /// A range was freed (a network deleted, a tombstone cleared, a subnet
    /// changed): networks refused for overlapping are evaluated again.
    recheck: bool,
}

#[derive(Debug, Default)]
struct NetState {
    /// The latest value of the network's `/networks` key (None once deleted).
    spec: Option<Vec<u8>>,
    create_revision: i64,
    /// The mod revision of that value: the status says which value it judged.
    observed_revision: i64,
    /// The spec in force: what the plan follows and the daemons enforce.
    accepted: Option<Accepted>,
    /// The latest spec overlaps another network's range; evaluated again when
    /// a range frees.
    blocked: bool,
    active: Option<Planner>,
    /// A plan read from the store at startup, adopted when the spec is applied.
    loaded: Option<Plan>,
    error: Option<String>,
    dirty: BTreeSet<String>,
    all_dirty: bool,
    status_dirty: bool,
    plan_written: bool,
    /// What the store holds (as far as this leader knows), by key: writes are
    /// skipped when the value would not change.
    written: HashMap<String, Vec<u8>>,
    plan_revision: i64,
}

/// A host without a registration holding records in a deleted network.
#[derive(Debug, Clone, Copy)]
struct GoneHolder {
    since: u64,
    /// Its records were handed to the store for deletion.
    released: bool,
}

/// The spec a network's plan follows, published in the plan's meta key.
#[derive(Debug, Clone)]
struct Accepted {
    spec: NetworkSpec,
    subnets: Vec<IpNet>,
    /// The mod revision of the `/networks` value it came from.
    revision: i64,
}

/// A valid spec change that would renumber hosts. The service asks the store whether
/// any of them hold allocations, then approves or refuses.
#[derive(Debug)]
pub struct PendingChange {
    pub network: String,
    pub renumbered: Vec<Renumber>,
    planner: Planner,
    accepted: Accepted,
}

#[derive(Debug)]
pub enum SpecOutcome {
    Unchanged,
    Applied,
    Invalid(String),
    /// Boxed: it carries a whole planner, far larger than the other outcomes.
    NeedsApproval(Box<PendingChange>),
}

impl World {
    pub fn new(grace_secs: u64) -> Self {
        World {
            grace_secs,
            nic_grace_secs: DEFAULT_NIC_GRACE_SECS,
            hosts: BTreeMap::new(),
            nets: BTreeMap::new(),
            orphans: Vec::new(),
            tombstones: Tombstones::default(),
            gone_holders: BTreeMap::new(),
            recheck: false,
        }
    }

    /// How long a block keeps its routes after its NIC dropped out of the host's
    /// registration (an address removed, a link flapping); 0 withdraws it at
    /// once. A host's index (and so every block of it) stays held meanwhile and
    /// after, so a withdrawn block never goes to another host while this one is
    /// planned or within its departed-host grace period.
    pub fn with_nic_grace(mut self, secs: u64) -> Self {
        self.nic_grace_secs = secs;
        self
    }

    fn state(&mut self, net: &str) -> &mut NetState {
        self.nets.entry(net.to_string()).or_default()
    }

    /// A network spec was written (or re-read). A refused spec (invalid, overlapping
    /// another network, or a renumbering the service refuses) changes nothing:
    /// the accepted spec stays in force and the error goes to the status.
    pub fn put_network(&mut self, kv: &KeyValue, now: u64) -> SpecOutcome {
        let name = keys::last_segment(&kv.key).to_string();
        let st = self.state(&name);
        if st.spec.as_deref() == Some(kv.value.as_slice())
            && st.observed_revision == kv.mod_revision
        {
            return SpecOutcome::Unchanged;
        }
        st.spec = Some(kv.value.clone());
        st.create_revision = kv.create_revision;
        st.observed_revision = kv.mod_revision;
        st.status_dirty = true;
        self.evaluate(&name, now)
    }

    /// Judges the network's latest spec against the accepted one and the other
    /// networks' ranges.
    fn evaluate(&mut self, name: &str, now: u64) -> SpecOutcome {
        let Some(value) = self.nets.get(name).and_then(|st| st.spec.clone()) else {
            return SpecOutcome::Unchanged;
        };
        let (net, forced) = match parse_network(name, &value) {
            Ok(ok) => ok,
            Err(msg) => return self.refuse_with(name, msg, false),
        };
        if let Some(conflict) = self.overlap(name, &net.subnets) {
            return self.refuse_with(name, conflict, true);
        }
        let st = self.state(name);
        st.blocked = false;
        let accepted = Accepted {
            spec: net.spec.clone(),
            subnets: net.subnets.clone(),
            revision: st.observed_revision,
        };
        let previous = match &st.active {
            Some(p) => Some(p.to_plan()),
            None => st.loaded.clone(),
        };
        let planner = Planner::new(&net, previous.as_ref());
        let mut renumbered = planner.renumbered().to_vec();
        // A moved gateway is an address every host's pods may hold: the
        // daemons' gateway shims would take it from them.
        let old_gateway = st
            .accepted
            .as_ref()
            .and_then(|a| a.spec.validate(name).ok())
            .map(|n| n.gateway);
        if let Some(old) = old_gateway.filter(|g| *g != net.gateway) {
            renumbered.push(Renumber {
                subject: "every host block's gateway".into(),
                old_index: 0,
                reason: format!(
                    "spec.ipam.gateway moves it from {old} to {}, an address a pod may hold",
                    net.gateway
                ),
            });
        }
        if !renumbered.is_empty() && !forced {
            return SpecOutcome::NeedsApproval(Box::new(PendingChange {
                network: name.to_string(),
                renumbered,
                planner,
                accepted,
            }));
        }
        self.commit(name, planner, accepted, now);
        SpecOutcome::Applied
    }

    fn refuse_with(&mut self, name: &str, msg: String, blocked: bool) -> SpecOutcome {
        let st = self.state(name);
        st.error = Some(msg.clone());
        st.blocked = blocked;
        st.status_dirty = true;
        SpecOutcome::Invalid(msg)
    }

    pub fn approve(&mut self, change: PendingChange, now: u64) {
        self.commit(&change.network, change.planner, change.accepted, now);
    }

    pub fn refuse(&mut self, change: PendingChange, reason: String) {
        self.refuse_with(&change.network, reason, false);
    }

    fn commit(&mut self, name: &str, mut planner: Planner, accepted: Accepted, now: u64) {
        planner.set_nic_grace(self.nic_grace_secs);
        planner.register_rails(self.hosts.values());
        // Hosts already waiting for an index first, longest waiting first.
        for waiting in planner.waiting() {
            if let Some(h) = self.hosts.get(&waiting) {
                planner.upsert_host_at(h, now);
            }
        }
        for h in self.hosts.values() {
            planner.upsert_host_at(h, now);
        }
        // Blocks whose NIC has been missing longer than the grace period (the
        // planner may have been down when it ran out).
        planner.expire_nics(now);
        let gone: Vec<String> = planner
            .hosts()
            .map(|(n, _)| n.clone())
            .chain(planner.waiting())
            .filter(|n| !self.hosts.contains_key(n))
            .collect();
        for n in gone {
            planner.remove_host(&n, now);
        }
        let expired = planner.expire(now, self.grace_secs);
        self.release_departed(name, &expired);
        let st = self.state(name);
        let moved = st
            .accepted
            .as_ref()
            .is_some_and(|a| a.subnets != accepted.subnets);
        st.active = Some(planner);
        st.accepted = Some(accepted);
        st.loaded = None;
        st.error = None;
        st.blocked = false;
        st.all_dirty = true;
        st.status_dirty = true;
        self.recheck |= moved;
    }

    /// Networks refused because their range overlapped another one, judged
    /// again after a range freed (oldest `/networks` key first). Empty when
    /// nothing freed since the last call.
    pub fn reevaluate(&mut self, now: u64) -> Vec<(String, SpecOutcome)> {
        if !std::mem::take(&mut self.recheck) {
            return Vec::new();
        }
        let mut blocked: Vec<(i64, String)> = self
            .nets
            .iter()
            .filter(|(_, st)| st.blocked)
            .map(|(n, st)| (st.create_revision, n.clone()))
            .collect();
        blocked.sort();
        blocked
            .into_iter()
            .map(|(_, name)| {
                let outcome = self.evaluate(&name, now);
                (name, outcome)
            })
            .collect()
    }

    /// The network was deleted: its plan and status go too (see `take_deletions`),
    /// so every daemon removes its routes and rules. Its range stays reserved by
    /// a tombstone until the service finds no allocation left under it.
    pub fn delete_network(&mut self, name: &str, now: u64) {
        if let Some(st) = self.nets.remove(name) {
            self.orphans.push(Op::DeletePrefix {
                prefix: keys::plan_prefix(name),
            });
            self.orphans.push(Op::delete(keys::status(name)));
            // Hosts already in their grace period keep its start: the plan
            // that recorded it goes now.
            for (host, h) in st.active.iter().flat_map(|p| p.hosts()) {
                if let Some(since) = h.departed_at {
                    self.gone_holders.insert(
                        (name.to_string(), host.clone()),
                        GoneHolder {
                            since,
                            released: false,
                        },
                    );
                }
            }
            if let Some(a) = st.accepted {
                self.tombstones.bury(name, a.subnets, now);
            }
            self.recheck = true;
        }
    }

    /// Deletions of removed networks' keys, and tombstone writes. Written before
    /// `take_plan_ops`, in their own transactions, so a network deleted and
    /// re-created never puts and deletes one key in a single transaction.
    pub fn take_deletions(&mut self) -> Vec<Op> {
        let mut ops = std::mem::take(&mut self.orphans);
        ops.extend(self.tombstones.take_ops());
        ops
    }

    /// Deleted networks whose range is still reserved.
    pub fn tombstones(&self) -> Vec<String> {
        self.tombstones.names()
    }

    /// What a tombstoned network still holds, as record counts by host. A
    /// deleted network has no plan, so no plan entry expires to release the
    /// records of a host that left for good (`release_departed`): a host
    /// without a registration for the whole grace period (counted from its
    /// `departedAt` in the plan the network had, else from when this leader
    /// first found it unregistered) has its records deleted here, the same
    /// rule. Without it, one host removed without a drain would keep the
    /// range reserved forever. The rest is counted; at 0 the range frees.
    pub fn tombstone_holders(&mut self, name: &str, held: &BTreeMap<String, usize>, now: u64) {
        self.gone_holders
            .retain(|(net, host), _| net != name || held.contains_key(host));
        let mut count = 0;
        for (host, n) in held {
            let key = (name.to_string(), host.clone());
            if self.hosts.contains_key(host) {
                self.gone_holders.remove(&key);
                count += n;
                continue;
            }
            let gone = self.gone_holders.entry(key).or_insert(GoneHolder {
                since: now,
                released: false,
            });
            if gone.released {
                continue;
            }
            if now.saturating_sub(gone.since) >= self.grace_secs {
                gone.released = true;
                tracing::info!(
                    network = name,
                    host = host.as_str(),
                    records = n,
                    "deleted network: a host unregistered longer than the grace period holds records there; releasing them"
                );
                self.orphans.push(Op::DeletePrefix {
                    prefix: keys::allocations_of_host(name, host),
                });
            } else {
                count += n;
            }
        }
        self.tombstone_allocations(name, count);
        if !self.tombstones.names().iter().any(|n| n == name) {
            self.gone_holders.retain(|(net, _), _| net != name);
        }
    }

    /// How many allocations a tombstoned network still has; at 0 its range frees.
    pub fn tombstone_allocations(&mut self, name: &str, count: usize) {
        if self.tombstones.set_allocations(name, count) {
            self.recheck = true;
        }
    }

    /// Why `subnets` cannot be given to `name`: another accepted network or a
    /// tombstone holds an overlapping range.
    fn overlap(&self, name: &str, subnets: &[IpNet]) -> Option<String> {
        for (other, st) in &self.nets {
            let Some(a) = st.accepted.as_ref().filter(|_| other != name) else {
                continue;
            };
            if let Some((mine, theirs)) = ranges::first_overlap(subnets, &a.subnets) {
                return Some(format!(
                    "spec.subnet: {mine} overlaps {theirs} of network {other}, which holds it; network {name} is refused (it gets no plan and no addresses) until {other} releases that range"
                ));
            }
        }
        self.tombstones.overlap(name, subnets)
    }

    pub fn host_names(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    /// A host registered or re-registered at `now` (its NICs may have changed).
    /// A rail NIC it no longer lists keeps its block for the NIC grace period.
    pub fn put_host(&mut self, host: HostInventory, now: u64) {
        for st in self.nets.values_mut() {
            if let Some(p) = &mut st.active {
                if p.upsert_host_at(&host, now) == Change::Changed {
                    st.dirty.insert(host.name.clone());
                    st.status_dirty = true;
                }
            }
        }
        self.hosts.insert(host.name.clone(), host);
    }

    /// A registration vanished (its lease expired): the grace period starts.
    pub fn delete_host(&mut self, name: &str, now: u64) {
        self.hosts.remove(name);
        for st in self.nets.values_mut() {
            if let Some(p) = &mut st.active {
                if p.remove_host(name, now) == Change::Changed {
                    st.dirty.insert(name.to_string());
                    st.status_dirty = true;
                }
            }
        }
    }

    /// Frees the indexes of hosts whose grace period is over, and withdraws the
    /// blocks whose NIC has been missing for the whole NIC grace period.
    /// Hosts waiting for an index are planned as soon as one frees, longest
    /// waiting first, before any later joiner can take it.
    pub fn expire(&mut self, now: u64) {
        let mut released = Vec::new();
        for (net, st) in &mut self.nets {
            if let Some(p) = &mut st.active {
                let withdrawn = p.expire_nics(now);
                if !withdrawn.is_empty() {
                    for name in withdrawn {
                        tracing::info!(
                            network = net.as_str(),
                            host = name.as_str(),
                            "a NIC missing longer than the NIC grace period: its block is withdrawn"
                        );
                        st.dirty.insert(name);
                    }
                    st.status_dirty = true;
                }
                let freed = p.expire(now, self.grace_secs);
                if freed.is_empty() {
                    continue;
                }
                for name in freed {
                    released.push((net.clone(), name.clone()));
                    st.dirty.insert(name);
                }
                st.status_dirty = true;
                for name in p.waiting() {
                    if let Some(h) = self.hosts.get(&name) {
                        if p.upsert_host_at(h, now) == Change::Changed {
                            st.dirty.insert(name);
                        }
                    }
                }
            }
        }
        for (net, host) in released {
            self.release_departed(&net, std::slice::from_ref(&host));
        }
    }

    /// Hosts whose grace period ended in `network` left for good (removed without
    /// a drain, or renamed: the old name never comes back). Their allocation
    /// records go with their plan entry, so a renamed node's old records are not
    /// left behind forever and a deleted network's tombstone can clear. Nothing
    /// live is lost: a host that does return re-mirrors what its own allocation
    /// log holds, and its old index was already free for others.
    fn release_departed(&mut self, network: &str, hosts: &[String]) {
        for host in hosts {
            tracing::info!(
                network,
                host,
                "host departed longer than the grace period: releasing its allocation records"
            );
            self.orphans.push(Op::DeletePrefix {
                prefix: keys::allocations_of_host(network, host),
            });
        }
    }

    /// The plan writes needed to bring the store in line, each key at most once.
    /// Marks them as written: if the write fails, leadership is lost anyway and the
    /// next leader starts from a fresh listing.
    pub fn take_plan_ops(&mut self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (name, st) in &mut self.nets {
            let Some(planner) = &st.active else { continue };
            if !st.all_dirty && st.dirty.is_empty() {
                continue;
            }
            let before = ops.len();
            let candidates: BTreeSet<String> = if st.all_dirty {
                let prefix = keys::plan_hosts_prefix(name);
                planner
                    .hosts()
                    .map(|(h, _)| h.clone())
                    .chain(
                        st.written
                            .keys()
                            .filter_map(|k| k.strip_prefix(prefix.as_str()).map(str::to_string)),
                    )
                    .collect()
            } else {
                std::mem::take(&mut st.dirty)
            };
            for host in candidates {
                let value = planner.host(&host).map(to_json);
                sync_key(
                    &mut st.written,
                    keys::plan_host(name, &host),
                    value,
                    &mut ops,
                );
            }
            let mut meta = planner.meta();
            if let Some(a) = &st.accepted {
                meta.spec = Some(a.spec.clone());
                meta.spec_revision = a.revision;
            }
            sync_key(
                &mut st.written,
                keys::plan_meta(name),
                Some(to_json(&meta)),
                &mut ops,
            );
            st.dirty.clear();
            st.all_dirty = false;
            st.plan_written |= ops.len() > before;
        }
        ops
    }

    /// Status writes, given the store revision the plan writes reached.
    pub fn take_status_ops(&mut self, plan_revision: i64) -> Vec<Op> {
        let mut ops = Vec::new();
        for (name, st) in &mut self.nets {
            if st.plan_written {
                st.plan_revision = plan_revision;
                st.plan_written = false;
                st.status_dirty = true;
            }
            if !st.status_dirty {
                continue;
            }
            st.status_dirty = false;
            let mut status = match &st.active {
                Some(p) => NetworkStatus::of(p, st.error.clone(), st.plan_revision),
                None => NetworkStatus::invalid(name, st.error.clone().unwrap_or_default()),
            };
            status.applied_revision = st.accepted.as_ref().map_or(0, |a| a.revision);
            status.observed_revision = st.observed_revision;
            sync_key(
                &mut st.written,
                keys::status(name),
                Some(to_json(&status)),
                &mut ops,
            );
        }
        ops
    }

    pub fn planner(&self, network: &str) -> Option<&Planner> {
        self.nets.get(network).and_then(|s| s.active.as_ref())
    }

    pub fn networks(&self) -> impl Iterator<Item = &str> {
        self.nets.keys().map(String::as_str)
    }

    /// The subnets in force for `network` (its accepted spec's), if any.
    pub fn accepted_subnets(&self, network: &str) -> Option<&[IpNet]> {
        self.nets
            .get(network)
            .and_then(|st| st.accepted.as_ref())
            .map(|a| a.subnets.as_slice())
    }
}

fn parse_network(name: &str, value: &[u8]) -> Result<(Network, bool), String> {
    let manifest: NetworkManifest = railyard_store::decode_value(&keys::network(name), value)
        .map_err(|e| format!("network {name}: the stored spec is not a MultiNicNetwork: {e}"))?;
    if manifest.metadata.name != name {
        return Err(format!(
            "metadata.name: {:?} does not match the key's network name {name:?}",
            manifest.metadata.name
        ));
    }
    let forced = manifest
        .metadata
        .annotations
        .get(ALLOW_RENUMBER)
        .is_some_and(|v| v == "true");
    manifest
        .validate()
        .map(|n| (n, forced))
        .map_err(|e| e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Plan types serialize infallibly (string keys, no custom serializers).
    serde_json::to_vec(v).unwrap_or_default()
}

fn sync_key(
    written: &mut HashMap<String, Vec<u8>>,
    key: String,
    value: Option<Vec<u8>>,
    ops: &mut Vec<Op>,
) {
    match value {
        Some(v) if written.get(&key) == Some(&v) => {}
        Some(v) => {
            ops.push(Op::put(key.clone(), v.clone()));
            written.insert(key, v);
        }
        None => {
            if written.remove(&key).is_some() {
                ops.push(Op::delete(key));
            }
        }
    }
}
