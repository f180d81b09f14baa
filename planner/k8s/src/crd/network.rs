//! `MultiNicNetwork`: multi-nic-cni's resource, field for field, so an existing
//! `network.yaml` applies after changing only `apiVersion` to `railyard.dev/v1`.
//!
//! The Rust side is deliberately lenient (defaults everywhere, plain strings where
//! the schema has an enum): a stored object that an older CRD accepted must still
//! deserialize, or the controller's watch would fail on it and stall every network.
//! Strictness lives in the schema (checked by the apiserver before storing) and in
//! `NetworkSpec::validate` (reported as the `Invalid` condition).
//!
//! What the schema can check, it checks: the subnet is one or two CIDRs, namespaces
//! are DNS labels, the strategy and plugin type are known, ipvlan/macvlan modes are
//! valid, `devClass` has a target. What it cannot: `ipam` is a JSON document in a
//! string (multi-nic-cni's format) and CEL cannot parse JSON, so `hostBlock`,
//! `interfaceBlock` and `vlanMode` are checked by the controller, which reports the
//! field and value in the `Invalid` condition. A string rather than an object keeps
//! existing manifests valid unchanged, which is the point of the resource.
//!
//! Every list and string a rule walks has a maximum size: the apiserver estimates
//! each rule's cost from those bounds and refuses a CRD whose rules could exceed
//! its budget.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec, as multi-nic-cni users write it.
#[derive(CustomResource, KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "railyard.dev",
    version = "v1",
    kind = "MultiNicNetwork",
    plural = "multinicnetworks",
    shortname = "mnn",
    category = "railyard",
    status = "MultiNicNetworkStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A rail network: one pod subnet split into per-NIC and per-host blocks, with the attachment Multus uses (multi-nic-cni's MultiNicNetwork)."
)]
// The name becomes the network's name in etcd keys and in the CNI config, which
// must be a DNS label; the apiserver itself accepts any DNS subdomain for a
// cluster-scoped object (dots, up to 253 characters). A root rule may read
// `self.metadata.name` (only it and `generateName`); `size` and `contains` keep
// its cost linear in the name's length, unlike a regex.
#[kube(
    validation = Rule::new("size(self.metadata.name) <= 63 && !self.metadata.name.contains('.')").message("metadata.name must be a DNS label (no '.', at most 63 characters): it is the network's name in etcd and in the CNI config")
)]
#[kube(printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"))]
#[kube(printcolumn(
    name = "Planned",
    type_ = "integer",
    description = "hosts with blocks",
    json_path = ".status.hostsPlanned"
))]
// Raw JSON form: a second `type_ = "string"` trips clippy's duplicated_attributes.
#[kube(
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[kube(printcolumn(
    name = "Age",
    type_ = "date",
    json_path = ".metadata.creationTimestamp"
))]
#[serde(rename_all = "camelCase")]
pub struct MultiNicNetworkSpec {
    /// The pod subnet: one CIDR, or an IPv4 and an IPv6 CIDR separated by a comma.
    #[schemars(length(min = 1, max = 100))]
    #[x_kube(validation = Rule::new("self.split(',').size() <= 2 && self.split(',').all(c, isCIDR(c.trim()))").message("must be a CIDR, or an IPv4 and an IPv6 CIDR separated by a comma"))]
    pub subnet: String,
    /// The IPAM settings as a JSON document in a string (multi-nic-cni's format):
    /// `{"type": "multi-nic-ipam", "hostBlock": 6, "interfaceBlock": 2, "vlanMode": "l3"}`.
    /// `"gateway"` picks each host block's gateway: `{"offset": N}` (negative from
    /// the block's end, -2 is the last usable IPv4 address) or `"none"` (ipvlan l3
    /// and l3s only: no address reserved, device routes); default offset 1.
    /// Checked by the controller (the Invalid condition names the field and value).
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub ipam: String,
    /// multi-nic-cni's flag for an IPAM that returns one address per NIC (railyard's).
    /// false with `external` in `ipam` (`"external": {"type": "host-local"}`): that
    /// single-NIC IPAM allocates, once per NIC, inside the NIC's host block, which
    /// railyard still plans and routes. Without `external` railyard's IPAM allocates.
    #[serde(default, rename = "multiNICIPAM")]
    pub multi_nic_ipam: bool,
    /// The interface plugin each selected NIC is attached with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginSpec>,
    /// Which host NICs a pod gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_policy: Option<AttachPolicySpec>,
    /// Namespaces that get the NetworkAttachmentDefinition; all namespaces when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 1000),
        inner(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub namespaces: Vec<String>,
    /// Host networks (CIDRs) whose NICs take part; every NIC with an address when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 50)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("every entry must be a CIDR"))]
    pub master_nets: Vec<String>,
    /// VLAN and bond interfaces every host's route-daemon makes for the rails, as
    /// Spiderpool's ifacer does; needs masterNets (the daemon moves the host's
    /// masterNets addresses onto them). The rest is checked by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifacer: Option<IfacerSpec>,
    /// The rails' mode: `l2` (one shared subnet per rail, the default) or
    /// `routed` (each host's NIC on a link of its own to its rail's leaf, the
    /// host's blocks announced over BGP; needs masterNets). The values are
    /// checked by the controller (docs/design/routed-rails.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabric: Option<FabricSpec>,
    /// Extra pod routes per rail: `dst` leaves by the pod's interface on `rail`,
    /// via its gateway. The controller checks rail and CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub routes: Vec<RailRouteSpec>,
    /// The pod's own devices: an SR-IOV VF resource per rail (railyard-cni
    /// hands each rail's delegate the pod's VF of it), and which resources are
    /// GPUs (the topology policy then prefers the NICs next to them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DevicesSpec>,
    /// Plugins run after each pod interface: tuning, bandwidth, sbr, rdma.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub chain: Vec<ChainPluginSpec>,
}

/// `spec.fabric`.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FabricSpec {
    /// `l2` or `routed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub mode: Option<String>,
    /// With `routed`: the BGP sessions to the leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpSpec>,
}

/// `spec.fabric.bgp`.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpSpec {
    /// Every host's AS; 64512 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<i64>,
    /// The leaves' AS (required with `routed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_asn: Option<i64>,
    /// Seconds, 3 to 65535; 9 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<i64>,
}

/// `spec.devices`.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesSpec {
    /// Rail index ("0", "1", ...) to the extended resource of its VFs
    /// (`nvidia.com/rail0_vf`). Pods request each rail's resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256, "additionalProperties" = {"type": "string", "minLength": 1, "maxLength": 253}))]
    pub rail_resources: BTreeMap<String, String>,
    /// Resources that are GPUs; `nvidia.com/gpu` and `amd.com/gpu` when absent,
    /// none when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub gpu_resources: Option<Vec<String>>,
    /// The kubelet's pod-resources socket as railyard-cni sees it;
    /// `/var/lib/kubelet/pod-resources/kubelet.sock` when absent (a kubelet
    /// with another `--root-dir` needs this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^/"))]
    pub pod_resources_socket: Option<String>,
}

/// One `spec.chain` entry.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChainPluginSpec {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["tuning", "bandwidth", "sbr", "rdma"]))]
    pub kind: String,
    /// Settings as strings; numbers and booleans are converted. tuning's
    /// sysctls are `sysctl.<key>` (`sysctl.net.ipv4.conf.IFNAME.arp_ignore`).
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 1024}))]
    pub args: BTreeMap<String, String>,
}

/// One `spec.routes` entry.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RailRouteSpec {
    /// The rail (0 to 2^interfaceBlock - 1).
    #[schemars(range(min = 0, max = 255))]
    pub rail: i64,
    /// A CIDR, not overlapping the pod subnet.
    #[schemars(length(min = 1, max = 50))]
    pub dst: String,
}

/// `spec.ifacer`: what the schema can bound; names, modes and options are checked
/// by the controller (`railyard_core::ifacer`), which names field and value.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IfacerSpec {
    /// Every rail NIC gets a VLAN sub-interface `<nic>.<vlanID>`.
    #[serde(default, rename = "vlanID", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4094))]
    pub vlan_id: Option<i64>,
    /// One per rail that is a bond.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub bonds: Vec<BondSpec>,
}

#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BondSpec {
    /// The bond's interface name.
    #[schemars(length(min = 1, max = 15))]
    pub name: String,
    /// Its slaves, at least 2, each in one bond only.
    #[schemars(length(min = 2, max = 64), inner(length(min = 1, max = 15)))]
    pub interfaces: Vec<String>,
    /// A kernel mode name (balance-rr, active-backup, balance-xor, broadcast,
    /// 802.3ad, balance-tlb, balance-alb) or Spiderpool's 0 to 6; active-backup
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    /// `k=v;k=v`: miimon, updelay, downdelay (milliseconds).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub options: String,
}

#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'ipvlan' || !has(self.args) || !('mode' in self.args) || self.args['mode'] in ['l2', 'l3', 'l3s']").message("ipvlan mode must be l2, l3 or l3s"))]
#[x_kube(validation = Rule::new("self.type != 'macvlan' || !has(self.args) || !('mode' in self.args) || self.args['mode'] in ['bridge', 'private', 'vepa', 'passthru']").message("macvlan mode must be bridge, private, vepa or passthru"))]
pub struct PluginSpec {
    /// The CNI version of the generated config (the `railyard.dev/cni-version`
    /// annotation overrides it); 1.0.0 when empty. Multus must speak it: 0.3.0 to
    /// 0.4.0 need Multus 3.x or later, 1.0.0 needs Multus 4.0 or later, and 1.1.0
    /// needs Multus 4.1 or later (built with CNI library 1.2 or later); an older
    /// Multus fails every pod's attachment with an incompatible-version error.
    #[serde(default)]
    #[schemars(extend("enum" = ["", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]))]
    pub cni_version: String,
    /// The interface plugin railyard-cni runs once per selected NIC. No serde
    /// default: the schema requires it, and a default outside the enum would make
    /// the apiserver refuse the CRD.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["ipvlan", "macvlan", "ptp", "host-device", "sriov"]))]
    pub kind: String,
    /// Plugin settings as strings (`mode`, `mtu`, and for sriov `resourceName`,
    /// `vlan`, ...); numbers are converted where the plugin expects them.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 1024}))]
    pub args: BTreeMap<String, String>,
}

#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.strategy != 'devClass' || (has(self.target) && self.target != '')").message("target names the DeviceClass and is required with strategy devClass"))]
pub struct AttachPolicySpec {
    /// `costOpt` and `perfOpt` are multi-nic-cni's names of `balance` and `perf`.
    #[schemars(extend("enum" = ["none", "masters", "devClass", "perf", "perfOpt", "balance", "costOpt", "topology"]))]
    pub strategy: String,
    /// `masters`: NIC names, comma separated. `devClass`: the DeviceClass name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub target: String,
}

/// What the controller reports: conditions `Ready`, `Invalid` and `Exhausted`, and
/// the planner's numbers from etcd.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiNicNetworkStatus {
    /// `Ready`, `Invalid`, `Exhausted` and `NADsApplied`. A map keyed by `type`
    /// (as Kubernetes' own conditions are), so a server-side apply by another
    /// field manager adds or replaces a condition instead of the whole list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub hosts_planned: i64,
    /// Hosts whose registration is gone, keeping their blocks for the grace period.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub hosts_departed: i64,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub hosts_unplanned: i64,
    /// The first unplanned hosts and why (the full list: `railyard get plan`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned_hosts: Vec<UnplannedHost>,
    /// Rails (NIC subnets) in the plan.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub interfaces: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityStatus>,
    /// The NetworkAttachmentDefinition's name and how many namespaces have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nad_name: Option<String>,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub nad_namespaces: i64,
    /// Listed namespaces that do not exist (yet): they get the NAD once created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_namespaces: Vec<String>,
    /// The etcd revision of the last plan write: a route-daemon at or past it has it.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub plan_revision: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UnplannedHost {
    pub host: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityStatus {
    pub hosts_total: i64,
    /// Host indexes a new host can still take.
    pub hosts_free: i64,
    pub interfaces_total: i64,
    /// Pod addresses per host per rail, one per family (primary first).
    #[serde(default)]
    pub pods_per_host_per_rail: Vec<i64>,
}
