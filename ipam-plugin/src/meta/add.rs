//! railyard-cni's ADD, which is most of its logic: ask IPAM, plan one
//! member per NIC, create them, and undo everything if one fails.
//!
//! The order serves one rule: the daemon's record and the pod's interfaces
//! change together. IPAM comes first, so a re-ADD (ADD without DEL) that
//! fails there leaves a working attachment as it was; a re-ADD that would
//! build the same interfaces, which still pass their delegate's CHECK,
//! returns the recorded result without touching them (a runtime retrying
//! an ADD it timed out on must not cut the pod off); any other re-ADD
//! replaces them, and a failure from then on rolls back interfaces and
//! allocation together.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::chain;
use super::devices::{self, PodDevices};
use super::layout::NicPlan;
use super::lock::AttachmentLock;
use super::mac;
use super::spares::{self, Want};
use super::state::{Member, State};
use super::{about_member, concurrently, layout, member_env, routing, via_gateway, Run};
use crate::cni::{AttachRequest, CniEnv, CniResult, Command};
use crate::delegate::builtin;
use crate::Error;

/// The link host-device moves into the pod for one rail, when railyard-cni
/// chooses it ([`spares`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    /// A spare link of the rail, by name (`device`).
    Spare(String),
    /// The runtime's `runtimeConfig.deviceID` (`pciBusID`).
    Pci(String),
    /// The pod's own VF of the rail, from the kubelet ([`devices`]).
    Vf(devices::Vf),
}

impl Pick {
    /// Writes the pick into host-device's config in place of the rail NIC
    /// and returns what the record's `device` holds.
    fn apply(self, config: &mut Map<String, Value>) -> Option<String> {
        match self {
            Pick::Spare(name) => {
                config.insert(spares::DEVICE.into(), name.clone().into());
                Some(name)
            }
            Pick::Pci(id) => {
                config.remove(spares::DEVICE);
                config.insert(spares::PCI_BUS_ID.into(), id.into());
                None
            }
            // sriov takes the VF's PCI address as deviceID; host-device its
            // netdev, or its PCI address when it has none (bound to vfio).
            Pick::Vf(vf) => {
                match (config.get("type").and_then(Value::as_str), vf.netdev) {
                    (Some("host-device"), Some(netdev)) => {
                        config.insert(spares::DEVICE.into(), netdev.into());
                    }
                    (Some("host-device"), None) => {
                        config.insert(spares::PCI_BUS_ID.into(), vf.pci.into());
                    }
                    _ => {
                        config.insert(spares::DEVICE_ID.into(), vf.pci.into());
                    }
                }
                None
            }
        }
    }
}

impl Run {
    /// ADD, holding the lock; the order of its steps is the module doc's.
    pub(super) fn add(&mut self, req: &AttachRequest) -> Result<CniResult, Error> {
        let a = &req.attachment;
        let recorded = self.store.load(&a.container_id, &a.ifname)?;
        // Checked before anything is allocated (only ADD reads them: a DEL
        // must not fail on a MAC its ADD refused).
        let macs = mac::Macs::parse(&req.config, &self.meta.delegate_type)?;
        // Before IPAM: the daemon must know which rails the pod can be
        // served on, so a missing VF allocates nothing.
        let pod_devices = match &self.meta.devices {
            Some(cfg) => devices::lookup(cfg, &req.env, &cfg.kubelet())?,
            None => None,
        };
        let (allocated, recorded) = if self.meta.external.is_some() {
            // The user's IPAM plugin, once per NIC the daemon chooses.
            match self.external_add(req, recorded, pod_devices.as_ref()) {
                Ok(done) => done,
                Err(e) if self.external.is_empty() => return Err(e),
                Err(e) => return Err(self.rollback(e, None, &req.env)),
            }
        } else {
            let allocated = match &pod_devices {
                Some(d) => {
                    let mut conf = self.ipam_conf.clone();
                    conf.insert(devices::IPAM_KEY.into(), d.for_ipam());
                    self.ipam.add(&req.env, &conf)?
                }
                None => self.ipam.add(&req.env, &self.ipam_conf)?,
            };
            (allocated, recorded)
        };
        // host-device: held from choosing spares until they are recorded.
        let mut spares_lock = None;
        let plan = self.plan(
            req,
            &allocated,
            recorded.as_ref(),
            (pod_devices.as_ref(), &macs),
            &mut spares_lock,
        );
        let planned = match plan {
            Ok(planned) => planned,
            // The daemon answered a re-ADD with the recorded attachment's
            // own allocation: releasing it would strand its interfaces.
            Err(e) if recorded.is_some() => return Err(e),
            Err(e) => return Err(self.rollback(e, None, &req.env)),
        };
        if let Some(old) = recorded {
            if let Some(result) = self.intact(&old, &planned, &req.env, &allocated) {
                return Ok(result);
            }
            // Free the interface names. If one survives, the old record
            // stays with the allocation, for the runtime's DEL to finish.
            if let Some(e) = self.del_members(&old, &req.env) {
                return Err(e);
            }
        }
        let mut progress = None;
        match self.create(req, planned, &allocated, &mut progress, spares_lock) {
            Ok(result) => Ok(result),
            Err(cause) => Err(self.rollback(cause, progress.as_ref(), &req.env)),
        }
    }

    /// The record ADD will write: one member per NIC of the IPAM answer,
    /// each with its delegate config, none created yet. Choosing host-device
    /// spares takes the host-wide lock into `spares_lock`, for the caller
    /// to hold until the record is written.
    fn plan(
        &self,
        req: &AttachRequest,
        allocated: &CniResult,
        recorded: Option<&State>,
        (pod_devices, macs): (Option<&PodDevices>, &mac::Macs),
        spares_lock: &mut Option<AttachmentLock>,
    ) -> Result<State, Error> {
        let a = &req.attachment;
        let plans = layout::split_by_nic(allocated, &self.meta.ipam_type)?;
        let rails: Vec<Option<u32>> = plans.iter().map(|p| p.rail).collect();
        let names = self.meta.ifname_template.render_all(&a.ifname, &rails)?;
        let picks = match pod_devices.filter(|d| !d.vfs.is_empty()) {
            Some(d) => vf_picks(d, &plans)?,
            None => self.pick_devices(req, &plans, recorded, spares_lock)?,
        };
        let mac_of = macs.assign(&plans, &self.meta.delegate_type)?;
        let gpus = pod_devices.map(|d| d.gpus.as_slice()).unwrap_or_default();
        let cfg = self.meta.devices.as_ref();
        let nic_field = self.meta.nic_field.as_deref();
        let members = plans
            .iter()
            .zip(names)
            .zip(picks)
            .zip(mac_of)
            .map(|(((plan, ifname), pick), chosen_mac)| {
                let mut config = layout::delegate_config(
                    &self.meta.delegate,
                    &self.name,
                    self.version,
                    nic_field,
                    plan,
                );
                let device = pick.and_then(|p| p.apply(&mut config));
                mac::apply(&mut config, chosen_mac);
                let chain = chain::for_member(&self.meta.chain, &config);
                Member {
                    ifname,
                    nic: plan.nic.clone(),
                    rail: plan.rail,
                    nic_field: nic_field.map(str::to_owned),
                    device,
                    choice: cfg.and_then(|c| devices::choice(c, gpus, &plan.nic)),
                    chain,
                    config,
                    result: None,
                }
            })
            .collect();
        Ok(State {
            network: self.name.clone(),
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
            netns: a.netns.clone(),
            policy_routing: self.meta.policy_routing,
            members,
            external_ipam: self.external.clone(),
        })
    }

    /// host-device's link for each NIC of `plans` (all `None` for other
    /// delegates): the runtime's `deviceID` for a one-rail pod, else a
    /// spare per rail, chosen under the host-wide lock (put in
    /// `spares_lock`) against every other attachment's record. See
    /// [`spares`] for why and how.
    fn pick_devices(
        &self,
        req: &AttachRequest,
        plans: &[NicPlan],
        recorded: Option<&State>,
        spares_lock: &mut Option<AttachmentLock>,
    ) -> Result<Vec<Option<Pick>>, Error> {
        let Some(template) = &self.meta.spares else {
            return Ok(vec![None; plans.len()]);
        };
        // The CNI convention first, then where Multus puts a device plugin's
        // choice (it adds `deviceID` to the top level of the config).
        let given = |v: &&Value| !v.is_null() && v.as_str() != Some("");
        let device_id = [
            (
                spares::RUNTIME_DEVICE_ID,
                req.config
                    .runtime_config
                    .as_ref()
                    .and_then(|rc| rc.get(spares::DEVICE_ID)),
            ),
            (spares::DEVICE_ID, req.config.extra.get(spares::DEVICE_ID)),
        ]
        .into_iter()
        .find_map(|(field, v)| v.filter(given).map(|v| (field, v)));
        if let Some((field, id)) = device_id {
            let id = spares::device_id(field, id)?;
            if plans.len() != 1 {
                let nics: Vec<&str> = plans.iter().map(|p| p.nic.as_str()).collect();
                return Err(Error::invalid_config(
                    field,
                    format!(
                        "= {id:?} names one device, but the pod gets {} rails ({}); one device \
                         cannot serve several: select one NIC (args.cni.nics: 1) or leave the \
                         choice to {}",
                        plans.len(),
                        nics.join(", "),
                        spares::FIELD
                    ),
                ));
            }
            return Ok(vec![Some(Pick::Pci(id))]);
        }
        *spares_lock = Some(self.store.lock_spares()?);
        let a = &req.attachment;
        let mut taken = BTreeSet::new();
        for state in self.store.list()? {
            if state.container_id != a.container_id || state.ifname != a.ifname {
                taken.extend(state.members.into_iter().filter_map(|m| m.device));
            }
        }
        let wants: Vec<Want> = plans
            .iter()
            .map(|p| Want {
                nic: p.nic.clone(),
                rail: p.rail,
                kept: recorded
                    .and_then(|r| r.members.iter().find(|m| m.nic == p.nic))
                    .and_then(|m| m.device.clone()),
            })
            .collect();
        let links = host_links()?;
        let chosen = spares::choose(template, &wants, &links, &taken)?;
        Ok(chosen.into_iter().map(|d| Some(Pick::Spare(d))).collect())
    }

    /// The recorded result of a re-ADD's attachment, when the last ADD
    /// completed with exactly the members this one would create and each
    /// still passes its delegate's CHECK. `None` means: build it again.
    fn intact(
        &mut self,
        old: &State,
        planned: &State,
        env: &CniEnv,
        allocated: &CniResult,
    ) -> Option<CniResult> {
        let same = |o: &Member, p: &Member| {
            (&o.ifname, &o.nic, &o.nic_field, &o.config, &o.chain)
                == (&p.ifname, &p.nic, &p.nic_field, &p.config, &p.chain)
        };
        if (&old.network, &old.netns, old.policy_routing)
            != (&planned.network, &planned.netns, planned.policy_routing)
            || old.members.len() != planned.members.len()
            || !old
                .members
                .iter()
                .zip(&planned.members)
                .all(|(o, p)| same(o, p))
        {
            return None;
        }
        let mut results = Vec::with_capacity(old.members.len());
        for member in &old.members {
            let recorded = member.result.as_ref()?;
            let what = format!("recorded result of {}", member.ifname);
            let checked = self.check_member(member, recorded, env).and_then(|()| {
                CniResult::from_value(recorded, &what, self.version).map(|(_, r)| r)
            });
            match checked {
                Ok(result) => results.push(result),
                Err(e) => {
                    eprintln!("railyard-cni: re-ADD rebuilds {}: {e}", member.ifname);
                    return None;
                }
            }
        }
        Some(with_choices(
            layout::merge(&results, &allocated.dns),
            &old.members,
        ))
    }

    /// Records the plan, then creates the members, all at once (one
    /// thread per NIC: each delegate is a process that mostly waits on the
    /// kernel, so 8 NICs cost about what 1 does), and records what each
    /// returned. `progress` holds what exists for the rollback: every
    /// member is in it from the start (DEL of one never created is a
    /// no-op), with a result once its ADD succeeded. The first failure in
    /// NIC order is returned after every delegate has finished, so the
    /// rollback never races a delegate still creating its interface.
    fn create(
        &mut self,
        req: &AttachRequest,
        planned: State,
        allocated: &CniResult,
        progress: &mut Option<State>,
        spares_lock: Option<AttachmentLock>,
    ) -> Result<CniResult, Error> {
        let state = progress.insert(planned);
        self.store.save(state)?;
        // The spares are recorded: other ADDs may choose now.
        drop(spares_lock);
        let outcomes = if self.meta.serves_in_process() {
            // One batch for the whole pod (see builtin::add_all).
            let members: Vec<(&str, &Map<String, Value>)> = state
                .members
                .iter()
                .map(|m| (m.ifname.as_str(), &m.config))
                .collect();
            match builtin::add_all(&req.attachment.container_id, a_netns(req)?, &members) {
                Ok(results) => results.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            }
        } else {
            let delegate = self.delegates.get(&self.meta.delegate_type)?;
            // Negotiated once, before the threads (they would each ask).
            delegate.supported_versions(&req.env)?;
            concurrently(&state.members, |member| {
                let env = member_env(&req.env, Command::Add, &member.ifname);
                delegate
                    .add(&env, &member.config)
                    .map_err(|e| about_member(e, member))
            })
        };
        let mut results = Vec::with_capacity(outcomes.len());
        let mut first_error = None;
        for (member, outcome) in state.members.iter_mut().zip(outcomes) {
            match outcome {
                Ok(result) => {
                    member.result = Some(result.to_value(self.version));
                    results.push(result);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.store.save(state)?;
        if let Some(e) = first_error {
            return Err(e);
        }
        if state.members.iter().any(|m| !m.chain.is_empty()) {
            results = self.run_chains(req, state, results)?;
        }
        // Before podPolicyRouting, which copies the interfaces' routes.
        if via_gateway::applies_to(&self.meta.delegate_type) {
            let hops: Vec<via_gateway::Hop> = state
                .members
                .iter()
                .flat_map(via_gateway::Hop::of)
                .collect();
            if !hops.is_empty() {
                via_gateway::apply(a_netns(req)?, &hops)?;
            }
        }
        if state.policy_routing {
            let legs = state
                .members
                .iter()
                .map(routing::Leg::of)
                .collect::<Result<Vec<_>, _>>()?;
            let netns = a_netns(req)?;
            routing::apply(netns, &legs)?;
        }
        Ok(with_choices(
            layout::merge(&results, &allocated.dns),
            &state.members,
        ))
    }

    /// Each member's chained plugins after its interface plugin (all members
    /// at once, each chain in order); the final results are recorded, as a
    /// runtime caches a list's final result.
    fn run_chains(
        &mut self,
        req: &AttachRequest,
        state: &mut State,
        results: Vec<CniResult>,
    ) -> Result<Vec<CniResult>, Error> {
        chain::look_up(&mut self.delegates, &state.members)?;
        let jobs: Vec<(&Member, CniResult)> = state.members.iter().zip(results).collect();
        let (delegates, name, version) = (&self.delegates, &self.name, self.version);
        let outcomes = concurrently(&jobs, |(m, r)| {
            chain::add(delegates, m, r.clone(), &req.env, name, version)
        });
        let mut finals = Vec::with_capacity(outcomes.len());
        let mut first_error = None;
        for (member, outcome) in state.members.iter_mut().zip(outcomes) {
            match outcome {
                Ok(result) => {
                    member.result = Some(result.to_value(self.version));
                    finals.push(result);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.store.save(state)?;
        first_error.map_or(Ok(finals), Err)
    }

    /// Undoes a failed ADD: members (reverse), then the allocation, then
    /// the record. Stops before releasing the allocation if a member
    /// survived, and keeps the record for the runtime's DEL.
    fn rollback(&mut self, cause: Error, state: Option<&State>, env: &CniEnv) -> Error {
        let mut problem = state.and_then(|s| self.del_members(s, env));
        let external = std::mem::take(&mut self.external);
        if problem.is_none() {
            problem = if external.is_empty() {
                self.ipam.del(env, &self.ipam_conf).err()
            } else {
                self.release_external(&external, env)
            };
        }
        if let (None, Some(s)) = (&problem, state) {
            problem = self.store.remove(&s.container_id, &s.ifname).err();
        } else if let (None, None, Some(a)) = (&problem, state, &env.attachment) {
            // External IPAM recorded its calls before any member existed.
            if !external.is_empty() {
                problem = self.store.remove(&a.container_id, &a.ifname).err();
            }
        }
        match problem {
            None => cause,
            Some(p) => Error::CleanupFailed {
                cause: Box::new(cause),
                cleanup: p.to_string(),
            },
        }
    }
}

/// ADD's netns (the environment check makes it required for ADD).
/// Marks each pod interface with the rule that chose its NIC, if one did.
fn with_choices(mut result: CniResult, members: &[Member]) -> CniResult {
    for m in members {
        let Some(choice) = &m.choice else { continue };
        for i in result
            .interfaces
            .iter_mut()
            .filter(|i| i.name == m.ifname && i.sandbox.is_some())
        {
            i.choice = Some(choice.clone());
        }
    }
    result
}

/// Each NIC's VF, for a pod whose rails need one. The daemon left out every
/// NIC the pod holds no VF on, so a miss here means the kubelet's answer
/// changed in between: refused, and the caller releases the addresses.
fn vf_picks(d: &PodDevices, plans: &[NicPlan]) -> Result<Vec<Option<Pick>>, Error> {
    plans
        .iter()
        .map(|p| match d.vf_for(p.rail, &p.nic) {
            Some(vf) => Ok(Some(Pick::Vf(vf.clone()))),
            None if d.needs_vf(p.rail) => Err(Error::PodDevice {
                reason: format!(
                    "the pod holds no VF on NIC {:?} (rail {}) for devices.railResources",
                    p.nic,
                    p.rail.map_or("?".into(), |r| r.to_string())
                ),
            }),
            None => Ok(None),
        })
        .collect()
}

fn a_netns(req: &AttachRequest) -> Result<&std::path::Path, Error> {
    req.attachment
        .netns
        .as_deref()
        .ok_or_else(|| Error::invalid_config(routing::FIELD, "needs CNI_NETNS"))
}

/// The names of the links in this process's network namespace (the host's:
/// a runtime runs CNI plugins there), from the kernel rather than
/// `/sys/class/net`, which shows whatever namespace sysfs was mounted in.
fn host_links() -> Result<Vec<String>, Error> {
    let listed = nix::net::if_::if_nameindex().map_err(|errno| Error::Io {
        context: "listing the host's links for host-device spares".into(),
        source: errno.into(),
    })?;
    Ok(listed
        .iter()
        .filter_map(|i| i.name().to_str().ok().map(str::to_owned))
        .filter(|n| spares::fits(n))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vf(netdev: Option<&str>) -> Pick {
        Pick::Vf(devices::Vf {
            pci: "0000:3b:02.1".into(),
            pf: "ens1f0".into(),
            netdev: netdev.map(str::to_owned),
        })
    }

    fn applied(delegate: &str, pick: Pick) -> Map<String, Value> {
        let mut config = Map::new();
        config.insert("type".into(), delegate.into());
        assert_eq!(pick.apply(&mut config), None, "a VF is not a spare");
        config
    }

    /// sriov (and ib-sriov) take the VF's PCI address as `deviceID`, the key
    /// Multus would set from a device plugin; host-device takes its netdev,
    /// or its PCI address when the VF has none (bound to vfio-pci).
    #[test]
    fn each_delegate_gets_the_vf_in_its_own_key() {
        let c = applied("sriov", vf(Some("ens1f0v1")));
        assert_eq!(c["deviceID"], "0000:3b:02.1");
        assert!(!c.contains_key("device"));
        assert_eq!(applied("ib-sriov", vf(None))["deviceID"], "0000:3b:02.1");
        assert_eq!(
            applied("host-device", vf(Some("ens1f0v1")))["device"],
            "ens1f0v1"
        );
        let c = applied("host-device", vf(None));
        assert_eq!(c["pciBusID"], "0000:3b:02.1");
        assert!(!c.contains_key("device"));
    }
}
