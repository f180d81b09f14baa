//! HostInterface and CIDR views: what etcd holds, and which objects to apply or
//! delete given what was applied last.
//!
//! Pure, so the burst behaviour is tested without IO: etcd updates only mark the
//! hosts and networks they touch, and [`decide`] applies an object only when its
//! content differs from the last one applied. A thousand registrations are then a
//! thousand small applies (one per new host) and a handful of CIDR applies (one per
//! coalesced batch), not a rewrite of every object per event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use kube::core::ClusterResourceScope;
use kube::Resource;
use railyard_core::{keys, HostInventory, HostPlan, Plan, PlanMeta};
use railyard_store::{Change, KeyValue, Mirror as KeyedMirror, WatchUpdate};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

use super::crd::{
    Cidr, CidrSpec, HostInterface, HostInterfaceSpec, IpAllocation, IpAllocationSpec,
};
use super::nad::validate_object_name;
use super::{LABEL_MANAGED_BY, MANAGED_BY};
use railyard_core::ipam::AllocationRecord;

/// One network's plan as stored: the meta key and one key per host.
#[derive(Debug, Clone, Default, PartialEq)]
struct StoredPlan {
    meta: Option<PlanMeta>,
    hosts: BTreeMap<String, HostPlan>,
}

/// The registrations and plans, as followed from etcd.
#[derive(Debug, Default)]
pub struct Mirror {
    /// By key (`/railyard/v1/hosts/<name>`).
    hosts: KeyedMirror<HostInventory>,
    plans: BTreeMap<String, StoredPlan>,
    /// By key (`/railyard/v1/allocations/<net>/<host>/<cid>/<ifname>`).
    allocations: KeyedMirror<AllocationRecord>,
}

impl Mirror {
    /// Takes one update of `/railyard/v1/hosts/`; returns the hosts it touched (for a
    /// snapshot: every host before or after it, since any of them may have changed).
    pub fn follow_hosts(&mut self, update: &WatchUpdate) -> BTreeSet<String> {
        // Unreadable (a newer daemon's format?): the mirror keeps what we knew.
        let touched = self
            .hosts
            .apply(update, |kv| host_of(&kv.key).and_then(|_| decode(kv)));
        touched
            .iter()
            .filter_map(|key| host_of(key).map(str::to_string))
            .collect()
    }

    /// Takes one update of `/railyard/v1/allocations/`; returns the IPAllocation
    /// names (`<network>.<host>`) it touched.
    pub fn follow_allocations(&mut self, update: &WatchUpdate) -> BTreeSet<String> {
        let touched = self.allocations.apply(update, |kv| {
            allocation_view_name(&kv.key).and_then(|_| decode(kv))
        });
        touched
            .iter()
            .filter_map(|key| allocation_view_name(key))
            .collect()
    }

    /// The IPAllocation `<network>.<host>`: `None` once its last record is gone.
    pub fn allocation_view(&self, name: &str) -> Option<IpAllocationSpec> {
        let (network, host) = name.split_once('.')?;
        let prefix = keys::allocations_of_host(network, host);
        let mut records = self
            .allocations
            .prefixed(&prefix)
            .map(|(_, r)| r)
            .peekable();
        records.peek()?;
        Some(IpAllocationSpec::of(network, host, records))
    }

    pub fn allocation_names(&self) -> BTreeSet<String> {
        self.allocations
            .keys()
            .filter_map(|k| allocation_view_name(k))
            .collect()
    }

    /// Takes one update of `/railyard/v1/plans/`; returns the networks it touched
    /// (for a snapshot: every network before or after it).
    pub fn follow_plans(&mut self, update: &WatchUpdate) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        if update.is_snapshot() {
            touched.extend(self.plans.keys().cloned());
        }
        let known: Vec<String> = self
            .plans
            .iter()
            .flat_map(|(net, p)| {
                let meta = p.meta.as_ref().map(|_| keys::plan_meta(net));
                let hosts = p.hosts.keys().map(|h| keys::plan_host(net, h));
                meta.into_iter().chain(hosts)
            })
            .collect();
        for change in update.changes(&known) {
            let net = match change {
                Change::Put(kv) => self.put_plan_key(kv),
                Change::Delete(key) => self.delete_plan_key(&key),
            };
            touched.extend(net);
        }
        if update.is_snapshot() {
            // A network the listing has no key of is gone, also one whose keys
            // were all unreadable (it holds nothing, so no key of it was known).
            let listed: BTreeSet<&str> = update
                .keys()
                .filter_map(|k| plan_key(k).map(|(net, _)| net))
                .collect();
            self.plans.retain(|net, p| {
                listed.contains(net.as_str()) || p.meta.is_some() || !p.hosts.is_empty()
            });
        }
        touched
    }

    /// Stores one plan key. An unreadable value keeps what was known.
    fn put_plan_key(&mut self, kv: &KeyValue) -> Option<String> {
        let (net, part) = plan_key(&kv.key)?;
        let entry = self.plans.entry(net.to_string()).or_default();
        match part {
            PlanPart::Meta => {
                if let Some(meta) = decode(kv) {
                    entry.meta = Some(meta);
                }
            }
            PlanPart::Host(host) => {
                if let Some(h) = decode(kv) {
                    entry.hosts.insert(host.to_string(), h);
                }
            }
        }
        Some(net.to_string())
    }

    fn delete_plan_key(&mut self, key: &str) -> Option<String> {
        let (net, part) = plan_key(key)?;
        if let Some(entry) = self.plans.get_mut(net) {
            match part {
                PlanPart::Meta => entry.meta = None,
                PlanPart::Host(host) => {
                    entry.hosts.remove(host);
                }
            }
            if entry.meta.is_none() && entry.hosts.is_empty() {
                self.plans.remove(net);
            }
        }
        Some(net.to_string())
    }

    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().filter_map(|key| host_of(key))
    }

    pub fn network_names(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }

    /// The HostInterface of a registered host, with its NICs' rails in every
    /// network planned on it.
    pub fn host_view(&self, host: &str) -> Option<HostInterfaceSpec> {
        let inventory = self.hosts.get(&keys::host(host))?;
        let mut rails: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        for (net, stored) in &self.plans {
            for b in stored.hosts.get(host).into_iter().flat_map(|h| &h.blocks) {
                rails
                    .entry(b.nic.to_string())
                    .or_default()
                    .insert(net.clone(), b.interface);
            }
        }
        Some(HostInterfaceSpec::with_rails(inventory, &rails))
    }

    /// The hosts whose view a plan update may change. A NIC's rails come from
    /// its host's own plan entry, so events change only the hosts their keys
    /// name (a join in a 10,000-host network is one view, not 10,000); a
    /// snapshot (a re-list, rare) may have dropped any entry, so it touches
    /// every registered host.
    pub fn hosts_of_plans(&self, update: &WatchUpdate) -> BTreeSet<String> {
        if update.is_snapshot() {
            return self.host_names().map(str::to_string).collect();
        }
        update
            .keys()
            .filter_map(|k| match plan_key(k)? {
                (_, PlanPart::Host(h)) => Some(h.to_string()),
                (_, PlanPart::Meta) => None,
            })
            .collect()
    }

    /// The CIDR of a planned network: none until the planner wrote its meta key
    /// (host keys alone are a plan being written or being deleted).
    pub fn cidr_view(&self, network: &str) -> Option<CidrSpec> {
        let stored = self.plans.get(network)?;
        let meta = stored.meta.clone()?;
        Some(CidrSpec::from(&Plan::assemble(meta, stored.hosts.clone())))
    }
}

/// `<network>.<host>` of an allocation key. Network names are DNS labels (no
/// dot), so the first dot splits the name again.
fn allocation_view_name(key: &str) -> Option<String> {
    let rest = key.strip_prefix(keys::ALLOCATIONS)?;
    let mut parts = rest.splitn(3, '/');
    let (net, host) = (parts.next()?, parts.next()?);
    (!net.is_empty() && !host.is_empty() && !net.contains('.') && parts.next().is_some())
        .then(|| format!("{net}.{host}"))
}

enum PlanPart<'a> {
    Meta,
    Host(&'a str),
}

fn plan_key(key: &str) -> Option<(&str, PlanPart<'_>)> {
    let (net, tail) = key.strip_prefix(keys::PLANS)?.split_once('/')?;
    let part = match tail {
        "meta" => PlanPart::Meta,
        _ => PlanPart::Host(tail.strip_prefix("hosts/").filter(|h| !h.is_empty())?),
    };
    (!net.is_empty()).then_some((net, part))
}

fn host_of(key: &str) -> Option<&str> {
    key.strip_prefix(keys::HOSTS)
        .filter(|h| !h.is_empty() && !h.contains('/'))
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Option<T> {
    kv.decode_json()
        .map_err(|e| warn!(key = kv.key, error = %e, "unreadable value; keeping its last view"))
        .ok()
}

/// What to send to the API server for one kind of view.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes<S> {
    /// Objects whose content differs from the last one applied (or that were never
    /// applied).
    pub apply: Vec<(String, S)>,
    /// Objects applied before whose host or network is gone from etcd.
    pub delete: Vec<String>,
    /// Names in etcd that cannot be Kubernetes object names (etcd allows host names
    /// with capitals or `_`), with the reason; they get no view.
    pub unnamable: Vec<(String, String)>,
}

impl<S> Changes<S> {
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty() && self.unnamable.is_empty()
    }
}

/// The changes for the `touched` names: `want` is the view etcd asks for (`None`:
/// no such host or network any more), `applied` what was applied last.
pub fn decide<S: PartialEq + Clone>(
    touched: &BTreeSet<String>,
    want: impl Fn(&str) -> Option<S>,
    applied: &BTreeMap<String, S>,
) -> Changes<S> {
    let mut out = Changes {
        apply: Vec::new(),
        delete: Vec::new(),
        unnamable: Vec::new(),
    };
    for name in touched {
        match (want(name), applied.get(name)) {
            (Some(w), Some(a)) if w == *a => {}
            (Some(w), _) => match validate_object_name("metadata.name", name) {
                Ok(()) => out.apply.push((name.clone(), w)),
                Err(e) => out.unnamable.push((name.clone(), e.to_string())),
            },
            (None, Some(_)) => out.delete.push(name.clone()),
            (None, None) => {}
        }
    }
    out
}

/// A kind of view: one object per etcd name, cluster-scoped, content in `spec`.
pub trait View:
    Resource<DynamicType = (), Scope = ClusterResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    type Spec: PartialEq + Clone + Debug + Send + Sync + 'static;
    fn with_spec(name: &str, spec: Self::Spec) -> Self;
    fn spec_of(&self) -> &Self::Spec;
}

impl View for HostInterface {
    type Spec = HostInterfaceSpec;
    fn with_spec(name: &str, spec: HostInterfaceSpec) -> Self {
        HostInterface::new(name, spec)
    }
    fn spec_of(&self) -> &HostInterfaceSpec {
        &self.spec
    }
}

impl View for IpAllocation {
    type Spec = IpAllocationSpec;
    fn with_spec(name: &str, spec: IpAllocationSpec) -> Self {
        IpAllocation::new(name, spec)
    }
    fn spec_of(&self) -> &IpAllocationSpec {
        &self.spec
    }
}

impl View for Cidr {
    type Spec = CidrSpec;
    fn with_spec(name: &str, spec: CidrSpec) -> Self {
        Cidr::new(name, spec)
    }
    fn spec_of(&self) -> &CidrSpec {
        &self.spec
    }
}

/// The object as applied: the spec and the label that marks it railyard's (the
/// listing, and so every delete, is limited to objects carrying it).
pub fn object<V: View>(name: &str, spec: V::Spec) -> V {
    let mut obj = V::with_spec(name, spec);
    obj.meta_mut().labels = Some(BTreeMap::from([(
        LABEL_MANAGED_BY.to_string(),
        MANAGED_BY.to_string(),
    )]));
    obj
}

pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY}")
}
