//! A new leader's first step: rebuilding the world from a listing of the store.

use std::collections::{BTreeMap, HashMap};

use railyard_core::{keys, HostInventory, Plan, PlanMeta, Planner};
use railyard_store::{KeyValue, Op};
use tracing::warn;

use super::{Accepted, SpecOutcome, World};

/// What a new leader lists from the store before it plans.
#[derive(Debug, Default)]
pub struct Listing {
    pub networks: Vec<KeyValue>,
    pub hosts: Vec<KeyValue>,
    pub plans: Vec<KeyValue>,
    pub statuses: Vec<KeyValue>,
    pub tombstones: Vec<KeyValue>,
}

impl Listing {
    /// The first value of a format version newer than this build reads, as
    /// the error naming its key and versions (see `railyard_store::format_version`),
    /// among those the leader acts on: plans, statuses and tombstones (it
    /// rewrites them) and registrations (one it could not read would look
    /// like a departed host, whose plan entry and allocation records go when
    /// its grace period ends). A `/networks` value is left out: it is what a
    /// user asked for, and one this build cannot read is refused as a spec
    /// (its status says why), as any unreadable spec is, without stopping
    /// the planning of every other network.
    pub fn newer_format(&self) -> Option<railyard_store::StoreError> {
        [&self.hosts, &self.plans, &self.statuses, &self.tombstones]
            .into_iter()
            .flatten()
            .find_map(
                |kv| match railyard_store::format_version(&kv.key, &kv.value) {
                    Err(e @ railyard_store::StoreError::NewerFormat { .. }) => Some(e),
                    _ => None,
                },
            )
    }
}

impl World {
    /// Rebuilds the state from a listing of the store (a new leader's first step).
    ///
    /// Networks are judged in a fixed order so overlapping ones resolve the same
    /// way on every leader: a network with a plan first (it is live on the hosts),
    /// then the oldest `/networks` key (create revision), then by name. A plan's
    /// published spec is taken back first, so a change refused before the restart
    /// stays refused and the accepted spec stays in force.
    pub fn load(&mut self, store: &Listing, now: u64) -> Vec<(String, SpecOutcome)> {
        let Listing {
            networks,
            hosts,
            plans,
            statuses,
            tombstones,
        } = store;
        self.tombstones.load(tombstones);
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
        let created: HashMap<&str, i64> = networks
            .iter()
            .map(|kv| (keys::last_segment(&kv.key), kv.create_revision))
            .collect();
        let mut published: Vec<(i64, String, Accepted)> = Vec::new();
        for (net, meta) in metas {
            let meta: PlanMeta = meta;
            if let Some(spec) = &meta.spec {
                match spec.validate(&net) {
                    Ok(n) => published.push((
                        created.get(net.as_str()).copied().unwrap_or(i64::MAX),
                        net.clone(),
                        Accepted {
                            spec: spec.clone(),
                            subnets: n.subnets,
                            revision: meta.spec_revision,
                        },
                    )),
                    Err(e) => {
                        warn!(network = net, error = %e, "the plan's published spec is invalid")
                    }
                }
            }
            let hosts = host_plans.remove(&net).unwrap_or_default();
            self.state(&net).loaded = Some(Plan::assemble(meta, hosts));
        }
        published.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, net, accepted) in published {
            self.restore(&net, accepted, now);
        }
        let mut order: Vec<&KeyValue> = networks.iter().collect();
        order.sort_by_key(|kv| {
            let name = keys::last_segment(&kv.key);
            let live = self.nets.get(name).is_some_and(|st| st.loaded.is_some());
            (!live, kv.create_revision, name.to_string())
        });
        let mut outcomes = Vec::new();
        for kv in order {
            let name = keys::last_segment(&kv.key).to_string();
            let outcome = self.put_network(kv, now);
            outcomes.push((name, outcome));
        }
        let orphaned: Vec<String> = self
            .nets
            .iter()
            .filter(|(_, st)| st.spec.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for name in orphaned {
            self.delete_network(&name, now);
        }
        outcomes
    }

    /// Takes back a plan's published spec at load: the spec in force until the
    /// `/networks` value is judged. A legacy plan overlapping one restored
    /// before it (written before overlaps were refused) loses: its plan goes.
    fn restore(&mut self, name: &str, accepted: Accepted, now: u64) {
        if let Some(conflict) = self.overlap(name, &accepted.subnets) {
            warn!(network = name, %conflict, "dropping the plan of an overlapping network");
            let st = self.state(name);
            st.loaded = None;
            st.written.clear();
            self.orphans.push(Op::DeletePrefix {
                prefix: keys::plan_prefix(name),
            });
            return;
        }
        let Ok(net) = accepted.spec.validate(name) else {
            return;
        };
        let loaded = self.state(name).loaded.clone();
        let planner = Planner::new(&net, loaded.as_ref());
        self.commit(name, planner, accepted, now);
    }
}
