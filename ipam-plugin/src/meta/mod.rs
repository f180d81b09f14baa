//! `railyard-cni`: one pod interface per selected NIC.
//!
//! The reference plugins put every address of an IPAM result on their one
//! interface; a rail network needs one interface per NIC, each with that
//! NIC's address. So this plugin asks railyard-ipam once (which NICs, which
//! addresses) and runs the real interface plugin once per NIC, naming the
//! interfaces by [`naming`]'s template: `<ifname>-<rail>` unless the
//! config asks otherwise.
//!
//! The invariants, in order of importance:
//! - an address is released only after every interface that used it is
//!   gone (a released address can be handed to another pod at once);
//! - a failed ADD leaves nothing behind, or says in its error what is left
//!   and keeps the state the next DEL needs to finish the job;
//! - DEL succeeds when everything is already gone;
//! - the daemon's record and the pod's interfaces change together: every
//!   command holds the attachment's [`lock`] from before it reads the state
//!   until its last delegate and IPAM call has returned.

pub mod add;
pub mod chain;
pub mod config;
pub mod devices;
pub mod external;
pub mod layout;
pub mod lock;
pub mod mac;
pub mod naming;
pub mod routing;
pub mod spares;
pub mod state;
pub mod via_gateway;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::cni::config::VALID_ATTACHMENTS;
use crate::cni::{
    AttachRequest, Attachment, CniEnv, CniResult, Command, GcAttachment, GcRequest, Handler,
    NetConf, StatusRequest,
};
use crate::delegate::{builtin, Delegate, VersionCache};
use crate::Error;

pub use config::MetaConfig;
use state::{Member, State, StateStore};

/// The plugin. Per-invocation state lives in `Run`.
#[derive(Debug, Default)]
pub struct MetaPlugin;

impl Handler for MetaPlugin {
    /// Under the attachment's lock; the steps and their order are in
    /// [`add`](mod@add).
    fn add(&mut self, req: &AttachRequest) -> Result<CniResult, Error> {
        let a = &req.attachment;
        let mut run = Run::new(&req.config, &req.env.path)?;
        // A name that cannot fit even for rail 0 fails before allocating.
        run.meta.ifname_template.render(&a.ifname, Some(0), 0)?;
        // Fail on a missing delegate before anything is allocated.
        run.delegates.get(&run.meta.delegate_type)?;
        if let Some(conf) = &run.meta.external {
            let plugin = external::plugin(conf).to_owned();
            run.delegates.get(&plugin)?;
        }
        let lock = run.store.lock(&a.container_id, &a.ifname)?;
        let outcome = run.add(req);
        run.store.unlock(lock, &a.container_id, &a.ifname);
        outcome
    }

    /// Under the attachment's lock, so no ADD can be between reading the
    /// state and releasing the allocation.
    fn del(&mut self, req: &AttachRequest) -> Result<(), Error> {
        let a = &req.attachment;
        let mut run = Run::new(&req.config, &req.env.path)?;
        let lock = run.store.lock(&a.container_id, &a.ifname)?;
        let outcome = run.del(req);
        run.store.unlock(lock, &a.container_id, &a.ifname);
        outcome
    }

    /// Checks the allocation, then each interface against the result its
    /// own delegate returned (delegates validate a prevResult in their own
    /// shape, not our merged one).
    fn check(&mut self, req: &AttachRequest) -> Result<(), Error> {
        let a = &req.attachment;
        let mut run = Run::new(&req.config, &req.env.path)?;
        let lock = run.store.lock(&a.container_id, &a.ifname)?;
        let outcome = run.check(req);
        run.store.unlock(lock, &a.container_id, &a.ifname);
        outcome
    }

    /// Removes the interfaces of attachments the runtime no longer knows,
    /// then lets IPAM release their addresses. An attachment whose
    /// interfaces could not be removed is kept on IPAM's list, so its
    /// address stays reserved until a later GC succeeds.
    fn gc(&mut self, req: &GcRequest) -> Result<(), Error> {
        let mut run = Run::new(&req.config, &req.env.path)?;
        let valid: HashSet<(&str, &str)> = req
            .valid_attachments
            .iter()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        let mut keep = req.valid_attachments.clone();
        for listed in run.store.list()? {
            if listed.network != req.config.name
                || valid.contains(&(listed.container_id.as_str(), listed.ifname.as_str()))
            {
                continue;
            }
            // Read again under the lock: an ADD or DEL may have changed it.
            let (cid, ifname) = (listed.container_id, listed.ifname);
            let lock = run.store.lock(&cid, &ifname)?;
            let kept = match run.store.load(&cid, &ifname) {
                Ok(Some(state)) => run.collect(&state, &req.env),
                Ok(None) => None,
                Err(e) => Some(e),
            };
            run.store.unlock(lock, &cid, &ifname);
            if let Some(e) = kept {
                eprintln!("railyard-cni: GC keeps {cid}/{ifname}: {e}");
                keep.push(GcAttachment {
                    container_id: cid,
                    ifname,
                });
            }
        }
        let mut conf = run.ipam_conf.clone();
        let keep = serde_json::to_value(keep).map_err(|e| Error::Internal {
            reason: format!("serializing the GC list: {e}"),
        })?;
        conf.insert(VALID_ATTACHMENTS.into(), keep);
        run.ipam.gc(&req.env, &conf)
    }

    /// Ready when both plugins are installed and the IPAM is ready.
    fn status(&mut self, req: &StatusRequest) -> Result<(), Error> {
        let not_installed = |e: Error| match e {
            Error::PluginNotFound { .. } => Error::PluginNotAvailable {
                reason: e.to_string(),
            },
            other => other,
        };
        let mut run = Run::new(&req.config, &req.env.path).map_err(not_installed)?;
        run.delegates
            .get(&run.meta.delegate_type)
            .map_err(not_installed)?;
        if let Some(conf) = &run.meta.external {
            let plugin = external::plugin(conf).to_owned();
            run.delegates.get(&plugin).map_err(not_installed)?;
        }
        run.ipam.status(&req.env, &run.ipam_conf)
    }
}

/// Everything one invocation needs, resolved once.
struct Run {
    meta: MetaConfig,
    store: StateStore,
    ipam: Delegate,
    /// The config the IPAM plugin gets: ours, asking for the NIC layout.
    ipam_conf: Map<String, Value>,
    version: crate::cni::CniVersion,
    name: String,
    delegates: Delegates,
    /// External IPAM: this ADD's calls of the user's IPAM plugin, for the
    /// record and for a rollback ([`external`]).
    external: Vec<state::ExternalIpam>,
}

impl Run {
    fn new(conf: &NetConf, path: &[PathBuf]) -> Result<Run, Error> {
        let meta = MetaConfig::parse(conf)?;
        let ipam = ipam_delegate(&meta.ipam_type, path)?;
        Ok(Run {
            store: StateStore::new(&meta.state_dir),
            ipam,
            ipam_conf: ipam_config(conf),
            version: conf.cni_version,
            name: conf.name.clone(),
            delegates: Delegates::new(path, &meta.state_dir, meta.in_process),
            meta,
            external: Vec::new(),
        })
    }

    /// DEL, holding the lock: interfaces, then the allocation, then the record.
    fn del(&mut self, req: &AttachRequest) -> Result<(), Error> {
        let a = &req.attachment;
        if let Some(state) = self.store.load(&a.container_id, &a.ifname)? {
            self.del_members(&state, &req.env).map_or(Ok(()), Err)?;
            if !state.external_ipam.is_empty() {
                // The addresses are the external plugin's; the daemon holds none.
                self.release_external(&state.external_ipam, &req.env)
                    .map_or(Ok(()), Err)?;
                return self.store.remove(&a.container_id, &a.ifname);
            }
        }
        self.ipam.del(&req.env, &self.ipam_conf)?;
        self.store.remove(&a.container_id, &a.ifname)
    }

    /// CHECK, holding the lock: the allocation, then each interface
    /// against the result its own delegate returned (delegates validate a
    /// prevResult in their own shape, not our merged one).
    fn check(&mut self, req: &AttachRequest) -> Result<(), Error> {
        let a = &req.attachment;
        let unknown = || Error::ContainerUnknown {
            container_id: a.container_id.clone(),
        };
        let state = self
            .store
            .load(&a.container_id, &a.ifname)?
            .ok_or_else(unknown)?;
        if state.external_ipam.is_empty() {
            self.ipam.check(&req.env, &self.ipam_conf)?;
        } else {
            self.check_external(&state.external_ipam, &req.env)?;
        }
        for member in &state.members {
            // No result: that ADD never completed, so there is nothing to check against.
            let result = member.result.as_ref().ok_or_else(unknown)?;
            self.check_member(member, result, &req.env)?;
        }
        Ok(())
    }

    fn check_member(&mut self, member: &Member, result: &Value, env: &CniEnv) -> Result<(), Error> {
        let mut conf = member.config.clone();
        conf.insert("prevResult".into(), result.clone());
        let delegate = self.delegates.get(member_type(member)?)?;
        delegate
            .check(&member_env(env, Command::Check, &member.ifname), &conf)
            .map_err(|e| about_member(e, member))?;
        chain::look_up(&mut self.delegates, std::slice::from_ref(member))?;
        chain::check(&self.delegates, member, env, &self.name, self.version)
    }

    /// GC of one forgotten attachment, holding its lock: its interfaces
    /// and its record. `None` when both are gone.
    fn collect(&mut self, state: &State, env: &CniEnv) -> Option<Error> {
        let env = CniEnv {
            command: Command::Del,
            attachment: Some(Attachment {
                container_id: state.container_id.clone(),
                ifname: state.ifname.clone(),
                netns: state.netns.clone(),
            }),
            args: Default::default(),
            path: env.path.clone(),
        };
        self.del_members(state, &env)
            .or_else(|| self.release_external(&state.external_ipam, &env))
            .or_else(|| self.store.remove(&state.container_id, &state.ifname).err())
    }

    /// DELs every member (all at once) and returns the last failure that
    /// means an interface may still exist. All members are tried either
    /// way, so one stuck interface does not keep the others alive.
    ///
    /// Three failures are not such evidence and are only logged: a member
    /// whose ADD never reported success (it cleaned up after itself, or
    /// never ran), a `master` child whose master has left the host
    /// (the kernel removed the child with it; macvlan 1.1.1's DEL fails on
    /// the missing master and would otherwise block the pod's removal), and
    /// a host-device link whose pod netns is gone ([`netns_vanished`]).
    fn del_members(&mut self, state: &State, env: &CniEnv) -> Option<Error> {
        let mut first = None;
        if state.policy_routing {
            // Rules first: they outlive the interfaces (tables do not).
            let netns = env.attachment.as_ref().and_then(|a| a.netns.clone());
            let legs: Vec<_> = state
                .members
                .iter()
                .filter_map(|m| routing::Leg::of(m).ok())
                .collect();
            if let Some(netns) = netns.or_else(|| state.netns.clone()) {
                if let Err(e) = routing::remove(&netns, &legs) {
                    eprintln!("railyard-cni: leaving {}'s rules: {e}", netns.display());
                }
            }
        }
        // The chained plugins first (a runtime DELs a list last plugin first):
        // bandwidth's ifb and tuning's saved settings go before the interface.
        if state.members.iter().any(|m| !m.chain.is_empty()) {
            if let Err(e) = chain::look_up(&mut self.delegates, &state.members) {
                return Some(e);
            }
            let (delegates, name, version) = (&self.delegates, &self.name, self.version);
            let outcomes = concurrently(&state.members, |m| {
                chain::del(delegates, m, env, name, version)
            });
            for (member, outcome) in state.members.iter().zip(outcomes) {
                if let Err(e) = outcome {
                    eprintln!("railyard-cni: chained DEL on {}: {e}", member.ifname);
                    if member.result.is_some() {
                        first.get_or_insert(e);
                    }
                }
            }
        }
        let in_process = self.meta.in_process
            && state
                .members
                .iter()
                .all(|m| member_type(m).is_ok_and(|t| builtin::SERVED.contains(&t)));
        if in_process {
            // One batch for the whole pod (see builtin::del_all).
            let netns = env.attachment.as_ref().and_then(|a| a.netns.clone());
            // No namespace known: nothing of the pod's to delete.
            let Some(netns) = netns.or_else(|| state.netns.clone()) else {
                return first;
            };
            let names: Vec<&str> = state.members.iter().map(|m| m.ifname.as_str()).collect();
            return builtin::del_all(&state.container_id, &netns, &names)
                .err()
                .or(first);
        }
        // Look the plugins up first (the cache fills under &mut), then
        // run every DEL at once: they are independent, and DEL waits for
        // all of them before it reports.
        for member in &state.members {
            if let Ok(plugin) = member_type(member) {
                let _ = self.delegates.get(plugin);
            }
        }
        let cache = &self.delegates;
        let outcomes = concurrently(&state.members, |member| {
            let env = member_env(env, Command::Del, &member.ifname);
            member_type(member)
                .and_then(|t| cache.found(t))
                .and_then(|d| d.del(&env, &member.config))
                .map_err(|e| about_member(e, member))
        });
        for (member, outcome) in state.members.iter().zip(outcomes).rev() {
            let Err(e) = outcome else { continue };
            if member.result.is_none() || master_vanished(member) || netns_vanished(member, env) {
                eprintln!(
                    "railyard-cni: ignoring DEL failure of {} ({}): {e}",
                    member.ifname, member.nic
                );
            } else if first.is_none() {
                first = Some(e);
            }
        }
        first
    }
}

/// Interface plugins found in `CNI_PATH`, each asked for its versions once
/// per binary (the answer is kept in the state dir: [`VersionCache`]).
struct Delegates {
    path: Vec<PathBuf>,
    versions: VersionCache,
    found: HashMap<String, Delegate>,
    /// `inProcessDelegates`: macvlan and ipvlan served by [`builtin`].
    in_process: bool,
}

impl Delegates {
    fn new(path: &[PathBuf], state_dir: &Path, in_process: bool) -> Delegates {
        Delegates {
            path: path.to_vec(),
            versions: VersionCache::new(state_dir),
            found: HashMap::new(),
            in_process,
        }
    }

    /// The plugin served in this process, or the binary in `CNI_PATH`.
    fn lookup(&self, plugin: &str) -> Result<Delegate, Error> {
        if self.in_process && builtin::SERVED.contains(&plugin) {
            return Ok(Delegate::in_process(plugin, builtin::handler));
        }
        Ok(Delegate::find(plugin, &self.path)?.remembering(self.versions.clone()))
    }

    /// One that [`Delegates::get`] has found; otherwise the error a
    /// lookup gives now.
    fn found(&self, plugin: &str) -> Result<&Delegate, Error> {
        match self.found.get(plugin) {
            Some(d) => Ok(d),
            None => Err(self
                .lookup(plugin)
                .err()
                .unwrap_or_else(|| Error::Internal {
                    reason: format!("delegate {plugin:?} appeared in CNI_PATH during the call"),
                })),
        }
    }

    fn get(&mut self, plugin: &str) -> Result<&Delegate, Error> {
        if !self.found.contains_key(plugin) {
            let delegate = self.lookup(plugin)?;
            self.found.insert(plugin.to_owned(), delegate);
        }
        self.found.get(plugin).ok_or_else(|| Error::Internal {
            reason: format!("delegate {plugin:?} vanished from the cache"),
        })
    }
}

/// `f` on every item, each on its own thread (one item runs inline), the
/// outcomes in item order once all have returned. Delegates are processes
/// that mostly wait on the kernel, so a pod's 8 NICs take about as long
/// as 1. A job that panics is an internal error, not a lost outcome.
fn concurrently<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, Error> + Sync,
) -> Vec<Result<R, Error>> {
    if let [one] = items {
        return vec![f(one)];
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|item| s.spawn(|| f(item))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Internal {
                        reason: "a delegate thread panicked".into(),
                    })
                })
            })
            .collect()
    })
}

/// The IPAM plugin: `railyard-ipam` runs in this process (it is this
/// crate's own handler, so the binary in `CNI_PATH` would run the same code
/// at the cost of a fork, an exec and a VERSION call per invocation); any
/// other type is the binary of that name in `CNI_PATH`.
fn ipam_delegate(ipam_type: &str, path: &[PathBuf]) -> Result<Delegate, Error> {
    if ipam_type == RAILYARD_IPAM {
        return Ok(Delegate::in_process(RAILYARD_IPAM, || {
            Box::new(crate::ipam::IpamPlugin)
        }));
    }
    Delegate::find(ipam_type, path)
}

/// The `ipam.type` of railyard's own IPAM plugin.
pub const RAILYARD_IPAM: &str = "railyard-ipam";

/// Our config with `ipam.reportNics` set. prevResult is dropped: the IPAM
/// plugin does not use it, and a stale one must not fail a DEL.
fn ipam_config(conf: &NetConf) -> Map<String, Value> {
    let mut map = conf.to_map();
    map.remove("prevResult");
    if let Some(Value::Object(ipam)) = map.get_mut("ipam") {
        ipam.insert("reportNics".into(), Value::Bool(true));
        // railyard-cni's own: railyard-ipam refuses keys it does not know.
        ipam.remove(railyard_core::external_ipam::KEY);
    }
    map
}

/// A delegate's environment: ours, with the member's interface name, and
/// without the `CNI_ARGS` keys that ask for addresses (`IP`, `MAC`, which
/// Multus sets for a selection element's `ips` and `mac`). Those went to the
/// IPAM (as runtimeConfig.ips); `static` IPAM in the delegate would take
/// `IP` instead of the addresses railyard planned for that member, and every
/// member would get the same ones.
fn member_env(env: &CniEnv, command: Command, ifname: &str) -> CniEnv {
    let mut env = env.with_command(command);
    if let Some(a) = env.attachment.as_mut() {
        a.ifname = ifname.to_owned();
    }
    env.args = env.args.without(&["IP", "MAC"]);
    env
}

/// The plugin a member was created with, from its recorded config (the
/// network's config may have changed since).
fn member_type(member: &Member) -> Result<&str, Error> {
    member
        .config
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::decode(
                "railyard-cni state",
                format!("member {} has no delegate `type`", member.ifname),
            )
        })
}

/// Says which interface and NIC a delegate failed on: reference plugins
/// report "Link not found" and leave the reader to guess which link.
fn about_member(e: Error, member: &Member) -> Error {
    e.about_delegate(|msg| match &member.device {
        Some(device) => format!(
            "{msg} (pod interface {}, NIC {:?}, device {device:?})",
            member.ifname, member.nic
        ),
        None => format!(
            "{msg} (pod interface {}, NIC {:?})",
            member.ifname, member.nic
        ),
    })
}

/// host-device's DEL opens the pod's netns first and fails when it is gone,
/// but by then there is nothing left to do: the kernel put a physical link
/// back into the host's first namespace (under its pod name, which the
/// operator renames to make it a spare again) and destroyed a virtual one
/// with the namespace. Failing would block the pod's removal forever.
fn netns_vanished(member: &Member, env: &CniEnv) -> bool {
    member_type(member).is_ok_and(|t| t == "host-device")
        && env
            .attachment
            .as_ref()
            .and_then(|a| a.netns.as_deref())
            .is_some_and(|netns| !netns.exists())
}

fn master_vanished(member: &Member) -> bool {
    member.nic_field.as_deref() == Some("master")
        && !Path::new("/sys/class/net").join(&member.nic).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn concurrently_keeps_item_order_runs_at_once_and_reports_a_panic() {
        let started = Instant::now();
        let out = concurrently(&[30u64, 10, 20], |ms| {
            std::thread::sleep(Duration::from_millis(*ms * 5));
            Ok(*ms)
        });
        let values: Vec<u64> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(values, [30, 10, 20]);
        // At once: about the longest (150 ms), not the sum (300 ms).
        assert!(started.elapsed() < Duration::from_millis(290));

        let out = concurrently(&[1, 2], |n| {
            assert!(*n != 2, "job 2 panics");
            Ok(*n)
        });
        assert_eq!(*out[0].as_ref().unwrap(), 1);
        let err = out[1].as_ref().unwrap_err();
        assert_eq!(err.code(), crate::error::codes::INTERNAL);
    }
}
