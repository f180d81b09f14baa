//! The network spec, accepted exactly as multi-nic-cni users write a `MultiNicNetwork`
//! today, and its validation into a [`Network`] the planner can trust.
//!
//! The spec keeps raw strings (as the CRD does) so that validation, not
//! deserialization, reports problems: a serde error cannot name the field path the
//! way a user reads it (`spec.ipam.hostBlock`).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::{CoreError, Result};
use crate::gateway::Gateway;
use crate::ifacer::IfacerSpec;
use crate::names::validate_dns_label;

/// Set to "true" on a network to accept a spec change that renumbers hosts
/// holding pod addresses (`railyard apply --force` sets it).
pub const ALLOW_RENUMBER: &str = "railyard.dev/allow-renumber";

/// multi-nic-cni's default when `spec.subnet` is omitted.
pub const DEFAULT_SUBNET: &str = "172.30.0.0/16";

/// Host indexes are tracked in a bitmap; 2^24 hosts is far beyond any cluster and
/// keeps the bitmap at 2 MiB even for an IPv6 network with generous bits.
pub const MAX_HOST_BLOCK: u8 = 24;
/// 256 rails: more NICs per host than any server carries.
pub const MAX_INTERFACE_BLOCK: u8 = 8;
/// Fewer than 2 pod bits leaves no usable address once network and gateway are reserved.
pub const MIN_POD_BITS: u8 = 2;

/// A `MultiNicNetwork` manifest (any apiVersion), or the same shape from a YAML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkManifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub metadata: Metadata,
    pub spec: NetworkSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `MultiNicNetwork.spec`. Unknown fields are kept out of the way rather than rejected:
/// a manifest written for multi-nic-cni must load after changing only `apiVersion`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// One CIDR, or an IPv4 and an IPv6 CIDR separated by a comma for dual stack
    /// (the Kubernetes `--cluster-cidr` convention).
    #[serde(default)]
    pub subnet: String,
    /// multi-nic-cni writes this as a JSON string; an object is accepted too.
    #[serde(default)]
    pub ipam: IpamField,
    #[serde(default, rename = "multiNICIPAM", alias = "multiNicIPAM")]
    pub multi_nic_ipam: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_policy: Option<AttachPolicySpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub master_nets: Vec<String>,
    /// Extra routes for the pods, per rail: `{rail: 2, dst: 10.50.0.0/16}`
    /// sends `dst` out of the pod's rail-2 interface via its gateway (a
    /// storage subnet reached over one rail, say). See [`NetworkSpec::rail_routes`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RailRouteSpec>,
    /// The VLAN and bond interfaces every host's route-daemon makes for the
    /// rails (`crate::ifacer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifacer: Option<IfacerSpec>,
    /// The rails' mode: `l2` (a shared subnet per rail, the default) or
    /// `routed` (a link per host to each rail's leaf, blocks announced over
    /// BGP): [`crate::fabric`]. Absent keeps a spec's bytes as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabric: Option<crate::fabric::FabricSpec>,
    /// The pod's own devices for railyard-cni: an SR-IOV VF resource per rail,
    /// and which resources are GPUs (for GPU-aligned NICs). Read only by the
    /// NAD generator; checked there, where the plugin type is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DevicesSpec>,
    /// Plugins railyard-cni runs after each pod interface (tuning, bandwidth,
    /// sbr, rdma). Read only by the NAD generator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainPluginSpec>,
}

/// `spec.devices` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesSpec {
    /// Rail index (as a string, a map key) to the VF resource of that rail.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rail_resources: BTreeMap<String, String>,
    /// Which resources are GPUs; railyard-cni's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_resources: Option<Vec<String>>,
    /// The kubelet's pod-resources socket, for a kubelet with another root dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_resources_socket: Option<String>,
}

/// One `spec.chain` entry: a plugin and its settings as strings (converted
/// where the plugin wants numbers), as `spec.plugin` is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPluginSpec {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
}

/// The `ipam` field: a JSON document in a string (multi-nic-cni) or an inline object.
// Parsed once per spec and never held in bulk: boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IpamField {
    Text(String),
    Object(IpamSpec),
}

impl Default for IpamField {
    fn default() -> Self {
        IpamField::Object(IpamSpec::default())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamSpec {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub host_block: Option<i64>,
    #[serde(default)]
    pub interface_block: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_mode: Option<String>,
    #[serde(
        default,
        rename = "excludeCIDRs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exclude_cidrs: Vec<String>,
    /// Kube-OVN's `excludeIps`: addresses, CIDRs or ranges
    /// (`192.168.0.1..192.168.0.10`), each turned into CIDRs ([`crate::ranges`]).
    #[serde(
        default,
        rename = "excludeIPs",
        alias = "excludeIps",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exclude_ips: Vec<String>,
    /// Workload pools: addresses only the pods selecting them get
    /// ([`crate::pools`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::pools::PoolSpec>,
    /// Which address of each host block pods route through: `{offset: N}`
    /// or `none` ([`crate::gateway`]). Kept as written so validation can
    /// name a bad value; unset means offset 1, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<serde_json::Value>,
    /// External IPAM (`multiNICIPAM: false`): the single-NIC IPAM plugin's
    /// config (`{"type": "host-local", ...}`), run once per NIC with the NIC's
    /// host block filled in ([`crate::external_ipam`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<serde_json::Value>,
    /// Keys railyard does not know. Kept only to be refused by `ipam_spec` with
    /// the key's name: a typo (`excludeCIDR`) silently ignored would plan
    /// without the exclusion the user asked for, while the CNI side refuses it.
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// The `ipam` keys a MultiNicNetwork may carry: those of multi-nic-cni's own
/// sample manifests.
pub const IPAM_KEYS: [&str; 9] = [
    "type",
    "hostBlock",
    "interfaceBlock",
    "vlanMode",
    "excludeCIDRs",
    "excludeIPs",
    "pools",
    "gateway",
    "external",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
}

/// One `spec.routes` entry as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailRouteSpec {
    #[serde(default)]
    pub rail: i64,
    #[serde(default)]
    pub dst: String,
}

/// A validated `spec.routes` entry: pods route `dst` via their gateway on `rail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailRoute {
    pub rail: u32,
    pub dst: IpNet,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachPolicySpec {
    #[serde(default)]
    pub strategy: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
}

/// How the pod side reaches the rail (multi-nic-cni's ipvlan modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VlanMode {
    L2,
    #[default]
    L3,
    L3s,
}

/// Which NICs a pod gets. multi-nic-cni's `costOpt`/`perfOpt` names are accepted as
/// aliases of `balance`/`perf` so existing manifests keep working.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    #[default]
    None,
    Masters,
    DevClass,
    Perf,
    Balance,
    Topology,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "none" => Strategy::None,
            "masters" => Strategy::Masters,
            "devClass" => Strategy::DevClass,
            "perf" | "perfOpt" => Strategy::Perf,
            "balance" | "costOpt" => Strategy::Balance,
            "topology" => Strategy::Topology,
            _ => return None,
        })
    }
}

/// A validated network: every field parsed, every bound checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub name: String,
    /// One subnet per family; the first is the primary family, whose NIC subnets
    /// identify rails.
    pub subnets: Vec<IpNet>,
    pub interface_block: u8,
    pub host_block: u8,
    pub vlan_mode: VlanMode,
    pub excludes: Vec<IpNet>,
    pub master_nets: Vec<IpNet>,
    pub strategy: Strategy,
    pub policy_target: String,
    /// Each host block's gateway (`spec.ipam.gateway`); left out when it is
    /// the default, so a plan of a network without it is as it was.
    #[serde(default, skip_serializing_if = "Gateway::is_default")]
    pub gateway: Gateway,
    /// The spec as written, for the parts only the CNI side reads (plugin, namespaces).
    pub spec: NetworkSpec,
}

impl NetworkManifest {
    pub fn validate(&self) -> Result<Network> {
        validate_dns_label("metadata.name", &self.metadata.name)?;
        self.spec.validate(&self.metadata.name)
    }
}

impl NetworkSpec {
    /// ipvlan l2 puts the pods on the rail's L2 segment beside the host,
    /// and railyard's routes (each host block via that host's rail NIC, L3)
    /// do not carry it across hosts: measured, 0 of 2 cross-host pings
    /// answered. So a network whose ipvlan would run in l2 (from
    /// `vlanMode` or `plugin.args.mode`; ipvlan is also the plugin when
    /// none is named) is refused. For other plugins `vlanMode` means
    /// nothing (macvlan has its own `mode`, sriov none), so upstream
    /// samples that carry `"vlanMode": "l2"` with sriov still load.
    fn refuse_ipvlan_l2(&self, vlan_mode: VlanMode) -> Result<()> {
        let plugin = self.plugin.as_ref();
        let kind = plugin.map_or("", |p| p.kind.as_str());
        if !(kind.is_empty() || kind == "ipvlan") {
            return Ok(());
        }
        let why = "ipvlan l2 bridges pods onto the rail's L2 segment, and railyard's L3 \
                   routes do not carry that traffic across hosts (measured: 0 of 2 pings); \
                   use l3 (the default) or l3s";
        let mode = plugin.and_then(|p| p.args.get("mode"));
        match mode {
            Some(m) if m == "l2" => Err(CoreError::invalid("spec.plugin.args.mode", m, why)),
            None if vlan_mode == VlanMode::L2 => {
                Err(CoreError::invalid("spec.ipam.vlanMode", "l2", why))
            }
            _ => Ok(()),
        }
    }

    /// Checks every field and returns the network the planner works on.
    pub fn validate(&self, name: &str) -> Result<Network> {
        let subnets = parse_subnets(&self.subnet)?;
        let ipam = self.ipam_spec()?;
        let host_block = block_bits("spec.ipam.hostBlock", ipam.host_block, MAX_HOST_BLOCK)?;
        let interface_block = block_bits(
            "spec.ipam.interfaceBlock",
            ipam.interface_block,
            MAX_INTERFACE_BLOCK,
        )?;
        for subnet in &subnets {
            let pod_bits = i32::from(subnet.max_prefix_len())
                - i32::from(subnet.prefix_len())
                - i32::from(interface_block)
                - i32::from(host_block);
            if pod_bits < i32::from(MIN_POD_BITS) {
                return Err(CoreError::invalid(
                    "spec.ipam.hostBlock",
                    host_block,
                    format!(
                        "with interfaceBlock {interface_block} and subnet {subnet} leaves {pod_bits} pod bits; at least {MIN_POD_BITS} are needed (lower hostBlock or interfaceBlock, or widen the subnet)"
                    ),
                ));
            }
        }
        let vlan_mode = match ipam.vlan_mode.as_deref() {
            None | Some("") | Some("l3") => VlanMode::L3,
            Some("l2") => VlanMode::L2,
            Some("l3s") => VlanMode::L3s,
            Some(other) => {
                return Err(CoreError::invalid(
                    "spec.ipam.vlanMode",
                    other,
                    "must be one of l2, l3, l3s",
                ))
            }
        };
        self.refuse_ipvlan_l2(vlan_mode)?;
        let mut excludes = parse_list("spec.ipam.excludeCIDRs", &ipam.exclude_cidrs, |c| {
            if subnets.iter().any(|s| overlaps(s, c)) {
                Ok(())
            } else {
                Err(format!("does not overlap the subnet {}", self.subnet))
            }
        })?;
        for (i, entry) in ipam.exclude_ips.iter().enumerate() {
            let field = format!("spec.ipam.excludeIPs[{i}]");
            let nets = crate::ranges::parse_exclude(entry)
                .map_err(|why| CoreError::invalid(&field, entry, why))?;
            if let Some(n) = nets
                .iter()
                .find(|n| !subnets.iter().any(|s| overlaps(s, n)))
            {
                return Err(CoreError::invalid(
                    &field,
                    entry,
                    format!("{n} lies outside the subnet {}", self.subnet),
                ));
            }
            excludes.extend(nets);
        }
        let master_nets = parse_list("spec.masterNets", &self.master_nets, |n| {
            if n.addr() != n.network() {
                Err(format!(
                    "has host bits set; the network address is {}",
                    n.trunc()
                ))
            } else if subnets.iter().any(|s| overlaps(s, n)) {
                Err(format!("overlaps the pod subnet {}", self.subnet))
            } else {
                Ok(())
            }
        })?;
        if let Some(ifacer) = &self.ifacer {
            ifacer.validate(!master_nets.is_empty())?;
        }
        self.fabric()?;
        let (strategy, policy_target) = match &self.attach_policy {
            None => (Strategy::None, String::new()),
            Some(p) => {
                let s = Strategy::parse(&p.strategy).ok_or_else(|| {
                    CoreError::invalid(
                        "spec.attachPolicy.strategy",
                        &p.strategy,
                        "must be one of none, masters, devClass, perf (perfOpt), balance (costOpt), topology",
                    )
                })?;
                (s, p.target.clone())
            }
        };
        if strategy == Strategy::DevClass && policy_target.is_empty() {
            return Err(CoreError::invalid(
                "spec.attachPolicy.target",
                "",
                "names the DeviceClass and is required with strategy devClass",
            ));
        }
        self.rail_routes(&subnets, interface_block)?;
        self.external_ipam()?;
        self.pools(&subnets, interface_block, host_block)?;
        let gateway = self.gateway(
            &ipam,
            &subnets,
            interface_block,
            host_block,
            vlan_mode,
            &excludes,
        )?;
        for (i, ns) in self.namespaces.iter().enumerate() {
            validate_dns_label(&format!("spec.namespaces[{i}]"), ns)?;
        }
        Ok(Network {
            name: name.to_string(),
            subnets,
            interface_block,
            host_block,
            vlan_mode,
            excludes,
            master_nets,
            strategy,
            policy_target,
            gateway,
            spec: self.clone(),
        })
    }

    /// `spec.ipam.pools`, checked ([`crate::pools::validate`]).
    pub fn pools(
        &self,
        subnets: &[IpNet],
        interface_block: u8,
        host_block: u8,
    ) -> Result<Vec<crate::pools::Pool>> {
        let ipam = self.ipam_spec()?;
        let families: Vec<(IpNet, u128)> = subnets
            .iter()
            .map(|s| {
                let bits = u32::from(s.max_prefix_len())
                    .saturating_sub(u32::from(s.prefix_len()))
                    .saturating_sub(u32::from(interface_block) + u32::from(host_block));
                (*s, 1u128.checked_shl(bits).unwrap_or(u128::MAX))
            })
            .collect();
        crate::pools::validate(&ipam.pools, &families)
    }

    /// `spec.ipam.gateway`, parsed and checked against every host block
    /// ([`Gateway::check`]): the plugin and the ipvlan mode the network runs
    /// decide whether `none` is possible.
    fn gateway(
        &self,
        ipam: &IpamSpec,
        subnets: &[IpNet],
        interface_block: u8,
        host_block: u8,
        vlan_mode: VlanMode,
        excludes: &[IpNet],
    ) -> Result<Gateway> {
        let gateway = Gateway::parse(ipam.gateway.as_ref())?;
        if ipam.gateway.is_none() {
            // Offset 1, as every release had it: nothing new to refuse
            // (not even offset 1 inside an exclude, which it reserves).
            return Ok(gateway);
        }
        let plugin = self.plugin.as_ref();
        let kind = plugin.map_or("", |p| p.kind.as_str());
        let mode = match plugin.and_then(|p| p.args.get("mode")) {
            Some(m) => m.as_str(),
            None => match vlan_mode {
                VlanMode::L2 => "l2",
                VlanMode::L3 => "l3",
                VlanMode::L3s => "l3s",
            },
        };
        let pod_bits = |s: &IpNet| {
            u32::from(s.max_prefix_len())
                - u32::from(s.prefix_len())
                - u32::from(interface_block)
                - u32::from(host_block)
        };
        gateway.check(subnets, &pod_bits, excludes, kind, mode)?;
        Ok(gateway)
    }

    /// `spec.ipam.external`, checked ([`crate::external_ipam::check`]):
    /// `None` when railyard allocates. It needs `multiNICIPAM: false`, as in
    /// multi-nic-cni, where `true` means the multi-NIC IPAM allocates.
    pub fn external_ipam(&self) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let ipam = self.ipam_spec()?;
        let Some(value) = &ipam.external else {
            return Ok(None);
        };
        let conf = crate::external_ipam::check("spec.ipam.external", value)
            .map_err(|p| CoreError::invalid(p.field, p.value, p.reason))?;
        if self.multi_nic_ipam {
            return Err(CoreError::invalid(
                "spec.multiNICIPAM",
                true,
                "must be false with spec.ipam.external: true means railyard's IPAM allocates, \
                 false that the external IPAM does (on the blocks railyard plans)",
            ));
        }
        Ok(Some(conf.clone()))
    }

    /// `spec.routes`, checked: a rail the network can have (below
    /// 2^interfaceBlock), a destination CIDR without host bits that does not
    /// overlap the pod subnet (the pods' own routes cover that).
    pub fn rail_routes(&self, subnets: &[IpNet], interface_block: u8) -> Result<Vec<RailRoute>> {
        let rails = 1i64 << interface_block;
        self.routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if !(0..rails).contains(&r.rail) {
                    return Err(CoreError::invalid(
                        format!("spec.routes[{i}].rail"),
                        r.rail,
                        format!("must be a rail of the network, 0 to {}", rails - 1),
                    ));
                }
                let field = format!("spec.routes[{i}].dst");
                let dst: IpNet = r.dst.trim().parse().map_err(|_| {
                    CoreError::invalid(&field, &r.dst, "is not a CIDR (like 10.50.0.0/16)")
                })?;
                if dst.addr() != dst.network() {
                    return Err(CoreError::invalid(
                        &field,
                        &r.dst,
                        format!("has host bits set; did you mean {}?", dst.trunc()),
                    ));
                }
                if let Some(s) = subnets.iter().find(|s| overlaps(s, &dst)) {
                    return Err(CoreError::invalid(
                        &field,
                        &r.dst,
                        format!("overlaps the pod subnet {s}, whose routes the pods have already"),
                    ));
                }
                Ok(RailRoute {
                    rail: u32::try_from(r.rail).unwrap_or(0),
                    dst,
                })
            })
            .collect()
    }

    /// The ipam block, decoding multi-nic-cni's JSON-in-a-string form. Unknown
    /// keys are refused, naming the first (`spec.ipam.excludeCIDR`).
    pub fn ipam_spec(&self) -> Result<IpamSpec> {
        let spec: IpamSpec = match &self.ipam {
            IpamField::Object(o) => o.clone(),
            IpamField::Text(t) if t.trim().is_empty() => IpamSpec::default(),
            IpamField::Text(t) => serde_json::from_str(t).map_err(|e| {
                CoreError::invalid(
                    "spec.ipam",
                    t.trim(),
                    format!("is not valid IPAM JSON: {e}"),
                )
            })?,
        };
        if let Some((key, value)) = spec.unknown.iter().next() {
            return Err(CoreError::invalid(
                format!("spec.ipam.{key}"),
                value,
                format!("is not an ipam key (known: {})", IPAM_KEYS.join(", ")),
            ));
        }
        Ok(spec)
    }
}

fn parse_subnets(raw: &str) -> Result<Vec<IpNet>> {
    let raw = if raw.trim().is_empty() {
        DEFAULT_SUBNET
    } else {
        raw
    };
    let mut subnets = Vec::new();
    for part in raw.split(',').map(str::trim) {
        let net: IpNet = part.parse().map_err(|_| {
            CoreError::invalid(
                "spec.subnet",
                part,
                "is not a CIDR (expected e.g. 192.168.0.0/16)",
            )
        })?;
        if net.addr() != net.network() {
            return Err(CoreError::invalid(
                "spec.subnet",
                part,
                format!("has host bits set; did you mean {}?", net.trunc()),
            ));
        }
        subnets.push(net);
    }
    match subnets.as_slice() {
        [_] => {}
        [a, b] if is_v4(a) != is_v4(b) => {}
        [_, _] => {
            return Err(CoreError::invalid(
                "spec.subnet",
                raw,
                "dual stack needs one IPv4 and one IPv6 CIDR",
            ))
        }
        _ => {
            return Err(CoreError::invalid(
                "spec.subnet",
                raw,
                "takes one CIDR, or one IPv4 and one IPv6 CIDR separated by a comma",
            ))
        }
    }
    Ok(subnets)
}

fn block_bits(field: &str, value: Option<i64>, max: u8) -> Result<u8> {
    let v = value.ok_or_else(|| CoreError::invalid(field, "", "is required"))?;
    u8::try_from(v)
        .ok()
        .filter(|b| *b <= max)
        .ok_or_else(|| CoreError::invalid(field, v, format!("must be between 0 and {max}")))
}

fn parse_list(
    field: &str,
    raw: &[String],
    check: impl Fn(&IpNet) -> std::result::Result<(), String>,
) -> Result<Vec<IpNet>> {
    raw.iter()
        .enumerate()
        .map(|(i, s)| {
            let f = format!("{field}[{i}]");
            let net: IpNet = s
                .trim()
                .parse()
                .map_err(|_| CoreError::invalid(&f, s, "is not a CIDR"))?;
            check(&net).map_err(|reason| CoreError::invalid(&f, s, reason))?;
            Ok(net)
        })
        .collect()
}

pub(crate) fn is_v4(n: &IpNet) -> bool {
    matches!(n, IpNet::V4(_))
}

/// Two CIDRs overlap exactly when one contains the other's network address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}
