//! The NetworkAttachmentDefinitions a network needs: a pure function of the
//! validated network, its annotations and the namespaces that exist.
//!
//! Every NAD runs the meta plugin `railyard-cni` (one pod interface per selected
//! NIC) with `railyard-ipam`, delegating the interface itself to the plugin the
//! spec names. multi-nic-cni's `plugin.args` are strings; the plugins want numbers
//! and booleans for some keys, so those are converted here, where a bad value can
//! still be reported on the MultiNicNetwork instead of failing every pod's ADD.
//! Keys railyard-cni fills in per NIC (`master`, `device`, ...) are refused for the
//! same reason: the plugin would refuse them, but only at pod creation.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use railyard_core::{validate_dns_label, CoreError, Network, VlanMode};
use serde_json::{json, Map, Value};

mod extras;

use super::crd::{MultiNicNetwork, NetworkAttachmentDefinition, NetworkAttachmentDefinitionSpec};
use super::{
    ANNOTATION_CNI_VERSION, ANNOTATION_NAD_NAME, ANNOTATION_RESOURCE_NAME, LABEL_MANAGED_BY,
    LABEL_NETWORK, MANAGED_BY, NAD_RESOURCE_NAME,
};

pub const META_PLUGIN: &str = "railyard-cni";
pub const IPAM_PLUGIN: &str = "railyard-ipam";
/// Used when neither the annotation nor `plugin.cniVersion` sets one: the newest
/// version Multus 4 and the reference plugins packaged here all speak.
pub const DEFAULT_CNI_VERSION: &str = "1.0.0";
/// What railyard's plugins implement.
pub const CNI_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// `ipam.type` values that mean "railyard allocates": multi-nic-cni's name, so an
/// unchanged manifest works, and ours.
const IPAM_TYPES: [&str; 2] = ["multi-nic-ipam", IPAM_PLUGIN];

/// What to create for one network: one NAD of the same name and config in each
/// target namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct NadPlan {
    pub name: String,
    /// The CNI config document (the NAD's `spec.config`, as JSON text).
    pub config: Value,
    pub annotations: BTreeMap<String, String>,
    pub namespaces: Vec<String>,
    /// Listed namespaces that do not exist: nothing to create there yet.
    pub missing_namespaces: Vec<String>,
}

/// The interface plugins railyard-cni can delegate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delegate {
    Ipvlan,
    Macvlan,
    Ptp,
    HostDevice,
    Sriov,
}

impl Delegate {
    fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            // multi-nic-cni's own default, and the plugin its L3 routes are built for.
            "" | "ipvlan" => Delegate::Ipvlan,
            "macvlan" => Delegate::Macvlan,
            "ptp" => Delegate::Ptp,
            "host-device" => Delegate::HostDevice,
            "sriov" => Delegate::Sriov,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Delegate::Ipvlan => "ipvlan",
            Delegate::Macvlan => "macvlan",
            Delegate::Ptp => "ptp",
            Delegate::HostDevice => "host-device",
            Delegate::Sriov => "sriov",
        }
    }

    /// Keys that pick the host device; railyard-cni sets them per selected NIC
    /// (the device plugin does for sriov).
    fn reserved(self) -> &'static [&'static str] {
        match self {
            Delegate::Ipvlan | Delegate::Macvlan => &["master"],
            Delegate::Ptp => &[],
            Delegate::HostDevice => &["device", "pciBusID", "hwaddr", "kernelpath"],
            Delegate::Sriov => &["deviceID", "pciBusID"],
        }
    }

    fn integer_keys(self) -> &'static [&'static str] {
        match self {
            Delegate::Ipvlan | Delegate::Macvlan | Delegate::Ptp => &["mtu"],
            Delegate::HostDevice => &[],
            Delegate::Sriov => &["vlan", "vlanQoS", "min_tx_rate", "max_tx_rate"],
        }
    }

    fn boolean_keys(self) -> &'static [&'static str] {
        match self {
            Delegate::Ipvlan | Delegate::Macvlan => &["linkInContainer"],
            Delegate::Ptp => &["ipMasq"],
            Delegate::HostDevice | Delegate::Sriov => &[],
        }
    }
}

/// A Kubernetes object name (RFC 1123 subdomain).
pub(crate) fn validate_object_name(field: &str, name: &str) -> Result<(), CoreError> {
    if name.len() > 253
        || name
            .split('.')
            .any(|l| validate_dns_label(field, l).is_err())
    {
        return Err(CoreError::InvalidName {
            field: field.to_string(),
            value: name.to_string(),
            reason: "must be lowercase letters, digits, '-' and '.', at most 253 characters".into(),
        });
    }
    Ok(())
}

fn annotation_field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

/// The NADs of a valid network. `existing` is every namespace that exists and is
/// not terminating; a network without `namespaces` gets a NAD in each of them.
pub fn plan(
    net: &Network,
    annotations: &BTreeMap<String, String>,
    existing: &[String],
) -> Result<NadPlan, CoreError> {
    let ipam = net.spec.ipam_spec()?;
    if let Some(t) = ipam.kind.as_deref().filter(|t| !t.is_empty()) {
        if !IPAM_TYPES.contains(&t) {
            return Err(CoreError::invalid(
                "spec.ipam.type",
                t,
                format!(
                    "is not railyard's IPAM; railyard allocates with railyard-ipam (write multi-nic-ipam or railyard-ipam), \
                     or, for another IPAM per NIC, put its config under spec.ipam.external (\"external\": {{\"type\": \"{t}\"}}) \
                     with multiNICIPAM: false"
                ),
            ));
        }
    }
    // multiNICIPAM: false: the user's IPAM, run by railyard-cni per NIC
    // with the NIC's host block (railyard_core::external_ipam).
    let external = net.spec.external_ipam()?;
    let name = match annotations.get(ANNOTATION_NAD_NAME) {
        Some(n) => {
            validate_object_name(&annotation_field(ANNOTATION_NAD_NAME), n)?;
            n.clone()
        }
        None => net.name.clone(),
    };
    let plugin = net.spec.plugin.clone().unwrap_or_default();
    let cni_version = cni_version(annotations, &plugin.cni_version)?;
    let kind = Delegate::parse(&plugin.kind).ok_or_else(|| {
        CoreError::invalid(
            "spec.plugin.type",
            &plugin.kind,
            "must be one of ipvlan, macvlan, ptp, host-device, sriov",
        )
    })?;
    let mut args = plugin.args.clone();
    // Always taken out of the delegate: it is the NAD's annotation, not a plugin key.
    let from_args = args.remove("resourceName");
    let resource = annotations
        .get(ANNOTATION_RESOURCE_NAME)
        .cloned()
        .or(from_args)
        .filter(|r| !r.is_empty());
    let rails = 1u32 << net.interface_block.min(31);
    let devices = extras::devices(net.spec.devices.as_ref(), rails, kind.name())?;
    let per_rail = devices
        .as_ref()
        .is_some_and(|d| d.get("railResources").is_some());
    if per_rail && resource.is_some() {
        return Err(CoreError::invalid(
            "spec.plugin.args.resourceName",
            resource.clone().unwrap_or_default(),
            "one resource for every rail conflicts with spec.devices.railResources (a resource per rail); drop one",
        ));
    }
    let chain = extras::chain(&net.spec.chain)?;
    if kind == Delegate::Sriov && resource.is_none() && !per_rail {
        return Err(CoreError::invalid(
            "spec.plugin.args.resourceName",
            "",
            format!("is required for sriov (the device plugin's resource, e.g. intel.com/sriov_netdevice; or set the {ANNOTATION_RESOURCE_NAME} annotation, or a resource per rail in spec.devices.railResources)"),
        ));
    }
    let delegate = delegate(kind, net.vlan_mode, ipam.vlan_mode.as_deref(), args)?;
    let mut ipam_section = json!({"type": IPAM_PLUGIN});
    if let Some(conf) = external {
        ipam_section[railyard_core::external_ipam::KEY] = Value::Object(conf);
    }
    let mut config = json!({
        "cniVersion": cni_version,
        "name": net.name,
        "type": META_PLUGIN,
        "ipam": ipam_section,
        "delegate": delegate,
        // Multus then passes a network selection element's `ips` and `mac`
        // as runtimeConfig.ips and .mac: the pod's static addresses and MAC.
        "capabilities": {"ips": true, "mac": true},
    });
    if let Some(d) = devices {
        config["devices"] = d;
    }
    if !chain.is_empty() {
        config["chain"] = Value::Array(chain);
    }
    let mut nad_annotations = BTreeMap::new();
    if let Some(r) = resource {
        nad_annotations.insert(NAD_RESOURCE_NAME.to_string(), r);
    }
    let (namespaces, missing_namespaces) = target_namespaces(&net.spec.namespaces, existing);
    Ok(NadPlan {
        name,
        config,
        annotations: nad_annotations,
        namespaces,
        missing_namespaces,
    })
}

fn cni_version(annotations: &BTreeMap<String, String>, plugin: &str) -> Result<String, CoreError> {
    let (field, value) = match annotations.get(ANNOTATION_CNI_VERSION) {
        Some(v) => (annotation_field(ANNOTATION_CNI_VERSION), v.as_str()),
        None if plugin.is_empty() => return Ok(DEFAULT_CNI_VERSION.to_string()),
        None => ("spec.plugin.cniVersion".to_string(), plugin),
    };
    if CNI_VERSIONS.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(CoreError::invalid(
            field,
            value,
            format!(
                "is not a CNI version railyard's plugins speak ({})",
                CNI_VERSIONS.join(", ")
            ),
        ))
    }
}

/// The `delegate` section: the plugin type, its mode, and the remaining args with
/// numbers and booleans converted.
fn delegate(
    kind: Delegate,
    vlan_mode: VlanMode,
    explicit_vlan_mode: Option<&str>,
    mut args: BTreeMap<String, String>,
) -> Result<Map<String, Value>, CoreError> {
    let arg_field = |k: &str| format!("spec.plugin.args.{k}");
    for key in ["type", "name", "cniVersion", "ipam"]
        .iter()
        .chain(kind.reserved())
    {
        if let Some(v) = args.get(*key) {
            return Err(CoreError::invalid(
                arg_field(key),
                v,
                format!(
                    "is set by railyard-cni for each selected NIC; choose NICs with attachPolicy or the pod's cni-args (masters), not {key}"
                ),
            ));
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::from(kind.name()));
    match kind {
        Delegate::Ipvlan => {
            let explicit = explicit_vlan_mode.filter(|m| !m.is_empty());
            let mode = match args.remove("mode") {
                Some(m) if !["l2", "l3", "l3s"].contains(&m.as_str()) => {
                    return Err(CoreError::invalid(
                        arg_field("mode"),
                        m,
                        "must be l2, l3 or l3s",
                    ));
                }
                Some(m) if explicit.is_some_and(|v| v != m) => {
                    return Err(CoreError::invalid(
                        arg_field("mode"),
                        &m,
                        format!(
                            "conflicts with spec.ipam.vlanMode {:?}; set one of them",
                            explicit.unwrap_or_default()
                        ),
                    ));
                }
                Some(m) => m,
                None => vlan_mode_name(vlan_mode).to_string(),
            };
            out.insert("mode".into(), Value::from(mode));
        }
        Delegate::Macvlan => {
            let mode = args.remove("mode").unwrap_or_else(|| "bridge".into());
            if !["bridge", "private", "vepa", "passthru"].contains(&mode.as_str()) {
                return Err(CoreError::invalid(
                    arg_field("mode"),
                    mode,
                    "must be bridge, private, vepa or passthru",
                ));
            }
            out.insert("mode".into(), Value::from(mode));
        }
        Delegate::Ptp | Delegate::HostDevice | Delegate::Sriov => {}
    }
    for (key, raw) in args {
        let value =
            if kind.integer_keys().contains(&key.as_str()) {
                Value::from(
                    raw.trim().parse::<i64>().map_err(|_| {
                        CoreError::invalid(arg_field(&key), &raw, "must be an integer")
                    })?,
                )
            } else if kind.boolean_keys().contains(&key.as_str()) {
                Value::from(raw.trim().parse::<bool>().map_err(|_| {
                    CoreError::invalid(arg_field(&key), &raw, "must be true or false")
                })?)
            } else {
                Value::from(raw)
            };
        out.insert(key, value);
    }
    Ok(out)
}

fn vlan_mode_name(m: VlanMode) -> &'static str {
    match m {
        VlanMode::L2 => "l2",
        VlanMode::L3 => "l3",
        VlanMode::L3s => "l3s",
    }
}

/// (namespaces to write to, listed namespaces that do not exist), both sorted.
pub fn target_namespaces(listed: &[String], existing: &[String]) -> (Vec<String>, Vec<String>) {
    let existing: BTreeSet<&str> = existing.iter().map(String::as_str).collect();
    if listed.is_empty() {
        return (
            existing.into_iter().map(str::to_string).collect(),
            Vec::new(),
        );
    }
    let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let (present, missing): (Vec<&str>, Vec<&str>) =
        listed.into_iter().partition(|n| existing.contains(n));
    (
        present.into_iter().map(str::to_string).collect(),
        missing.into_iter().map(str::to_string).collect(),
    )
}

/// The owner reference every NAD carries: Kubernetes deletes the NADs with their
/// network, and the controller finds a deleted NAD's network through it. `None`
/// for an object that was never stored (no UID).
pub fn owner_reference(net: &MultiNicNetwork) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: MultiNicNetwork::api_version(&()).into_owned(),
        kind: MultiNicNetwork::kind(&()).into_owned(),
        name: net.name_any(),
        uid: net.uid()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

impl NadPlan {
    /// The NAD config as Multus reads it: a JSON document in a string.
    pub fn config_text(&self) -> String {
        self.config.to_string()
    }

    /// The objects to server-side apply, one per target namespace.
    pub fn objects(
        &self,
        network: &str,
        owner: &OwnerReference,
    ) -> Vec<NetworkAttachmentDefinition> {
        let labels = BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_NETWORK.to_string(), network.to_string()),
        ]);
        self.namespaces
            .iter()
            .map(|ns| NetworkAttachmentDefinition {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels.clone()),
                    annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..ObjectMeta::default()
                },
                spec: NetworkAttachmentDefinitionSpec {
                    config: self.config_text(),
                },
            })
            .collect()
    }
}

/// NAD annotations railyard sets and therefore also removes: an apply without
/// one drops it (server-side apply removes what the field manager stops sending).
/// Any other annotation on a NAD belongs to someone else and is left alone.
pub const OWNED_ANNOTATIONS: [&str; 1] = [NAD_RESOURCE_NAME];

/// Whether `have` (as stored) already is what `want` makes it, so the apply can
/// be skipped: with every namespace getting a NAD, re-applying all of them on each
/// reconcile would be thousands of writes for nothing.
///
/// Labels and annotations others added do not count; railyard's own annotations
/// ([`OWNED_ANNOTATIONS`]) are compared exactly, so one `want` no longer carries
/// (`railyard.dev/resource-name` taken off a network that is no longer sriov) is
/// removed by the next apply instead of staying forever.
pub fn up_to_date(have: &NetworkAttachmentDefinition, want: &NetworkAttachmentDefinition) -> bool {
    let contains = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    let owned = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| OWNED_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    have.spec.config == want.spec.config
        && contains(have.labels(), want.labels())
        && owned(have.annotations()) == owned(want.annotations())
        && contains(have.annotations(), want.annotations())
        && want
            .owner_references()
            .iter()
            .all(|o| have.owner_references().contains(o))
}

/// The NADs `owner` controls that are not in `keep` (namespace, name): a namespace
/// dropped from the list, or the NAD renamed through the annotation. Matched on
/// the owner's UID, so a NAD of a deleted and re-created network of the same name
/// is left to the garbage collector.
pub fn stale(
    cached: &[std::sync::Arc<NetworkAttachmentDefinition>],
    owner: &OwnerReference,
    keep: &BTreeSet<(String, String)>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = cached
        .iter()
        .filter(|n| n.owner_references().iter().any(|o| o.uid == owner.uid))
        .map(|n| (n.namespace().unwrap_or_default(), n.name_any()))
        .filter(|key| !keep.contains(key))
        .collect();
    out.sort();
    out
}
