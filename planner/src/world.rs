//! The planner leader's state: every network's planner, the live host registrations,
//! and what the store holds. Pure: events go in, store operations come out. The
//! service (`service.rs`) does the IO around it, which keeps every planning decision
//! testable without etcd.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use railyard_core::{
    keys, Change, HostInventory, Network, NetworkManifest, Plan, Planner, Renumber,
};
use railyard_store::{KeyValue, Op};
use tracing::warn;

use crate::status::NetworkStatus;

/// Set to "true" on a network to accept a spec change that renumbers hosts.
pub const ALLOW_RENUMBER: &str = "railyard.dev/allow-renumber";

#[derive(Debug)]
pub struct World {
    grace_secs: u64,
    hosts: BTreeMap<String, HostInventory>,
    nets: BTreeMap<String, NetState>,
    /// Deletions of plans whose network spec is gone.
    orphans: Vec<Op>,
}

#[derive(Debug, Default)]
struct NetState {
    spec: Option<Vec<u8>>,
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

/// A valid spec change that would renumber hosts. The service asks the store whether
/// any of them hold allocations, then approves or refuses.
#[derive(Debug)]
pub struct PendingChange {
    pub network: String,
    pub renumbered: Vec<Renumber>,
    planner: Planner,
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
            hosts: BTreeMap::new(),
            nets: BTreeMap::new(),
            orphans: Vec::new(),
        }
    }

    /// Rebuilds the state from a listing of the store (a new leader's first step).
    pub fn load(
        &mut self,
        networks: &[KeyValue],
        hosts: &[KeyValue],
        plans: &[KeyValue],
        statuses: &[KeyValue],
        now: u64,
    ) -> Vec<(String, SpecOutcome)> {
        for kv in hosts {
            match kv.decode_json::<HostInventory>() {
                Ok(h) if h.validate("registration").is_ok() => {
                    self.hosts.insert(h.name.clone(), h);
                }
                _ => warn!(key = kv.key, "ignoring an unreadable host registration"),
            }
        }
        let mut metas = BTreeMap::new();
        let mut host_plans: BTreeMap<String, Vec<(String, railyard_core::HostPlan)>> =
            BTreeMap::new();
        for kv in plans {
            let Some(rest) = kv.key.strip_prefix(keys::PLANS) else {
                continue;
            };
            let Some((net, tail)) = rest.split_once('/') else {
                continue;
            };
            self.state(net)
                .written
                .insert(kv.key.clone(), kv.value.clone());
            if tail == "meta" {
                if let Ok(m) = kv.decode_json() {
                    metas.insert(net.to_string(), m);
                }
            } else if let Some(host) = tail.strip_prefix("hosts/") {
                if let Ok(p) = kv.decode_json() {
                    host_plans
                        .entry(net.to_string())
                        .or_default()
                        .push((host.to_string(), p));
                }
            }
        }
        for kv in statuses {
            let net = keys::last_segment(&kv.key).to_string();
            self.state(&net)
                .written
                .insert(kv.key.clone(), kv.value.clone());
        }
        for (net, meta) in metas {
            let hosts = host_plans.remove(&net).unwrap_or_default();
            self.state(&net).loaded = Some(Plan::assemble(meta, hosts));
        }
        let mut outcomes = Vec::new();
        for kv in networks {
            let name = keys::last_segment(&kv.key).to_string();
            let outcome = self.put_network(&name, &kv.value, now);
            outcomes.push((name, outcome));
        }
        let orphaned: Vec<String> = self
            .nets
            .iter()
            .filter(|(_, st)| st.spec.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for name in orphaned {
            self.delete_network(&name);
        }
        outcomes
    }

    fn state(&mut self, net: &str) -> &mut NetState {
        self.nets.entry(net.to_string()).or_default()
    }

    /// A network spec was written (or re-read). Invalid specs leave the previous plan
    /// in force and record the error for the status.
    pub fn put_network(&mut self, name: &str, value: &[u8], now: u64) -> SpecOutcome {
        let st = self.state(name);
        if st.spec.as_deref() == Some(value) {
            return SpecOutcome::Unchanged;
        }
        st.spec = Some(value.to_vec());
        let parsed = parse_network(name, value);
        let (net, forced) = match parsed {
            Ok(ok) => ok,
            Err(msg) => {
                st.error = Some(msg.clone());
                st.status_dirty = true;
                return SpecOutcome::Invalid(msg);
            }
        };
        let previous = match &st.active {
            Some(p) => Some(p.to_plan()),
            None => st.loaded.take(),
        };
        let planner = Planner::new(&net, previous.as_ref());
        if !planner.renumbered().is_empty() && !forced {
            return SpecOutcome::NeedsApproval(Box::new(PendingChange {
                network: name.to_string(),
                renumbered: planner.renumbered().to_vec(),
                planner,
            }));
        }
        self.commit(name, planner, now);
        SpecOutcome::Applied
    }

    pub fn approve(&mut self, change: PendingChange, now: u64) {
        self.commit(&change.network, change.planner, now);
    }

    pub fn refuse(&mut self, change: PendingChange, reason: String) {
        let st = self.state(&change.network);
        st.error = Some(reason);
        st.status_dirty = true;
    }

    fn commit(&mut self, name: &str, mut planner: Planner, now: u64) {
        planner.register_rails(self.hosts.values());
        for h in self.hosts.values() {
            planner.upsert_host(h);
        }
        let gone: Vec<String> = planner
            .hosts()
            .filter(|(n, _)| !self.hosts.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            planner.remove_host(&n, now);
        }
        planner.expire(now, self.grace_secs);
        let st = self.state(name);
        st.active = Some(planner);
        st.error = None;
        st.all_dirty = true;
        st.status_dirty = true;
    }

    /// The network was deleted: its plan and status go too (see `take_deletions`).
    pub fn delete_network(&mut self, name: &str) {
        if self.nets.remove(name).is_some() {
            self.orphans.push(Op::DeletePrefix {
                prefix: keys::plan_prefix(name),
            });
            self.orphans.push(Op::delete(keys::status(name)));
        }
    }

    /// Deletions of removed networks' keys. Written before `take_plan_ops`, in their
    /// own transactions, so a network deleted and re-created never puts and deletes
    /// one key in a single transaction.
    pub fn take_deletions(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.orphans)
    }

    pub fn host_names(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    /// A host registered or re-registered (its NICs may have changed).
    pub fn put_host(&mut self, host: HostInventory) {
        for st in self.nets.values_mut() {
            if let Some(p) = &mut st.active {
                if p.upsert_host(&host) == Change::Changed {
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

    /// Frees the indexes of hosts whose grace period is over.
    pub fn expire(&mut self, now: u64) {
        for st in self.nets.values_mut() {
            if let Some(p) = &mut st.active {
                for name in p.expire(now, self.grace_secs) {
                    st.dirty.insert(name);
                    st.status_dirty = true;
                }
            }
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
            sync_key(
                &mut st.written,
                keys::plan_meta(name),
                Some(to_json(&planner.meta())),
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
            let status = match &st.active {
                Some(p) => NetworkStatus::of(p, st.error.clone(), st.plan_revision),
                None => NetworkStatus::invalid(name, st.error.clone().unwrap_or_default()),
            };
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
}

fn parse_network(name: &str, value: &[u8]) -> Result<(Network, bool), String> {
    let manifest: NetworkManifest = serde_json::from_slice(value)
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
