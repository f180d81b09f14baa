//! The parts of a NAD's railyard-cni config beyond the delegate: the pod's
//! devices (`spec.devices`) and the chained plugins (`spec.chain`). Checked
//! here, naming the spec field, so a bad value shows on the MultiNicNetwork
//! instead of failing every pod's ADD.

use std::collections::BTreeMap;

use railyard_core::spec::{ChainPluginSpec, DevicesSpec};
use railyard_core::CoreError;
use serde_json::{json, Map, Value};

/// What railyard-cni chains (its `chain::CHAINABLE`).
pub const CHAINABLE: [&str; 4] = ["tuning", "bandwidth", "sbr", "rdma"];

/// The `devices` section, or `None` without `spec.devices`. `rails` is the
/// number of rails (2^interfaceBlock); `delegate` the interface plugin.
pub fn devices(
    spec: Option<&DevicesSpec>,
    rails: u32,
    delegate: &str,
) -> Result<Option<Value>, CoreError> {
    let Some(spec) = spec else { return Ok(None) };
    let mut out = Map::new();
    if !spec.rail_resources.is_empty() {
        if !["sriov", "host-device"].contains(&delegate) {
            return Err(CoreError::invalid(
                "spec.devices.railResources",
                format!("{} rails", spec.rail_resources.len()),
                format!(
                    "needs spec.plugin.type sriov or host-device (a VF per rail), not {delegate}"
                ),
            ));
        }
        let mut resources = Map::new();
        for (rail, resource) in &spec.rail_resources {
            let field = format!("spec.devices.railResources[{rail}]");
            let index: u32 = rail.parse().map_err(|_| {
                CoreError::invalid(&field, rail, "is keyed by a rail index (\"0\", \"1\", ...)")
            })?;
            if index >= rails {
                return Err(CoreError::invalid(
                    field,
                    rail,
                    format!("the network has {rails} rails (0 to {})", rails - 1),
                ));
            }
            if resource.trim().is_empty() {
                return Err(CoreError::invalid(field, resource, "must name a resource"));
            }
            resources.insert(index.to_string(), Value::from(resource.trim()));
        }
        out.insert("railResources".into(), Value::Object(resources));
    }
    if let Some(gpus) = &spec.gpu_resources {
        if let Some((i, g)) = gpus.iter().enumerate().find(|(_, g)| g.trim().is_empty()) {
            return Err(CoreError::invalid(
                format!("spec.devices.gpuResources[{i}]"),
                g,
                "must name a resource",
            ));
        }
        out.insert("gpuResources".into(), json!(gpus));
    }
    if let Some(socket) = &spec.pod_resources_socket {
        if !socket.starts_with('/') {
            return Err(CoreError::invalid(
                "spec.devices.podResourcesSocket",
                socket,
                "must be an absolute path",
            ));
        }
        out.insert("podResourcesSocket".into(), Value::from(socket.as_str()));
    }
    Ok(Some(Value::Object(out)))
}

/// The `chain` list: each plugin's config with its string args converted.
pub fn chain(spec: &[ChainPluginSpec]) -> Result<Vec<Value>, CoreError> {
    spec.iter().enumerate().map(|(i, p)| plugin(i, p)).collect()
}

fn plugin(i: usize, p: &ChainPluginSpec) -> Result<Value, CoreError> {
    let field = |k: &str| format!("spec.chain[{i}].{k}");
    if !CHAINABLE.contains(&p.kind.as_str()) {
        return Err(CoreError::invalid(
            field("type"),
            &p.kind,
            format!("must be one of {}", CHAINABLE.join(", ")),
        ));
    }
    let (ints, bools): (&[&str], &[&str]) = match p.kind.as_str() {
        "bandwidth" => (
            &["ingressRate", "ingressBurst", "egressRate", "egressBurst"],
            &[],
        ),
        "tuning" => (&["mtu", "txQLen"], &["promisc", "allmulti"]),
        "sbr" => (&["table"], &[]),
        _ => (&[], &[]),
    };
    let mut out = Map::new();
    out.insert("type".into(), Value::from(p.kind.as_str()));
    let mut sysctl: BTreeMap<String, Value> = BTreeMap::new();
    for (key, raw) in &p.args {
        let arg = format!("args.{key}");
        if ["type", "name", "cniVersion", "prevResult", "deviceID"].contains(&key.as_str()) {
            return Err(CoreError::invalid(
                field(&arg),
                raw,
                "is set by railyard-cni for each pod interface",
            ));
        }
        if let Some(k) = key.strip_prefix("sysctl.").filter(|_| p.kind == "tuning") {
            sysctl.insert(k.to_owned(), Value::from(raw.as_str()));
            continue;
        }
        let value = if ints.contains(&key.as_str()) {
            Value::from(
                raw.trim()
                    .parse::<u64>()
                    .map_err(|_| CoreError::invalid(field(&arg), raw, "must be a whole number"))?,
            )
        } else if bools.contains(&key.as_str()) {
            Value::from(
                raw.trim()
                    .parse::<bool>()
                    .map_err(|_| CoreError::invalid(field(&arg), raw, "must be true or false"))?,
            )
        } else {
            Value::from(raw.as_str())
        };
        out.insert(key.clone(), value);
    }
    if !sysctl.is_empty() {
        out.insert("sysctl".into(), json!(sysctl));
    }
    Ok(Value::Object(out))
}
