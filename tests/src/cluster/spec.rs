//! What a local cluster looks like, as plain data saved in its state file, and
//! every name and address derived from it. Deriving names in one place is what
//! lets `down` (a different process, maybe after a crash) find everything `up`
//! made, and lets tests run side by side under different prefixes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
    Dual,
}

impl Family {
    pub fn has_v4(self) -> bool {
        self != Family::V6
    }
    pub fn has_v6(self) -> bool {
        self != Family::V4
    }
}

/// The interface plugin `railyard-cni` runs once per NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Delegate {
    /// A routed veth per NIC: pod traffic enters the host, which forwards it by
    /// railyard's routes. The default: it exercises the routes end to end.
    Ptp,
    /// A macvlan child of each rail NIC. The host reaches its macvlan pods through
    /// a macvlan "gateway shim" per rail holding the block's gateway address.
    Macvlan,
    /// An ipvlan child of each rail NIC (`--ipvlan-mode`, l3 by default, as
    /// multi-nic-cni's default). Needs a kernel with ipvlan: this machine's has
    /// none, so such a cluster runs in the full-kernel VM (`railyard-vm`).
    Ipvlan,
    /// A spare link of each rail moved into the pod by the host-device plugin.
    /// Each host gets, per rail, veths `spare<j>-<k>` cabled to the rail's
    /// bridge ([`ClusterSpec::spares`]), which railyard-cni picks from with
    /// `spareDevices` = [`SPARE_TEMPLATE`]; like macvlan pods they sit on the
    /// rail's L2 and reach the host through the daemon's gateway shim.
    #[serde(rename = "host-device")]
    HostDevice,
}

/// The `spareDevices` a host-device cluster's pods take their links from:
/// `spare<rail>-<k>`, outside the daemons' `rail*` NIC filter (a spare is no
/// rail NIC of the host), and one pattern for every host and rail.
pub const SPARE_TEMPLATE: &str = "spare{rail}-*";

/// The ipvlan mode of an ipvlan cluster. In l3 and l3s the host routes the
/// pods' traffic (railyard's routes carry it across hosts); l2 bridges it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    #[default]
    L3,
    L3s,
    L2,
}

impl IpvlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
            IpvlanMode::L2 => "l2",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Prefix of every namespace, host and pod name: "" gives `host-0`,
    /// `pod-0-0`; tests use their own so they never meet.
    pub prefix: String,
    pub hosts: usize,
    pub rails: usize,
    /// Pods attached per host by `up`.
    pub pods: usize,
    pub family: Family,
    pub delegate: Delegate,
    /// With `Delegate::Ipvlan`: its mode.
    #[serde(default)]
    pub ipvlan_mode: IpvlanMode,
    /// Rail NICs are VLAN sub-interfaces with this id: the network's
    /// `spec.ifacer.vlanID`, so each route-daemon makes `rail<j>.<id>` on the
    /// veth `rail<j>` ([`ClusterSpec::rail_nic`]).
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Rail NICs are bonds of two links each (active-backup), `rail<j>` of
    /// `bond<j>a` and `bond<j>b`: the network's `spec.ifacer.bonds`, made by
    /// each route-daemon.
    #[serde(default)]
    pub bond: bool,
    /// A routed fabric (`--fabric routed`, `fabric.rs`): a leaf namespace
    /// running BIRD per rail instead of a bridge, each host's rail NIC on a
    /// /31 (/127) of its own to it, a BIRD per host driven by its daemon, and
    /// the network's `spec.fabric.mode: routed`.
    #[serde(default)]
    pub routed: bool,
    /// The MultiNicNetwork's name.
    pub network: String,
    /// etcd's client port; its peer port is the next one.
    pub etcd_port: u16,
    /// etcd members: 1 runs one in the root namespace on `etcd_port`; 3 (or
    /// another odd number up to 5) runs each in a namespace of its own, so a
    /// test can kill, restart and partition them (`etcd_members.rs`).
    #[serde(default = "one_member")]
    pub etcd_members: usize,
    /// Picks the management subnet `10.254.<id>.0/24`, one per concurrent cluster.
    pub mgmt_id: u8,
    pub state_dir: PathBuf,
    /// Where the railyard binaries are.
    pub bin_dir: PathBuf,
    /// Where the reference CNI plugins (ptp, macvlan, static) are.
    pub cni_dir: PathBuf,
    /// Parent of the per-host IPAM socket directories.
    pub socket_dir: PathBuf,
    pub planners: usize,
    /// The planner's `--grace` (how long a departed host keeps its index).
    pub grace: String,
    /// The planner's `--nic-grace` (how long a rail NIC missing from its host's
    /// registration keeps its block); `None` leaves the planner's default.
    #[serde(default)]
    pub nic_grace: Option<String>,
    /// Lease TTL in seconds of the planners' election and the daemons' registrations.
    pub lease_ttl: u32,
    /// Pods attached at once by `up`.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Hosts whose daemon `--state-dir` is a tmpfs of this many KiB (host
    /// index to size): mounted before the daemon first starts, unmounted by
    /// `down`. A small one lets a test fill the allocation log's disk.
    #[serde(default)]
    pub state_tmpfs_kib: BTreeMap<usize, u64>,
    /// With `Delegate::HostDevice`: spare links made per host and rail;
    /// `None` makes one per pod `up` attaches ([`ClusterSpec::spare_count`]).
    #[serde(default)]
    pub spares: Option<usize>,
    /// railyard-cni's `inProcessDelegates`: macvlan and ipvlan made by
    /// railyard-cni itself, a pod's interfaces in one batch.
    #[serde(default)]
    pub in_process_delegates: bool,
    /// The network's `spec.routes`: (rail, destination CIDR).
    #[serde(default)]
    pub routes: Vec<(u32, String)>,
    /// The network's workload pools (`spec.ipam.pools`): (name, offsets).
    #[serde(default)]
    pub pools: Vec<(String, String)>,
    /// The route-daemons talk to this Kubernetes API (`--kubeconfig`, a
    /// short leak grace): its address must be `127.0.0.1:<port>`, forwarded
    /// into each host's namespace by the process that starts the daemons
    /// ([`super::forward`]), so only in-process users (tests) can set it.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The network's `spec.ipam.gateway` as `railyard-local --gateway` takes
    /// it: `none`, or an offset (`-2`); unset is the default, offset 1.
    #[serde(default)]
    pub gateway: Option<String>,
    /// An external IPAM (`spec.ipam.external` with `multiNICIPAM: false`):
    /// the plugin's config (`{"type": "host-local"}`); railyard-cni runs it
    /// per rail in the host block (host-local's `dataDir` is set per host).
    #[serde(default)]
    pub external_ipam: Option<serde_json::Value>,
}

fn default_parallel() -> usize {
    8
}

fn one_member() -> usize {
    1
}

impl ClusterSpec {
    /// The demo's defaults: 4 hosts x 2 rails x 3 pods, IPv4, ptp.
    pub fn new(state_dir: impl Into<PathBuf>, bin_dir: impl Into<PathBuf>) -> Self {
        ClusterSpec {
            prefix: String::new(),
            hosts: 4,
            rails: 2,
            pods: 3,
            family: Family::V4,
            delegate: Delegate::Ptp,
            ipvlan_mode: IpvlanMode::default(),
            vlan: None,
            bond: false,
            routed: false,
            network: "rails".into(),
            etcd_port: 23790,
            etcd_members: 1,
            mgmt_id: 0,
            state_dir: state_dir.into(),
            bin_dir: bin_dir.into(),
            cni_dir: PathBuf::from("/usr/lib/cni"),
            socket_dir: PathBuf::from("/run/railyard"),
            planners: 1,
            grace: "10m".into(),
            nic_grace: None,
            lease_ttl: 5,
            parallel: default_parallel(),
            state_tmpfs_kib: BTreeMap::new(),
            spares: None,
            in_process_delegates: false,
            routes: Vec::new(),
            pools: Vec::new(),
            kubeconfig: None,
            gateway: None,
            external_ipam: None,
        }
    }

    /// Refuses what the address plan below cannot hold, before anything is made.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Refused(m));
        if !self
            .prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || self.prefix.len() > 20
        {
            return bad(format!(
                "prefix {:?}: use at most 20 of a-z, 0-9 and '-' (it starts host names)",
                self.prefix
            ));
        }
        if !(1..=8).contains(&self.rails) {
            return bad(format!("{} rails: 1 to 8 are supported", self.rails));
        }
        if self.routed && (self.vlan.is_some() || self.bond || self.spare_count() > 0) {
            return bad(
                "a routed fabric takes plain rail NICs: no --vlan, --bond or host-device spares"
                    .into(),
            );
        }
        if self.hosts == 0 || self.hosts > self.max_hosts() {
            return bad(format!(
                "{} hosts: 1 to {} fit {} rails (hostBlock {})",
                self.hosts,
                self.max_hosts(),
                self.rails,
                self.host_block()
            ));
        }
        if self.pods > 250 {
            return bad(format!(
                "{} pods per host: at most 250 fit a /24 block",
                self.pods
            ));
        }
        if self.spare_count() > 250 {
            return bad(format!(
                "{} spares per host and rail: at most 250 (as many as pods fit a block)",
                self.spare_count()
            ));
        }
        if self.planners == 0 {
            return bad("at least one planner is needed".into());
        }
        if !matches!(self.etcd_members, 1 | 3 | 5) {
            return bad(format!(
                "{} etcd members: run 1, 3 or 5 (a quorum needs an odd count)",
                self.etcd_members
            ));
        }
        if self.etcd_port == u16::MAX {
            return bad("the etcd port needs a free port after it (the peer port)".into());
        }
        Ok(())
    }

    /// Bits of the rail index: at least 2 so the default layout is the README's
    /// worked example (192.168.(64j+i).0/24).
    pub fn interface_block(&self) -> u8 {
        let mut bits = 2;
        while (1usize << bits) < self.rails {
            bits += 1;
        }
        bits
    }

    /// Bits of the host index: what is left of the /16 above a /24 per host.
    pub fn host_block(&self) -> u8 {
        8 - self.interface_block()
    }

    /// Hosts that fit both the host block and the .10+i NIC addresses. Hosts that
    /// join later count too.
    pub fn max_hosts(&self) -> usize {
        (1usize << self.host_block()).min(240)
    }

    pub fn subnet(&self) -> String {
        match self.family {
            Family::V4 => "192.168.0.0/16".into(),
            Family::V6 => "fd00:200::/48".into(),
            Family::Dual => "192.168.0.0/16,fd00:200::/48".into(),
        }
    }

    /// The MultiNicNetwork `railyard apply` gets (JSON is YAML). A macvlan or
    /// host-device cluster names its delegate in `spec.plugin`, as a user's
    /// network does:
    /// that is what tells each route-daemon to make the gateway shims macvlan
    /// pods need (`docs/design/data-paths.md`).
    pub fn manifest(&self) -> serde_json::Value {
        let plugin = match self.delegate {
            Delegate::Macvlan => serde_json::json!({
                "cniVersion": "1.0.0", "type": "macvlan", "args": {"mode": "bridge"},
            }),
            // The daemons make gateway shims for it too; its spareDevices is
            // what a NAD made from this network would pass railyard-cni.
            Delegate::HostDevice => serde_json::json!({
                "cniVersion": "1.0.0", "type": "host-device",
                "args": {"spareDevices": SPARE_TEMPLATE},
            }),
            // Named with its mode where the spec's validation must know it:
            // `gateway: none` is for ipvlan l3 and l3s only.
            Delegate::Ipvlan if self.gateway.is_some() => serde_json::json!({
                "cniVersion": "1.0.0", "type": "ipvlan",
                "args": {"mode": self.ipvlan_mode.as_str()},
            }),
            _ => serde_json::json!({"cniVersion": "1.0.0", "type": "railyard-cni"}),
        };
        let mut manifest = serde_json::json!({
            "apiVersion": "railyard.dev/v1",
            "kind": "MultiNicNetwork",
            "metadata": {"name": self.network},
            "spec": {
                "subnet": self.subnet(),
                "ipam": {
                    "type": "railyard-ipam",
                    "hostBlock": self.host_block(),
                    "interfaceBlock": self.interface_block(),
                },
                "multiNICIPAM": true,
                "plugin": plugin,
                "attachPolicy": {"strategy": "none"},
            }
        });
        if let Some(gateway) = self.gateway_value() {
            manifest["spec"]["ipam"]["gateway"] = gateway;
        }
        if let Some(external) = &self.external_ipam {
            manifest["spec"]["ipam"]["external"] = external.clone();
            manifest["spec"]["multiNICIPAM"] = serde_json::json!(false);
        }
        if !self.routes.is_empty() {
            let routes: Vec<serde_json::Value> = self
                .routes
                .iter()
                .map(|(rail, dst)| serde_json::json!({"rail": rail, "dst": dst}))
                .collect();
            manifest["spec"]["routes"] = serde_json::json!(routes);
        }
        if !self.pools.is_empty() {
            let pools: Vec<serde_json::Value> = self
                .pools
                .iter()
                .map(|(name, offsets)| serde_json::json!({"name": name, "offsets": offsets}))
                .collect();
            manifest["spec"]["ipam"]["pools"] = serde_json::json!(pools);
        }
        if self.routed {
            // Each rail's range of links, in the primary family: the planner
            // puts a NIC on the rail whose range holds its /31.
            let masters: Vec<String> = (0..self.rails)
                .map(|j| match self.family.has_v4() {
                    true => super::fabric::master_net_v4(j).to_string(),
                    false => super::fabric::master_net_v6(j).to_string(),
                })
                .collect();
            manifest["spec"]["masterNets"] = serde_json::json!(masters);
            manifest["spec"]["fabric"] = serde_json::json!({
                "mode": "routed",
                "bgp": {
                    "asn": super::fabric::HOST_ASN,
                    "peerAsn": super::fabric::LEAF_ASN,
                    "holdTime": super::fabric::HOLD_TIME,
                },
            });
        }
        if let Some(ifacer) = self.ifacer() {
            // Each rail's subnet in the primary family (the planner makes a
            // rail of every masterNets entry): which addresses are rail
            // addresses, the ones the daemons move onto the links they make
            // (with a dual-stack NIC's IPv6 one).
            let masters: Vec<String> = (0..self.rails)
                .filter_map(|j| {
                    let (addr, len) = self.rail_addrs(0, j).into_iter().next()?;
                    Some(ipnet::IpNet::new(addr, len).ok()?.trunc().to_string())
                })
                .collect();
            manifest["spec"]["masterNets"] = serde_json::json!(masters);
            manifest["spec"]["ifacer"] = ifacer;
        }
        manifest
    }

    /// The network's `spec.ifacer` for `--vlan` and `--bond`: the rail
    /// interfaces node provisioning leaves to the route-daemons (see
    /// `topology::rail_nic`). None for plain rails.
    pub fn ifacer(&self) -> Option<serde_json::Value> {
        if self.vlan.is_none() && !self.bond {
            return None;
        }
        let mut ifacer = serde_json::json!({});
        if let Some(id) = self.vlan {
            ifacer["vlanID"] = serde_json::json!(id);
        }
        if self.bond {
            let bonds: Vec<serde_json::Value> = (0..self.rails)
                .map(|j| {
                    serde_json::json!({
                        "name": format!("rail{j}"),
                        "interfaces": [format!("bond{j}a"), format!("bond{j}b")],
                        "mode": "active-backup",
                        "options": "miimon=100",
                    })
                })
                .collect();
            ifacer["bonds"] = serde_json::json!(bonds);
        }
        Some(ifacer)
    }

    /// The rail NIC of rail `j` once the daemons made what `ifacer` asks:
    /// `rail<j>.<id>` with a VLAN (on the bond `rail<j>` when both), else
    /// `rail<j>`.
    pub fn rail_nic(&self, j: usize) -> String {
        match self.vlan {
            Some(id) => format!("rail{j}.{id}"),
            None => format!("rail{j}"),
        }
    }

    pub fn fabric(&self) -> String {
        format!("{}fabric", self.prefix)
    }

    /// Rail `j`'s leaf namespace on a routed fabric.
    pub fn leaf(&self, j: usize) -> String {
        format!("{}leaf{j}", self.prefix)
    }

    /// A BIRD's configuration file and control socket (`role` is a leaf's or
    /// a host's namespace).
    pub fn bird_files(&self, role: &str) -> (PathBuf, PathBuf) {
        let dir = self.state_dir.join("bird");
        (
            dir.join(format!("{role}.conf")),
            dir.join(format!("{role}.ctl")),
        )
    }

    /// Host `i`'s name, which is also its namespace's name (`railyard check`'s
    /// `--host-netns` default).
    pub fn host(&self, i: usize) -> String {
        format!("{}host-{i}", self.prefix)
    }

    /// Pod `k` of host `i`: the namespace, the pod name and the container ID
    /// (`railyard check`'s `--pod-netns` default is the pod name).
    pub fn pod(&self, i: usize, k: usize) -> String {
        format!("{}pod-{i}-{k}", self.prefix)
    }

    pub fn mgmt_bridge(&self) -> String {
        format!("rymgmt{}", self.mgmt_id)
    }

    /// The root namespace's end of host `i`'s management link.
    pub fn mgmt_veth(&self, i: usize) -> String {
        format!("rym{}h{i}", self.mgmt_id)
    }

    /// The root namespace's address on the management bridge; etcd listens here
    /// for the daemons, which run inside the host namespaces.
    pub fn mgmt_gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 254, self.mgmt_id, 1)
    }

    pub fn mgmt_addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 254, self.mgmt_id, octet(i))
    }

    /// Host `i`'s NIC on rail `j`: 10.100.j.(10+i)/24.
    pub fn rail_v4(&self, i: usize, j: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 100, j as u8, octet(i))
    }

    /// Host `i`'s NIC on rail `j`: fd00:100:j::(10+i)/64.
    pub fn rail_v6(&self, i: usize, j: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x100, j as u16, 0, 0, 0, 0, u16::from(octet(i)))
    }

    /// Host `i`'s NIC addresses on rail `j` with their prefix lengths: on a
    /// routed fabric its end of its /31 (/127) to the leaf.
    pub fn rail_addrs(&self, i: usize, j: usize) -> Vec<(IpAddr, u8)> {
        let mut out = Vec::new();
        if self.routed {
            if self.family.has_v4() {
                out.push((IpAddr::V4(super::fabric::link_v4(i, j).0), 31));
            }
            if self.family.has_v6() {
                out.push((IpAddr::V6(super::fabric::link_v6(i, j).0), 127));
            }
            return out;
        }
        if self.family.has_v4() {
            out.push((IpAddr::V4(self.rail_v4(i, j)), 24));
        }
        if self.family.has_v6() {
            out.push((IpAddr::V6(self.rail_v6(i, j)), 64));
        }
        out
    }

    /// The endpoints the root namespace's clients (planners, CLI) get: every
    /// member's when there are several (`--etcd-endpoints` takes the list).
    pub fn local_endpoint(&self) -> String {
        if self.etcd_members > 1 {
            return self.etcd_member_endpoints();
        }
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// The endpoints the daemons in the host namespaces get.
    pub fn mgmt_endpoint(&self) -> String {
        if self.etcd_members > 1 {
            return self.etcd_member_endpoints();
        }
        format!("http://{}:{}", self.mgmt_gateway(), self.etcd_port)
    }

    pub fn socket(&self, i: usize) -> PathBuf {
        self.socket_dir.join(self.host(i)).join("ipam.sock")
    }

    /// The daemon's `--state-dir` (its durable allocation log).
    pub fn daemon_state(&self, i: usize) -> PathBuf {
        self.state_dir.join(self.host(i))
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("cluster.json")
    }

    pub fn log(&self, role: &str) -> PathBuf {
        self.state_dir.join("logs").join(format!("{role}.log"))
    }

    pub fn cni_state(&self) -> PathBuf {
        self.state_dir.join("cni")
    }

    /// Host `i`'s host-local `dataDir` for an external IPAM
    /// ([`ClusterSpec::external_ipam`]): one per host, as on real machines.
    pub fn external_ipam_dir(&self, i: usize) -> PathBuf {
        self.state_dir.join("host-local").join(self.host(i))
    }

    /// Host `i`'s railyard-cni `stateDir`. Real hosts each have their own;
    /// here the hosts share one file system, and all but host-device clusters
    /// share [`ClusterSpec::cni_state`] (records are per attachment, and
    /// container IDs are unique). host-device records also claim spare links
    /// by name for the host that holds them, and every host here has a
    /// `spare0-0`: each host gets a directory of its own under it.
    pub fn host_cni_state(&self, i: usize) -> PathBuf {
        if self.delegate == Delegate::HostDevice {
            self.cni_state().join(self.host(i))
        } else {
            self.cni_state()
        }
    }

    pub fn cni_path(&self) -> String {
        format!("{}:{}", self.bin_dir.display(), self.cni_dir.display())
    }

    /// Spare links per host and rail: none unless host-device, then
    /// `spares`, or one per pod.
    pub fn spare_count(&self) -> usize {
        if self.delegate == Delegate::HostDevice {
            self.spares.unwrap_or(self.pods)
        } else {
            0
        }
    }

    /// Spare `k` of rail `j` in a host namespace (it matches [`SPARE_TEMPLATE`]).
    pub fn spare(&self, j: usize, k: usize) -> String {
        format!("spare{j}-{k}")
    }

    /// The fabric's end of host `i`'s spare `k` on rail `j`, a port of the
    /// rail's bridge.
    pub fn spare_port(&self, i: usize, j: usize, k: usize) -> String {
        format!("h{i}r{j}s{k}")
    }
}

impl ClusterSpec {
    /// [`ClusterSpec::gateway`] as the spec writes it: `"none"`, or
    /// `{"offset": N}` for a number (anything else is passed on as a string,
    /// for the planner to refuse by name).
    pub fn gateway_value(&self) -> Option<serde_json::Value> {
        let g = self.gateway.as_deref()?;
        Some(match g.parse::<i64>() {
            Ok(offset) => serde_json::json!({ "offset": offset }),
            Err(_) => serde_json::json!(g),
        })
    }

    /// The gateway of a host block, as the pods and the shims use it (none
    /// for a network without gateways).
    pub fn block_gateway(&self, block: ipnet::IpNet) -> Option<std::net::IpAddr> {
        let gateway = self.gateway_value();
        railyard_core::Gateway::parse(gateway.as_ref())
            .unwrap_or_default()
            .address(block)
    }
}

/// The last octet of host `i`'s addresses (.10 upwards, leaving room below for
/// gateways); `validate` keeps `i` under 240.
fn octet(i: usize) -> u8 {
    u8::try_from(i + 10).unwrap_or(u8::MAX)
}

impl ClusterSpec {
    /// Kernel modules this cluster's data path needs beyond veth, bridge and
    /// macvlan (which every kernel railyard runs on has).
    pub fn kernel_modules(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.delegate == Delegate::Ipvlan {
            m.push("ipvlan");
        }
        if self.vlan.is_some() {
            m.push("8021q");
        }
        if self.bond {
            m.push("bonding");
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_layout_is_the_readme_example() {
        let s = ClusterSpec::new("/tmp/x", "/bin");
        s.validate().expect("defaults are valid");
        assert_eq!((s.interface_block(), s.host_block()), (2, 6));
        assert_eq!(s.host(1), "host-1");
        assert_eq!(s.pod(1, 2), "pod-1-2");
        assert_eq!(s.rail_v4(3, 1).to_string(), "10.100.1.13");
        assert_eq!(s.rail_v6(3, 1).to_string(), "fd00:100:1::d");
        assert_eq!(s.spare_count(), 0, "spares are host-device's");
    }

    #[test]
    fn host_device_spares_follow_the_pods_and_fit_names() {
        let mut s = ClusterSpec::new("/tmp/x", "/bin");
        s.delegate = Delegate::HostDevice;
        assert_eq!(s.spare_count(), s.pods);
        s.spares = Some(1);
        assert_eq!(s.spare_count(), 1);
        s.spares = Some(250);
        s.hosts = 64;
        s.rails = 4;
        s.validate().expect("the largest layout");
        let (host, port) = (s.spare(3, 249), s.spare_port(63, 3, 249));
        assert!(host.len() <= 15 && port.len() <= 15, "{host} {port}");
        assert!(!host.starts_with("rail"), "outside the daemons' NIC filter");
        let glob = SPARE_TEMPLATE.replace("{rail}", "3").replace('*', "");
        assert!(host.starts_with(&glob), "{host} matches {SPARE_TEMPLATE}");
        s.spares = Some(251);
        assert!(s.validate().is_err());
        assert_eq!(s.manifest()["spec"]["plugin"]["type"], "host-device");
    }

    #[test]
    fn limits_are_refused_with_the_reason() {
        let mut s = ClusterSpec::new("/tmp/x", "/bin");
        s.rails = 5;
        assert_eq!(s.interface_block(), 3);
        s.hosts = 33;
        let e = s.validate().expect_err("33 hosts do not fit 5 bits");
        assert!(e.to_string().contains("1 to 32"), "{e}");
        s.prefix = "Bad_".into();
        assert!(s.validate().is_err());
    }
}
