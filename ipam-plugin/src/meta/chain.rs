//! Chained plugins per pod interface (`chain`): `tuning`, `bandwidth`, `sbr`
//! and `rdma` after each member's interface plugin.
//!
//! Why not a conflist NAD: a runtime calls every plugin of a list with the one
//! `CNI_IFNAME` it was given (`net1`), but railyard-cni makes one interface per
//! rail (`net1-0`, `net1-1`, ...); tuning and sbr would look for `net1` and
//! fail, bandwidth would find no veth of it. So railyard-cni runs the chain
//! itself, once per member, exactly as a runtime runs a list: each plugin gets
//! the member's interface as `CNI_IFNAME` and the result so far as
//! `prevResult`; ADD in order, DEL in reverse, CHECK with the final result.
//! The member's recorded result is the chain's final one (a runtime's cache
//! holds a list's final result too), so DEL and CHECK replay the same.
//!
//! Each member's chain runs under its own network name, `<network>.<ifname>`:
//! bandwidth names its ifb after (network name, container ID), which all of
//! one pod's interfaces share, so one name would make the second rail's ifb
//! collide with the first's.

use serde_json::{Map, Value};

use super::state::Member;
use super::{about_member, member_env, Delegates};
use crate::cni::{decode, CniEnv, CniResult, CniVersion, Command, NetConf};
use crate::Error;

/// The config key.
pub const FIELD: &str = "chain";
/// The plugins that can follow an interface plugin here: those that act on
/// one pod interface (`CNI_IFNAME`) and the result so far.
pub const CHAINABLE: [&str; 4] = ["tuning", "bandwidth", "sbr", "rdma"];
/// Keys railyard-cni sets in each chained plugin's config.
const RESERVED: [&str; 3] = ["name", "cniVersion", "prevResult"];

/// `chain`, checked: each entry an object with a chainable `type` and none
/// of the keys railyard-cni sets.
pub fn parse(conf: &NetConf) -> Result<Vec<Map<String, Value>>, Error> {
    let Some(list) = conf.extra_as::<Vec<Map<String, Value>>>(FIELD)? else {
        return Ok(Vec::new());
    };
    for (i, plugin) in list.iter().enumerate() {
        let field = |k: &str| format!("{FIELD}[{i}].{k}");
        match plugin.get("type").and_then(Value::as_str) {
            Some(t) if CHAINABLE.contains(&t) => {}
            Some(t) => {
                return Err(Error::UnsupportedField {
                    field: field("type"),
                    value: decode::show(&Value::from(t)),
                    reason: format!(
                        "railyard-cni chains {} (plugins that act on one pod interface)",
                        CHAINABLE.join(", ")
                    ),
                })
            }
            None => {
                return Err(Error::invalid_config(
                    field("type"),
                    format!("must name the plugin ({})", CHAINABLE.join(", ")),
                ))
            }
        }
        if let Some(key) = RESERVED.iter().find(|k| plugin.contains_key(**k)) {
            return Err(Error::UnsupportedField {
                field: field(key),
                value: decode::show(&plugin[*key]),
                reason: "railyard-cni sets it for each pod interface".into(),
            });
        }
    }
    Ok(list)
}

/// The chain as recorded for one member: `rdma` gets the member's VF (the
/// RDMA device it moves into the pod is the VF's), when it has one.
pub fn for_member(
    chain: &[Map<String, Value>],
    delegate: &Map<String, Value>,
) -> Vec<Map<String, Value>> {
    let vf = delegate
        .get("deviceID")
        .or_else(|| delegate.get("pciBusID"));
    chain
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p.get("type").and_then(Value::as_str) == Some("rdma") && !p.contains_key("deviceID")
            {
                if let Some(vf) = vf {
                    p.insert("deviceID".into(), vf.clone());
                }
            }
            p
        })
        .collect()
}

/// Finds every chained plugin of `members` in `CNI_PATH` (fills the cache).
pub(super) fn look_up(delegates: &mut Delegates, members: &[Member]) -> Result<(), Error> {
    for p in members.iter().flat_map(|m| &m.chain) {
        delegates.get(plugin_type(p)?)?;
    }
    Ok(())
}

/// Runs the member's chain after its interface plugin returned `result`;
/// returns the final result.
pub(super) fn add(
    delegates: &Delegates,
    member: &Member,
    result: CniResult,
    env: &CniEnv,
    network: &str,
    version: CniVersion,
) -> Result<CniResult, Error> {
    let env = member_env(env, Command::Add, &member.ifname);
    let mut current = result;
    for plugin in &member.chain {
        let conf = config(
            plugin,
            member,
            network,
            version,
            Some(current.to_value(version)),
        );
        current = delegates
            .found(plugin_type(plugin)?)?
            .add(&env, &conf)
            .map_err(|e| about_member(e, member))?;
    }
    Ok(current)
}

/// DEL of the member's chain, last plugin first, each with the recorded
/// result. Every plugin is tried; the first failure is returned.
pub(super) fn del(
    delegates: &Delegates,
    member: &Member,
    env: &CniEnv,
    network: &str,
    version: CniVersion,
) -> Result<(), Error> {
    let env = member_env(env, Command::Del, &member.ifname);
    let mut first = None;
    for plugin in member.chain.iter().rev() {
        let conf = config(plugin, member, network, version, member.result.clone());
        let outcome = plugin_type(plugin)
            .and_then(|t| delegates.found(t))
            .and_then(|d| d.del(&env, &conf));
        if let Err(e) = outcome {
            first.get_or_insert(about_member(e, member));
        }
    }
    first.map_or(Ok(()), Err)
}

/// CHECK of the member's chain against its final result.
pub(super) fn check(
    delegates: &Delegates,
    member: &Member,
    env: &CniEnv,
    network: &str,
    version: CniVersion,
) -> Result<(), Error> {
    let env = member_env(env, Command::Check, &member.ifname);
    for plugin in &member.chain {
        let conf = config(plugin, member, network, version, member.result.clone());
        delegates
            .found(plugin_type(plugin)?)?
            .check(&env, &conf)
            .map_err(|e| about_member(e, member))?;
    }
    Ok(())
}

fn config(
    plugin: &Map<String, Value>,
    member: &Member,
    network: &str,
    version: CniVersion,
    prev: Option<Value>,
) -> Map<String, Value> {
    let mut conf = plugin.clone();
    conf.insert("name".into(), format!("{network}.{}", member.ifname).into());
    conf.insert("cniVersion".into(), version.as_str().into());
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev);
    }
    conf
}

fn plugin_type(plugin: &Map<String, Value>) -> Result<&str, Error> {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::decode("railyard-cni state", "a chained plugin has no `type`"))
}
