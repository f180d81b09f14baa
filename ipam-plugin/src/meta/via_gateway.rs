//! macvlan and host-device pods reach the rest of their block through the
//! gateway shim, not over the rail's L2.
//!
//! Both put the pod on its rail's L2 segment with an address of the host's
//! block (host-device with a whole spare link of the rail, macvlan with a
//! child of the rail NIC), so the same reasoning holds for both; macvlan is
//! the case it was measured on.
//!
//! Why: the macvlan plugin puts the pod's address on with the host block's
//! prefix (`192.168.1.8/24`), and the kernel adds the connected route
//! `192.168.1.0/24 dev net1-0`. Every pod of a host then resolves every other
//! pod of that host on that rail with ARP or NDP, so the host kernel (which
//! holds the neighbour tables of all its pods' namespaces) needs about
//! `pods² × rails` entries: 16 pods on 4 rails need about 1,100, and the kernel's
//! default hard limit for the whole machine is 1,024 (`gc_thresh3`) per
//! family. Past it, new entries are refused ("neighbor table overflow",
//! `sendmsg: No buffer space available`) while fresh ones cannot be
//! collected, and pods on one host fail to reach each other for minutes.
//! Every pod's ARP request also floods the rail's L2 to every host.
//!
//! So, after the macvlan delegate made the interface, for each of its
//! addresses that has a gateway (the block's first address, which the
//! route-daemon's shim holds):
//!
//! - the connected route of the block is deleted;
//! - `<gateway> dev X scope link` makes the gateway reachable on the link;
//! - `<block> via <gateway> dev X` sends the block's traffic, same-host pods
//!   included, through the shim, which the host forwards out of the shim
//!   again (as ptp pods' same-host traffic is forwarded by the host).
//!
//! Each pod then holds one neighbour entry per rail (its gateway) and the host
//! one per pod and rail (the shim's): linear, as for ptp. The host sends an
//! ICMP redirect for a packet it forwards out of the interface it came in on,
//! and a pod accepting it would resolve the peer directly again, so the pod
//! refuses redirects: `accept_redirects=0` on the interface (IPv4 and IPv6)
//! and, for IPv4, on `all` too (the kernel ORs the two for a host that does
//! not forward).

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::routing::{in_netns, ip_binary, run};
use super::state::Member;
use crate::Error;

/// Heads this step's errors.
pub const WHAT: &str = "gateway routes";

/// Whether pods of this delegate get their block through the gateway: those
/// on the rail's L2, whose host holds a gateway shim (the route-daemon's
/// `needs_shim`). macvlan, and host-device, whose spare link sits on the
/// rail's L2 as a macvlan child does: without this its pods would resolve
/// every pod of their block on the rail (neighbour entries growing with the
/// square of the pods) and take ICMP redirects from the host. ptp and
/// ipvlan l3/l3s pods are routed by the host already.
pub fn applies_to(delegate_type: &str) -> bool {
    matches!(delegate_type, "macvlan" | "host-device")
}

/// One address of a pod interface with its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub ifname: String,
    pub address: IpNet,
    pub gateway: IpAddr,
}

impl Hop {
    /// The addresses with a gateway of a member's static IPAM config (what
    /// the delegate put on the interface).
    pub fn of(member: &Member) -> Vec<Hop> {
        let listed = member
            .config
            .get("ipam")
            .and_then(|ipam| ipam["addresses"].as_array());
        listed
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let address: IpNet = a["address"].as_str()?.parse().ok()?;
                let gateway: IpAddr = a["gateway"].as_str()?.parse().ok()?;
                (address.addr().is_ipv4() == gateway.is_ipv4()).then(|| Hop {
                    ifname: member.ifname.clone(),
                    address,
                    gateway,
                })
            })
            .collect()
    }
}

/// The `ip -batch` lines for `hops` of one family (`v4`), in order: the
/// connected route out, the gateway on the link, the block via the gateway.
/// A host route (/32, /128) has no connected route to replace.
fn batch(hops: &[Hop], v4: bool) -> String {
    let mut out = String::new();
    for hop in hops.iter().filter(|h| h.address.addr().is_ipv4() == v4) {
        let block = hop.address.trunc();
        if block.prefix_len() == block.max_prefix_len() {
            continue;
        }
        let (dev, gw) = (&hop.ifname, hop.gateway);
        out.push_str(&format!("route del {block} dev {dev} proto kernel\n"));
        if v4 {
            let src = hop.address.addr();
            out.push_str(&format!("route add {gw} dev {dev} scope link src {src}\n"));
            out.push_str(&format!("route add {block} via {gw} dev {dev} src {src}\n"));
        } else {
            out.push_str(&format!("route add {gw}/128 dev {dev}\n"));
            out.push_str(&format!("route add {block} via {gw} dev {dev}\n"));
        }
    }
    out
}

/// Routes `hops`' blocks through their gateways in `netns` and refuses
/// redirects there (module doc).
pub fn apply(netns: &Path, hops: &[Hop]) -> Result<(), Error> {
    if hops.is_empty() {
        return Ok(());
    }
    in_netns(WHAT, netns, || {
        let mut sysctls = vec!["/proc/sys/net/ipv4/conf/all/accept_redirects".to_owned()];
        for hop in hops {
            let family = if hop.address.addr().is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            };
            sysctls.push(format!(
                "/proc/sys/net/{family}/conf/{}/accept_redirects",
                hop.ifname
            ));
        }
        sysctls.dedup();
        // Before the routes: no redirect is taken in between.
        for path in &sysctls {
            std::fs::write(path, "0").map_err(|source| Error::Io {
                context: format!("{WHAT}: writing {path} in {}", netns.display()),
                source,
            })?;
        }
        let ip = ip_binary(WHAT)?;
        for (v4, flag) in [(true, "-4"), (false, "-6")] {
            let lines = batch(hops, v4);
            if !lines.is_empty() {
                run(WHAT, &ip, &[flag, "-batch", "-"], &lines)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(addresses: serde_json::Value) -> Member {
        Member {
            ifname: "net1-0".into(),
            nic: "eth1".into(),
            rail: Some(0),
            nic_field: None,
            device: None,
            choice: None,
            chain: Vec::new(),
            config: json!({"type": "macvlan", "ipam": {"type": "static", "addresses": addresses}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            result: None,
        }
    }

    #[test]
    fn pods_on_the_rails_l2_are_routed_through_the_gateway() {
        assert!(applies_to("macvlan") && applies_to("host-device"));
        assert!(!applies_to("ptp") && !applies_to("ipvlan") && !applies_to("sriov"));
    }

    #[test]
    fn the_block_goes_through_the_gateway_in_both_families() {
        let m = member(json!([
            {"address": "192.168.1.8/24", "gateway": "192.168.1.1"},
            {"address": "fd00:0:0:1::8/64", "gateway": "fd00:0:0:1::1"},
            {"address": "10.9.9.9/24"},
        ]));
        let hops = Hop::of(&m);
        assert_eq!(hops.len(), 2, "{hops:?}");
        assert_eq!(
            batch(&hops, true),
            "route del 192.168.1.0/24 dev net1-0 proto kernel\n\
             route add 192.168.1.1 dev net1-0 scope link src 192.168.1.8\n\
             route add 192.168.1.0/24 via 192.168.1.1 dev net1-0 src 192.168.1.8\n"
        );
        assert_eq!(
            batch(&hops, false),
            "route del fd00:0:0:1::/64 dev net1-0 proto kernel\n\
             route add fd00:0:0:1::1/128 dev net1-0\n\
             route add fd00:0:0:1::/64 via fd00:0:0:1::1 dev net1-0\n"
        );
    }

    #[test]
    fn host_routes_and_mixed_families_are_left_alone() {
        let m = member(json!([
            {"address": "192.168.1.8/32", "gateway": "192.168.1.1"},
            {"address": "192.168.2.8/24", "gateway": "fd00::1"},
        ]));
        let hops = Hop::of(&m);
        assert_eq!(hops.len(), 1);
        assert_eq!(batch(&hops, true), "");
    }
}
