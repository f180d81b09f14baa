//! The routed fabric of a local cluster (`docs/design/routed-rails.md`, "The
//! local routed fabric"): instead of one bridge per rail, a leaf per rail, a
//! network namespace running a real BIRD, and each host's rail NIC on a link
//! of its own to that leaf, a /31 (and a /127 for IPv6).
//!
//! This file is the fabric's plan: the addresses of every link, the
//! `masterNets` each rail's links lie in, and the leaf's BIRD configuration
//! (the harness's, standing for the operator's fabric). The namespaces and
//! processes are made from it by the harness.
//!
//! Addresses: rail `j`'s links lie in `10.(110+j).0.0/16` and
//! `fd00:110:<j>::/64`; host `i`'s end is the odd address `2i+1` of it, the
//! leaf's the even one below (`2i`), so every link is a /31 (/127) of its own
//! and no two links of a rail share an address. The leaf's router id is
//! `192.0.2.<j+1>` (TEST-NET-1), never a link address, so it differs from
//! every host's (a host's is its first IPv4 link address).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// The leaves' AS (the spec's `fabric.bgp.peerAsn`).
pub const LEAF_ASN: u32 = 65_000;
/// The hosts' AS (the spec's `fabric.bgp.asn`).
pub const HOST_ASN: u32 = 64_512;
/// Hold time on both ends, seconds: a dead host's blocks go within about
/// this plus 3 s (`docs/design/routed-rails.md`, "Measured").
pub const HOLD_TIME: u16 = 3;
/// Hosts a rail's /16 holds at two addresses each.
pub const MAX_HOSTS: usize = 32_767;

/// Rail `j`'s range of links: its `masterNets` entry.
pub fn master_net_v4(j: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 110 + j as u8, 0, 0), 16).expect("a /16 is valid")
}

pub fn master_net_v6(j: usize) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x110, j as u16, 0, 0, 0, 0, 0), 64).expect("a /64 is valid")
}

/// Host `i`'s link on rail `j`: the host's address (a /31) and the leaf's.
pub fn link_v4(i: usize, j: usize) -> (Ipv4Addr, Ipv4Addr) {
    assert!(
        i < MAX_HOSTS,
        "host {i}: a rail's /16 holds {MAX_HOSTS} links"
    );
    let base = master_net_v4(j).network().to_bits();
    let host = base + 2 * i as u32 + 1;
    (Ipv4Addr::from_bits(host), Ipv4Addr::from_bits(host - 1))
}

/// Host `i`'s IPv6 link on rail `j` (a /127).
pub fn link_v6(i: usize, j: usize) -> (Ipv6Addr, Ipv6Addr) {
    let base = master_net_v6(j).network().to_bits();
    let host = base + 2 * i as u128 + 1;
    (Ipv6Addr::from_bits(host), Ipv6Addr::from_bits(host - 1))
}

/// The leaf namespace's name suffix and its port to host `i`.
pub fn leaf_port(i: usize) -> String {
    format!("h{i}")
}

/// Leaf `j`'s BIRD configuration for `hosts` hosts: one session per host and
/// family, what the hosts announce into the leaf's kernel (so it forwards
/// between them), and re-announced to every host, as a real leaf does (the
/// hosts accept only what their filter admits, into BIRD only). A static
/// protocol named `offered`, if a test adds one ([`offered`]), is announced
/// to every host too: a rogue or misconfigured leaf.
pub fn leaf_config(j: usize, hosts: usize, v4: bool, v6: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# railyard-local: leaf of rail {j} (the operator's fabric in production)"
    );
    let _ = writeln!(out, "router id 192.0.2.{};", j + 1);
    out.push_str("protocol device { scan time 10; }\n");
    if v4 {
        out.push_str("protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }\n");
    }
    if v6 {
        out.push_str("protocol kernel { ipv6 { import none; export where source = RTS_BGP; }; }\n");
    }
    for i in 0..hosts {
        let port = leaf_port(i);
        let mut session = |family: &str, channel: &str, leaf: String, host: String| {
            let _ = writeln!(
                out,
                "protocol bgp host{i}_{family} {{
  local {leaf} as {LEAF_ASN};
  neighbor {host} as {HOST_ASN};
  interface \"{port}\";
  direct;
  hold time {HOLD_TIME}; keepalive time 1;
  connect delay time 1; connect retry time 2; error wait time 1, 10;
  {channel} {{ import all; export where source = RTS_BGP || proto = \"offered\"; next hop self; }};
}}"
            );
        };
        if v4 {
            let (host, leaf) = link_v4(i, j);
            session("v4", "ipv4", leaf.to_string(), host.to_string());
        }
        if v6 {
            let (host, leaf) = link_v6(i, j);
            session("v6", "ipv6", leaf.to_string(), host.to_string());
        }
    }
    out
}

/// A static protocol `offered` holding `routes` (IPv4), which [`leaf_config`]'s
/// sessions announce to the hosts: what a rogue leaf would send.
pub fn offered(routes: &[String]) -> String {
    let mut out = String::from("protocol static offered {\n  ipv4;\n");
    for r in routes {
        let _ = writeln!(out, "  route {r} blackhole;");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::Command;

    use super::*;

    #[test]
    fn every_link_is_a_pair_of_its_own_inside_its_rail() {
        let mut seen = BTreeSet::new();
        for j in 0..4 {
            for i in [0, 1, 2, 127, 128, 1000, MAX_HOSTS - 1] {
                let (host, leaf) = link_v4(i, j);
                let link = Ipv4Net::new(host, 31).unwrap();
                assert!(link.contains(&leaf), "{host} {leaf}");
                assert!(master_net_v4(j).contains(&host));
                assert!(
                    seen.insert(host) && seen.insert(leaf),
                    "{host} or {leaf} twice"
                );
                let (h6, l6) = link_v6(i, j);
                assert!(Ipv6Net::new(h6, 127).unwrap().contains(&l6));
                assert!(master_net_v6(j).contains(&h6));
            }
        }
        assert_eq!(
            link_v4(3, 1),
            ("10.111.0.7".parse().unwrap(), "10.111.0.6".parse().unwrap())
        );
        assert_eq!(link_v6(0, 2).0.to_string(), "fd00:110:2::1");
    }

    /// The leaf's file must be one BIRD runs: checked by `bird -p` (fails,
    /// never skips, without bird2, which `make deps` installs).
    #[test]
    fn leaf_configurations_parse() {
        let bird = "/usr/sbin/bird";
        assert!(
            Path::new(bird).exists(),
            "needs BIRD 2 ({bird}): `make deps` installs bird2"
        );
        let dir = tempfile::tempdir().unwrap();
        for (v4, v6) in [(true, false), (false, true), (true, true)] {
            let mut text = leaf_config(1, 3, v4, v6);
            if v4 {
                text.push_str(&offered(&["0.0.0.0/0".into(), "10.99.0.0/16".into()]));
            }
            let sessions = text.matches("protocol bgp").count();
            assert_eq!(sessions, 3 * (usize::from(v4) + usize::from(v6)));
            let path = dir.path().join("leaf.conf");
            std::fs::write(&path, &text).unwrap();
            let out = Command::new(bird)
                .args(["-p", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
