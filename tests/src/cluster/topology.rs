//! The kernel side of a local cluster. A "fabric" namespace holds one bridge per
//! rail (the rail's switch); every host namespace has NIC `rail<j>` (a veth whose
//! peer is a port of bridge j) and `mgmt0`, a management link into a bridge in
//! the root namespace, where etcd listens: the daemons run inside their host
//! namespaces and cannot reach the root namespace's loopback. A host-device
//! cluster's hosts also have spare links `spare<j>-<k>` into bridge j.

use super::cmd::{ip, ip_batch, ip_in, netns_add, sysctl_in};
use super::spec::ClusterSpec;
use super::state::State;
use crate::error::Result;

/// The management bridge in the root namespace (recorded before it exists, so a
/// failure half way still gets it removed).
pub fn make_mgmt(state: &mut State) -> Result<()> {
    let spec = state.spec.clone();
    let bridge = spec.mgmt_bridge();
    state.links.push(bridge.clone());
    state.save()?;
    ip(&["link", "add", &bridge, "type", "bridge"])?;
    ip(&[
        "addr",
        "add",
        &format!("{}/24", spec.mgmt_gateway()),
        "dev",
        &bridge,
    ])?;
    ip(&["link", "set", &bridge, "up"]).map(|_| ())
}

/// The fabric namespace with one bridge per rail. Multicast snooping is off so
/// IPv6 neighbour discovery is flooded like on a plain switch. A routed
/// fabric has a leaf namespace per rail instead (a router: forwarding on,
/// its BIRD started by the services), and the hosts cable into it.
pub fn make_fabric(state: &mut State) -> Result<()> {
    let spec = state.spec.clone();
    if spec.routed {
        for j in 0..spec.rails {
            let leaf = spec.leaf(j);
            state.add_netns(&leaf);
            state.save()?;
            netns_add(&leaf)?;
            ip_batch(Some(&leaf), &["link set lo up".to_owned()])?;
            sysctl_in(
                &leaf,
                &[
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.forwarding=1",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                ],
            )?;
        }
        return Ok(());
    }
    let fabric = spec.fabric();
    state.add_netns(&fabric);
    state.save()?;
    netns_add(&fabric)?;
    let mut lines = Vec::new();
    for j in 0..spec.rails {
        lines.push(format!("link add rail{j} type bridge mcast_snooping 0"));
        lines.push(format!("link set rail{j} up"));
    }
    ip_batch(Some(&fabric), &lines)
}

/// Host `i`: namespace, management link, one NIC per rail, forwarding on.
pub fn make_host(state: &mut State, i: usize) -> Result<()> {
    let spec = state.spec.clone();
    let host = spec.host(i);
    state.add_netns(&host);
    // The daemon makes its socket's directory; `down` removes it.
    if let Some(dir) = spec.socket(i).parent() {
        state.add_dir(dir);
    }
    state.hosts = state.hosts.max(i + 1);
    state.save()?;
    netns_add(&host)?;
    let mgmt = spec.mgmt_veth(i);
    // Recorded so `down` can wait for it to go: the kernel removes it with the
    // namespace, but asynchronously, and an `up` right after would collide.
    if !state.links.contains(&mgmt) {
        state.links.push(mgmt.clone());
    }
    state.save()?;
    ip_batch(
        None,
        &[
            format!("link add {mgmt} type veth peer name mgmt0 netns {host}"),
            format!("link set {mgmt} master {} up", spec.mgmt_bridge()),
        ],
    )?;
    let mut lines = vec![
        format!("addr add {}/24 dev mgmt0", spec.mgmt_addr(i)),
        "link set mgmt0 up".to_owned(),
    ];
    let mut fabric = Vec::new();
    for j in 0..spec.rails {
        if spec.routed {
            routed_link(&spec, i, j, &mut lines)?;
            continue;
        }
        let nic = rail_nic(&spec, i, j, &mut lines, &mut fabric);
        for (addr, len) in spec.rail_addrs(i, j) {
            // No DAD: the address must work the moment the daemon registers it.
            let nodad = if addr.is_ipv6() { " nodad" } else { "" };
            lines.push(format!("addr add {addr}/{len} dev {nic}{nodad}"));
        }
        lines.push(format!("link set {nic} up"));
        spares(&spec, i, j, &mut lines, &mut fabric);
    }
    ip_batch(Some(&host), &lines)?;
    if spec.routed {
        for j in 0..spec.rails {
            ip_batch(Some(&spec.leaf(j)), &leaf_port(&spec, i, j))?;
        }
    } else {
        ip_batch(Some(&spec.fabric()), &fabric)?;
    }
    // A host routes between its pods and its rails. rp_filter off: a pod's
    // reply may come back on another rail NIC than the one its request left by.
    sysctl_in(
        &host,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    )
}

/// Host `i`'s rail `j` on a routed fabric: `rail<j>`, a veth whose peer
/// `h<i>` is in the leaf's namespace, with the host's end of the /31 (/127).
fn routed_link(spec: &ClusterSpec, i: usize, j: usize, host: &mut Vec<String>) -> Result<()> {
    let port = super::fabric::leaf_port(i);
    host.push(format!(
        "link add rail{j} type veth peer name {port} netns {}",
        spec.leaf(j)
    ));
    for (addr, len) in spec.rail_addrs(i, j) {
        let nodad = if addr.is_ipv6() { " nodad" } else { "" };
        host.push(format!("addr add {addr}/{len} dev rail{j}{nodad}"));
    }
    host.push(format!("link set rail{j} up"));
    Ok(())
}

/// The leaf's end of host `i`'s rail-`j` link.
fn leaf_port(spec: &ClusterSpec, i: usize, j: usize) -> Vec<String> {
    let port = super::fabric::leaf_port(i);
    let mut lines = Vec::new();
    if spec.family.has_v4() {
        lines.push(format!(
            "addr add {}/31 dev {port}",
            super::fabric::link_v4(i, j).1
        ));
    }
    if spec.family.has_v6() {
        lines.push(format!(
            "addr add {}/127 dev {port} nodad",
            super::fabric::link_v6(i, j).1
        ));
    }
    lines.push(format!("link set {port} up"));
    lines
}

/// Host `i`'s spare links on rail `j` for host-device pods: veths
/// `spare<j>-<k>`, each cabled to the rail's bridge as the rail NIC is, and
/// left down (host-device brings one up in the pod it moves it to). None
/// for other delegates.
fn spares(
    spec: &ClusterSpec,
    i: usize,
    j: usize,
    host: &mut Vec<String>,
    fabric: &mut Vec<String>,
) {
    let fabric_ns = spec.fabric();
    for k in 0..spec.spare_count() {
        let (spare, port) = (spec.spare(j, k), spec.spare_port(i, j, k));
        host.push(format!(
            "link add {spare} type veth peer name {port} netns {fabric_ns}"
        ));
        fabric.push(format!("link set {port} master rail{j} up"));
    }
}

/// Host `i`'s spare links still in its namespace (not in a pod), sorted.
pub fn host_spares(spec: &ClusterSpec, i: usize) -> Vec<String> {
    let text = ip_in(&spec.host(i), &["-j", "link", "show"]).unwrap_or_default();
    let links: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    let mut out: Vec<String> = links
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("spare"))
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

/// A gateway shim as `ip -d addr show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GatewayShim {
    pub name: String,
    pub parent: String,
    pub mac: String,
    pub alias: String,
    /// Global addresses with their prefix lengths.
    pub addresses: Vec<String>,
}

/// Host `i`'s gateway shims, the links its route-daemon made for macvlan pods
/// (alias `railyard:<network>`, see `docs/design/data-paths.md`), sorted by
/// name. The harness makes none itself: what is here is the daemon's.
pub fn gateway_shims(spec: &ClusterSpec, i: usize) -> Vec<GatewayShim> {
    let text = ip_in(&spec.host(i), &["-j", "-d", "addr", "show"]).unwrap_or_default();
    let links: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    let mut out: Vec<GatewayShim> = links
        .iter()
        .filter(|l| {
            l["ifalias"]
                .as_str()
                .is_some_and(|a| a.starts_with("railyard:"))
        })
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            let addresses = l["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["scope"] == "global")
                .map(|a| {
                    let local = a["local"].as_str().unwrap_or_default();
                    format!("{local}/{}", a["prefixlen"])
                })
                .collect();
            GatewayShim {
                name: s("ifname"),
                parent: s("link"),
                mac: s("address"),
                alias: s("ifalias"),
                addresses,
            }
        })
        .collect();
    out.sort();
    out
}

/// Host `i`'s routes in `table` tagged with railyard's protocol, as
/// (dst, gateway, dev), both families.
pub fn kernel_routes(
    spec: &ClusterSpec,
    i: usize,
    table: u32,
) -> std::collections::BTreeSet<(String, String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for family in ["-4", "-6"] {
        let Ok(text) = ip_in(
            &spec.host(i),
            &[family, "-j", "route", "show", "table", &table.to_string()],
        ) else {
            // A table never used does not exist yet.
            continue;
        };
        let routes: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        for r in routes {
            if r["protocol"] == "167" || r["protocol"] == "railyard" {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                out.insert((s("dst"), s("gateway"), s("dev")));
            }
        }
    }
    out
}

/// Removes (`"del"`) or re-adds (`"add"`) host `i`'s addresses on its rail
/// `j` NIC, as a NIC losing its DHCP lease or an operator's mistake would: a
/// NIC flap as the daemons see it (the NIC drops out of the host's rails).
pub fn rail_addresses(spec: &ClusterSpec, op: &str, i: usize, j: usize) -> Result<()> {
    let dev = spec.rail_nic(j);
    for (addr, len) in spec.rail_addrs(i, j) {
        let cidr = format!("{addr}/{len}");
        let mut args = vec!["addr", op, cidr.as_str(), "dev", dev.as_str()];
        if op == "add" && addr.is_ipv6() {
            args.push("nodad");
        }
        ip_in(&spec.host(i), &args)?;
    }
    Ok(())
}

/// Rail `j`'s NIC(s) on host `i` as node provisioning leaves them, with
/// their cable(s) into the rail's bridge in the fabric; returns the NIC that
/// gets the host's rail address. The harness plays provisioning only: the
/// VLAN and bond interfaces are the route-daemon's, made from the network's
/// `spec.ifacer` (see [`ClusterSpec::manifest`]), as SpiderMultusConfig's
/// ifacer makes them.
/// - plain, or `--vlan ID`: a veth `rail{j}`; with a VLAN the daemon makes
///   `rail{j}.{ID}` on it and moves the address there (still inside the
///   daemons' `rail*` NIC filter); the fabric's plain bridge carries the
///   tagged frames as a trunk would;
/// - `--bond`: two veths `bond{j}a` (holding the address) and `bond{j}b`
///   (outside the `rail*` filter), both cabled to the rail's bridge; the
///   daemon makes the active-backup bond `rail{j}` of them and moves the
///   address onto it.
///
/// VLAN and bonding need their kernel modules: such clusters run in the
/// full-kernel VM on this machine.
fn rail_nic(
    spec: &ClusterSpec,
    i: usize,
    j: usize,
    host: &mut Vec<String>,
    fabric: &mut Vec<String>,
) -> String {
    let fabric_ns = spec.fabric();
    let mut cable = |nic: &str, port: String, host: &mut Vec<String>| {
        host.push(format!(
            "link add {nic} type veth peer name {port} netns {fabric_ns}"
        ));
        fabric.push(format!("link set {port} master rail{j} up"));
    };
    if spec.bond {
        cable(&format!("bond{j}a"), format!("h{i}r{j}a"), host);
        cable(&format!("bond{j}b"), format!("h{i}r{j}b"), host);
        host.push(format!("link set bond{j}b up"));
        format!("bond{j}a")
    } else {
        cable(&format!("rail{j}"), format!("h{i}r{j}"), host);
        format!("rail{j}")
    }
}
