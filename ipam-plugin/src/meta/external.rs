//! External IPAM (`ipam.external`, a MultiNicNetwork's `multiNICIPAM:
//! false`): the user's single-NIC IPAM plugin (host-local, Whereabouts)
//! allocates each pod interface's address, once per NIC, in that NIC's
//! host block; railyard still chooses the NICs and routes the blocks.
//!
//! ADD asks the daemon which NICs the pod gets and their blocks (`choose`:
//! the attach policy of an ADD, nothing allocated), writes each NIC's block
//! into the user's config ([`railyard_core::external_ipam::fill`]), records
//! those calls in the attachment's state file *before* running them, runs
//! them (all at once, one thread per NIC, as the delegates run), and hands
//! the addresses on as if railyard-ipam had answered: from there on the
//! delegates, chains and routing are the same code. Each call runs under
//! the network name `<name>.rail<r>` (host-local keeps one directory per
//! name, and its cursor file per range set would collide between rails) and
//! the pod interface's name as `CNI_IFNAME`.
//!
//! DEL replays the recorded calls' DEL after the interfaces are gone, CHECK
//! their CHECK; a failure midway through ADD DELs every call (DEL of one
//! that never allocated is a no-op for host-local and Whereabouts). A re-ADD
//! whose NICs and configs are those recorded keeps the recorded addresses;
//! any other re-ADD tears the old attachment down first.

use ipnet::IpNet;
use railyard_core::external_ipam::{self, Problem};
use railyard_core::ipam::{AttachmentId, NicChoice};
use serde_json::{json, Map, Value};

use super::devices::{self, PodDevices};
use super::state::{ExternalIpam, State};
use super::{concurrently, member_env, Run, RAILYARD_IPAM};
use crate::client::Client;
use crate::cni::{AttachRequest, CniEnv, CniResult, Command, Interface, IpConfig, NetConf};
use crate::cni::{CniVersion, Route};
use crate::ipam::config::{selection, IpamConfig};
use crate::Error;

/// Where the config sits in railyard-cni's config.
pub const FIELD: &str = "ipam.external";

/// `ipam.external`, checked as the planner checks `spec.ipam.external`.
/// It needs railyard-ipam as `ipam.type`: the daemon behind it chooses the
/// NICs and knows the blocks.
pub fn parse(conf: &NetConf, ipam_type: &str) -> Result<Option<Map<String, Value>>, Error> {
    let Some(value) = conf
        .ipam
        .as_ref()
        .and_then(|i| i.get(external_ipam::KEY))
        .filter(|v| !v.is_null())
    else {
        return Ok(None);
    };
    if ipam_type != RAILYARD_IPAM {
        return Err(Error::invalid_config(
            FIELD,
            format!(
                "needs ipam.type {RAILYARD_IPAM:?} (its daemon chooses the NICs and their \
                 blocks), not {ipam_type:?}"
            ),
        ));
    }
    match external_ipam::check(FIELD, value) {
        Ok(conf) => Ok(Some(conf.clone())),
        Err(p) => Err(problem(p)),
    }
}

/// A config problem as railyard-cni reports it: a key railyard-cni sets
/// itself is code 2, as `delegate.master` is; the rest code 7.
fn problem(p: Problem) -> Error {
    let filled = p.field.rsplit('.').next().is_some_and(|k| {
        ["name", "cniVersion"].contains(&k)
            || external_ipam::TYPES
                .iter()
                .any(|t| external_ipam::filled_keys(t).contains(&k))
    }) && p.field != FIELD;
    if filled && !p.field.ends_with(".type") && !p.field.ends_with(".dataDir") {
        Error::UnsupportedField {
            field: p.field,
            value: p.value,
            reason: p.reason,
        }
    } else {
        Error::invalid_config(p.field, format!("= {:?}: {}", p.value, p.reason))
    }
}

/// The external plugin's name (its binary in `CNI_PATH`).
pub fn plugin(conf: &Map<String, Value>) -> &str {
    external_ipam::kind(conf)
}

fn call_plugin(call: &ExternalIpam) -> Result<&str, Error> {
    call.config
        .get("ipam")
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::decode(
                "railyard-cni state",
                format!("external IPAM call of {} has no ipam.type", call.ifname),
            )
        })
}

/// The network config of one NIC's call.
fn call_config(
    network: &str,
    version: CniVersion,
    rail: u32,
    ipam: Map<String, Value>,
) -> Map<String, Value> {
    let v = json!({"cniVersion": version.as_str(), "name": format!("{network}.rail{rail}"),
                   "ipam": ipam});
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Says which pod interface and NIC an external IPAM call failed for.
fn about(e: Error, call: &ExternalIpam) -> Error {
    e.about_delegate(|msg| {
        format!(
            "{msg} (external IPAM for pod interface {}, NIC {:?}, rail {})",
            call.ifname, call.nic, call.rail
        )
    })
}

impl Run {
    /// ADD's IPAM step with an external IPAM: the pod's addresses in
    /// railyard-ipam's `reportNics` shape, and the record to go on with
    /// (`None` once an old attachment that cannot be kept is torn down).
    /// The calls made are in `self.external`, for the record and for a
    /// rollback; a failure here has undone its own calls.
    pub(super) fn external_add(
        &mut self,
        req: &AttachRequest,
        recorded: Option<State>,
        pod_devices: Option<&PodDevices>,
    ) -> Result<(CniResult, Option<State>), Error> {
        let a = &req.attachment;
        let conf = self.meta.external.clone().unwrap_or_default();
        let chosen = self.choose(req, pod_devices)?;
        let rails: Vec<Option<u32>> = chosen.iter().map(|c| Some(c.interface)).collect();
        let names = self.meta.ifname_template.render_all(&a.ifname, &rails)?;
        let mut calls: Vec<ExternalIpam> = chosen
            .iter()
            .zip(names)
            .map(|(c, ifname)| ExternalIpam {
                ifname,
                nic: c.nic.to_string(),
                rail: c.interface,
                config: call_config(
                    &self.name,
                    self.version,
                    c.interface,
                    external_ipam::fill(&conf, &c.blocks),
                ),
                result: None,
            })
            .collect();
        let mut recorded = recorded;
        if let Some(old) = &recorded {
            let same = old.external_ipam.len() == calls.len()
                && old.external_ipam.iter().zip(&calls).all(|(o, c)| {
                    (&o.ifname, &o.nic, &o.config) == (&c.ifname, &c.nic, &c.config)
                        && o.result.is_some()
                });
            if same {
                calls = old.external_ipam.clone();
            } else {
                self.tear_down(old, &req.env)?;
                recorded = None;
            }
        }
        let reused = calls.iter().all(|c| c.result.is_some());
        let results = if reused {
            calls
                .iter()
                .map(|c| {
                    let what = format!("recorded external IPAM result of {}", c.ifname);
                    let v = c.result.as_ref().unwrap_or(&Value::Null);
                    CniResult::from_value(v, &what, self.version).map(|(_, r)| r)
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            self.external_calls(req, &mut calls)?
        };
        let allocated = to_allocated(&chosen, &results, &calls);
        // Fresh calls are the caller's to roll back (self.external) if this
        // fails; kept ones belong to the record and its interfaces.
        if allocated.is_ok() || !reused {
            self.external = calls;
        }
        Ok((allocated?, recorded))
    }

    /// The daemon's choice of NICs, with the pod's selection as
    /// railyard-ipam would send it (static addresses refused: the external
    /// plugin picks every address).
    fn choose(
        &self,
        req: &AttachRequest,
        pod_devices: Option<&PodDevices>,
    ) -> Result<Vec<NicChoice>, Error> {
        let mut conf = self.ipam_conf.clone();
        if let Some(d) = pod_devices {
            conf.insert(devices::IPAM_KEY.into(), d.for_ipam());
        }
        let bytes = serde_json::to_vec(&conf).map_err(|e| Error::Internal {
            reason: format!("serializing the IPAM config: {e}"),
        })?;
        let netconf = NetConf::parse(&bytes)?;
        let ipam = IpamConfig::parse(&netconf)?;
        let sel = selection(&netconf)?;
        if !sel.ips.is_empty() {
            let runtime = netconf
                .runtime_config
                .as_ref()
                .and_then(|rc| rc.get("ips"))
                .is_some_and(|v| !v.is_null());
            let shown: Vec<String> = sel.ips.iter().map(ToString::to_string).collect();
            return Err(Error::invalid_config(
                if runtime {
                    "runtimeConfig.ips"
                } else {
                    "args.cni.ips"
                },
                format!(
                    "= {shown:?}: static addresses come from railyard's own IPAM; this network's \
                     addresses come from its external IPAM ({FIELD})"
                ),
            ));
        }
        let pod = req.env.args.pod_ref();
        let client = Client::new(&ipam.socket, ipam.timeout);
        let id = AttachmentId {
            network: ipam.network.clone(),
            container_id: req.attachment.container_id.clone(),
            ifname: req.attachment.ifname.clone(),
        };
        let chosen = client.choose(id, pod, sel)?;
        let what = format!(
            "choose response of the railyard daemon at {}",
            client.socket().display()
        );
        if chosen.is_empty() {
            return Err(Error::decode(&what, "`nics` is empty"));
        }
        for (i, c) in chosen.iter().enumerate() {
            if c.blocks.is_empty() {
                return Err(Error::decode(
                    &what,
                    format!("`nics[{i}]` ({}) has no block", c.nic),
                ));
            }
            if chosen[..i].iter().any(|o| o.nic == c.nic) {
                return Err(Error::decode(
                    &what,
                    format!("NIC {:?} appears twice", c.nic),
                ));
            }
        }
        Ok(chosen)
    }

    /// Records the calls, then runs them all at once and records their
    /// results in `calls`. On a failure every call is DELed and the record
    /// removed before the first error (in NIC order) is returned.
    fn external_calls(
        &mut self,
        req: &AttachRequest,
        calls: &mut [ExternalIpam],
    ) -> Result<Vec<CniResult>, Error> {
        let a = &req.attachment;
        self.store.save(&State {
            network: self.name.clone(),
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
            netns: a.netns.clone(),
            policy_routing: false,
            members: Vec::new(),
            external_ipam: calls.to_vec(),
        })?;
        let plugin = plugin(self.meta.external.as_ref().unwrap_or(&Map::new())).to_owned();
        let outcomes = {
            let delegate = self.delegates.get(&plugin)?;
            delegate.supported_versions(&req.env)?;
            concurrently(calls, |call| {
                let env = member_env(&req.env, Command::Add, &call.ifname);
                delegate.add(&env, &call.config).map_err(|e| about(e, call))
            })
        };
        let mut results = Vec::with_capacity(outcomes.len());
        let mut first = None;
        for (call, outcome) in calls.iter_mut().zip(outcomes) {
            match outcome {
                Ok(r) => {
                    call.result = Some(r.to_value(self.version));
                    results.push(r);
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        let Some(cause) = first else {
            return Ok(results);
        };
        let cleanup = self
            .release_external(calls, &req.env)
            .or_else(|| self.store.remove(&a.container_id, &a.ifname).err());
        Err(match cleanup {
            None => cause,
            Some(p) => Error::CleanupFailed {
                cause: Box::new(cause),
                cleanup: p.to_string(),
            },
        })
    }

    /// Removes an attachment that a re-ADD cannot keep: its interfaces, its
    /// addresses (the external plugin's, or the daemon's for a record made
    /// before the network used an external IPAM) and its record.
    fn tear_down(&mut self, old: &State, env: &CniEnv) -> Result<(), Error> {
        if let Some(e) = self.del_members(old, env) {
            return Err(e);
        }
        if old.external_ipam.is_empty() {
            self.ipam.del(env, &self.ipam_conf)?;
        } else if let Some(e) = self.release_external(&old.external_ipam, env) {
            return Err(e);
        }
        self.store.remove(&old.container_id, &old.ifname)
    }

    /// DELs every recorded call (all at once); the first failure, if any.
    /// DEL of a call that never allocated is a no-op for the plugins.
    pub(super) fn release_external(
        &mut self,
        calls: &[ExternalIpam],
        env: &CniEnv,
    ) -> Option<Error> {
        for call in calls {
            match call_plugin(call) {
                Ok(p) => {
                    if let Err(e) = self.delegates.get(p) {
                        return Some(e);
                    }
                }
                Err(e) => return Some(e),
            }
        }
        let cache = &self.delegates;
        let outcomes = concurrently(calls, |call| {
            let env = member_env(env, Command::Del, &call.ifname);
            call_plugin(call)
                .and_then(|p| cache.found(p))
                .and_then(|d| d.del(&env, &call.config))
                .map_err(|e| about(e, call))
        });
        outcomes.into_iter().find_map(Result::err)
    }

    /// CHECK of every recorded call, with its ADD result as prevResult.
    pub(super) fn check_external(
        &mut self,
        calls: &[ExternalIpam],
        env: &CniEnv,
    ) -> Result<(), Error> {
        for call in calls {
            let mut conf = call.config.clone();
            if let Some(r) = &call.result {
                conf.insert("prevResult".into(), r.clone());
            }
            let delegate = self.delegates.get(call_plugin(call)?)?;
            delegate
                .check(&member_env(env, Command::Check, &call.ifname), &conf)
                .map_err(|e| about(e, call))?;
        }
        Ok(())
    }
}

/// The external results in railyard-ipam's `reportNics` shape: the NICs as
/// `interfaces` with their rails, each address pointing at its NIC with the
/// prefix and (when the plugin gave none) the gateway of its block, and the
/// rail routes the daemon gave. An address outside the NIC's blocks is
/// refused: no route leads to it.
fn to_allocated(
    chosen: &[NicChoice],
    results: &[CniResult],
    calls: &[ExternalIpam],
) -> Result<CniResult, Error> {
    let mut out = CniResult::default();
    for (i, ((c, r), call)) in chosen.iter().zip(results).zip(calls).enumerate() {
        let plugin = call_plugin(call).unwrap_or("external IPAM");
        let what = format!(
            "result of IPAM plugin {plugin:?} for pod interface {} (NIC {}, rail {})",
            call.ifname, c.nic, c.interface
        );
        out.interfaces.push(Interface {
            name: c.nic.to_string(),
            rail: Some(c.interface),
            ..Interface::default()
        });
        if r.ips.is_empty() {
            return Err(Error::decode(&what, "it holds no address"));
        }
        for ip in &r.ips {
            let addr = ip.address.addr();
            let Some(block) = c.blocks.iter().find(|b| b.cidr.contains(&addr)) else {
                let blocks: Vec<String> = c.blocks.iter().map(|b| b.cidr.to_string()).collect();
                return Err(Error::decode(
                    &what,
                    format!(
                        "address {} lies outside the NIC's host blocks ({}), which are all \
                         railyard routes",
                        ip.address,
                        blocks.join(", ")
                    ),
                ));
            };
            out.ips.push(IpConfig {
                address: IpNet::new(addr, block.cidr.prefix_len()).unwrap_or(ip.address),
                gateway: ip.gateway.or(block.gateway),
                interface: Some(i),
            });
        }
        for route in &c.routes {
            out.routes.push(Route::new(route.dst, route.gw));
        }
        if out.dns.is_empty() {
            out.dns = r.dns.clone();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;

    fn parse_conf(ipam: Value) -> Result<Option<Map<String, Value>>, Error> {
        let v = json!({"cniVersion": "1.0.0", "name": "rdma", "type": "railyard-cni",
                       "ipam": ipam, "delegate": {"type": "ptp"}});
        let conf = NetConf::parse(v.to_string().as_bytes()).unwrap();
        let t = conf.ipam.as_ref().unwrap()["type"]
            .as_str()
            .unwrap()
            .to_owned();
        parse(&conf, &t)
    }

    #[test]
    fn bad_external_configs_name_the_field() {
        assert_eq!(parse_conf(json!({"type": "railyard-ipam"})).unwrap(), None);
        assert!(parse_conf(json!({"type": "railyard-ipam",
                                  "external": {"type": "host-local", "dataDir": "/d"}}))
        .unwrap()
        .is_some());
        let cases = [
            (
                json!({"type": "railyard-ipam", "external": {}}),
                codes::INVALID_NETWORK_CONFIG,
                "ipam.external.type",
            ),
            (
                json!({"type": "railyard-ipam", "external": {"type": "railyard-ipam"}}),
                codes::INVALID_NETWORK_CONFIG,
                "ipam.external.type",
            ),
            (
                json!({"type": "railyard-ipam", "external": {"type": "host-local",
                       "ranges": [[{"subnet": "10.0.0.0/8"}]]}}),
                codes::UNSUPPORTED_FIELD,
                "ipam.external.ranges",
            ),
            (
                json!({"type": "other-ipam", "external": {"type": "host-local"}}),
                codes::INVALID_NETWORK_CONFIG,
                "ipam.external",
            ),
        ];
        for (ipam, code, field) in cases {
            let err = parse_conf(ipam.clone()).unwrap_err();
            assert_eq!(err.code(), code, "{ipam}: {err}");
            assert!(err.to_string().contains(field), "{ipam}: {err}");
        }
    }
}
