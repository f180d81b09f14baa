//! `podPolicyRouting`: replies leave by the interface they came in on.
//!
//! Why: a pod with several rail interfaces, several of them on one subnet
//! or all with routes to peers, answers by the main table's first match,
//! often another rail than the request came on. RDMA stacks and NCCL
//! expect the reply on the same rail (the AMD and Spiderpool guides set
//! this up by hand). So for each pod interface on rail r:
//!
//! - table `100 + r` gets a copy of the main-table routes the delegate
//!   made on that interface (whatever the plugin made: for macvlan the
//!   block via its gateway, which [`super::via_gateway`] set up before, a
//!   /32 gateway route for ptp, and railyard's rail routes),
//!   and a default route via the interface's gateway (out of the interface
//!   itself, `default dev`, for a network without gateways: ipvlan l3), so
//!   a reply to a peer on another rail (the request crossed rails at the
//!   hosts) still leaves by this interface;
//! - rule `from <its address> lookup 100 + r`, priority `1000 + r` (before
//!   `main` at 32766), per address and family;
//! - `arp_ignore=1` (answer ARP only for an address of the interface it
//!   came on) and `arp_announce=2` (use the interface's own address as
//!   ARP source) on it, so several NICs on one subnet do not answer for
//!   each other.
//!
//! The work runs `ip -batch` inside the pod's netns: a scoped thread
//! joins the netns (setns changes only the calling thread) and the `ip`
//! child inherits it; the sysctls are written from that thread, as
//! /proc/sys/net is the opener's namespace. iproute2 must be installed on
//! the host (`ip` in PATH or /usr/sbin, /sbin, /usr/bin, /bin).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::{setns, CloneFlags};
use serde_json::Value;

use super::state::Member;
use crate::Error;

/// The config key.
pub const FIELD: &str = "podPolicyRouting";
/// Table of rail r: `TABLE_BASE + r`.
pub const TABLE_BASE: u32 = 100;
/// Rule priority of rail r: `PRIORITY_BASE + r`.
pub const PRIORITY_BASE: u32 = 1000;
/// The last rail whose table is below the kernel's reserved 253 (default),
/// 254 (main) and 255 (local).
pub const MAX_RAIL: u32 = 252 - TABLE_BASE;

/// One pod interface's share: its name, rail and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub ifname: String,
    pub rail: u32,
    pub addresses: Vec<std::net::IpAddr>,
    /// The addresses' gateways: each table's default route.
    pub gateways: Vec<std::net::IpAddr>,
}

impl Leg {
    /// From a planned member: its rail and the addresses of its static
    /// IPAM config (what the delegate put on the interface). Code 7 when
    /// the IPAM did not say the member's rail.
    pub fn of(member: &Member) -> Result<Leg, Error> {
        let rail = member.rail.ok_or_else(|| {
            Error::invalid_config(
                FIELD,
                format!(
                    "needs each NIC's rail for its table, and the IPAM did not say which \
                     rail {} is on (an older railyard-ipam?)",
                    member.nic
                ),
            )
        })?;
        if rail > MAX_RAIL {
            return Err(Error::invalid_config(
                FIELD,
                format!(
                    "gives rail r table {TABLE_BASE}+r, and {} is on rail {rail}: tables \
                     253..255 are the kernel's default, main and local, so rails above \
                     {MAX_RAIL} cannot have one",
                    member.nic
                ),
            ));
        }
        let listed = member.config["ipam"]["addresses"].as_array();
        let field = |key: &str| -> Vec<String> {
            let values = listed.into_iter().flatten();
            values
                .filter_map(|a| a[key].as_str().map(str::to_owned))
                .collect()
        };
        let addresses = field("address")
            .iter()
            .filter_map(|a| a.parse::<ipnet::IpNet>().ok())
            .map(|net| net.addr())
            .collect();
        let gateways = field("gateway")
            .iter()
            .filter_map(|g| g.parse().ok())
            .collect();
        Ok(Leg {
            ifname: member.ifname.clone(),
            rail,
            addresses,
            gateways,
        })
    }

    pub fn table(&self) -> u32 {
        TABLE_BASE + self.rail
    }

    pub fn priority(&self) -> u32 {
        PRIORITY_BASE + self.rail
    }
}

/// Sets up tables, rules and sysctls for `legs` in `netns`.
pub fn apply(netns: &Path, legs: &[Leg]) -> Result<(), Error> {
    in_netns(FIELD, netns, || {
        let ip = ip_binary(FIELD)?;
        for family in [Family::V4, Family::V6] {
            let mut batch = String::new();
            for leg in legs {
                let shown = run(
                    FIELD,
                    &ip,
                    &[family.flag(), "-j", "route", "show", "dev", &leg.ifname],
                    "",
                )?;
                for route in parse_routes(&shown) {
                    batch.push_str(&format!(
                        "route replace {route} dev {} table {}\n",
                        leg.ifname,
                        leg.table()
                    ));
                }
                for line in default_routes(leg, family) {
                    batch.push_str(&line);
                }
                for addr in leg.addresses.iter().filter(|a| family.holds(a)) {
                    batch.push_str(&format!(
                        "rule add from {addr} priority {} table {}\n",
                        leg.priority(),
                        leg.table()
                    ));
                }
            }
            if !batch.is_empty() {
                run(FIELD, &ip, &[family.flag(), "-batch", "-"], &batch)?;
            }
        }
        for leg in legs {
            for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
                let path = format!("/proc/sys/net/ipv4/conf/{}/{key}", leg.ifname);
                std::fs::write(&path, value).map_err(|source| Error::Io {
                    context: format!("{FIELD}: writing {path} in {}", netns.display()),
                    source,
                })?;
            }
        }
        Ok(())
    })
}

/// Removes the rules and flushes the tables of `legs` (the interfaces'
/// sysctls go with the interfaces). A netns that is gone has nothing
/// left to remove; failures to find a rule are not errors.
pub fn remove(netns: &Path, legs: &[Leg]) -> Result<(), Error> {
    if legs.is_empty() || !crate::cni::netns::is_netns(netns) {
        return Ok(());
    }
    in_netns(FIELD, netns, || {
        let ip = ip_binary(FIELD)?;
        for family in [Family::V4, Family::V6] {
            let mut batch = String::new();
            for leg in legs {
                for addr in leg.addresses.iter().filter(|a| family.holds(a)) {
                    batch.push_str(&format!(
                        "rule del from {addr} priority {} table {}\n",
                        leg.priority(),
                        leg.table()
                    ));
                }
                batch.push_str(&format!("route flush table {}\n", leg.table()));
            }
            // -force: go on past a rule or table that is already gone.
            let _ = run(
                FIELD,
                &ip,
                &[family.flag(), "-force", "-batch", "-"],
                &batch,
            );
        }
        Ok(())
    })
}

/// The `ip -batch` lines of `leg`'s table's default route in `family`: via
/// its gateway, or out of the interface when the network has none
/// (`spec.ipam.gateway: none`) and the leg has an address of the family.
fn default_routes(leg: &Leg, family: Family) -> Vec<String> {
    let mut lines: Vec<String> = leg
        .gateways
        .iter()
        .filter(|g| family.holds(g))
        .map(|gw| {
            format!(
                "route replace default via {gw} dev {} table {}\n",
                leg.ifname,
                leg.table()
            )
        })
        .collect();
    if lines.is_empty() && leg.addresses.iter().any(|a| family.holds(a)) {
        lines.push(format!(
            "route replace default dev {} table {}\n",
            leg.ifname,
            leg.table()
        ));
    }
    lines
}

/// `ip -batch` takes no per-line family, so each family is one batch.
#[derive(Debug, Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn flag(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }

    fn holds(self, addr: &std::net::IpAddr) -> bool {
        addr.is_ipv4() == matches!(self, Family::V4)
    }
}

/// `ip -j route show dev X` as the arguments that recreate each route
/// (`dev` and `table` added by the caller). Kernel multicast and
/// broadcast entries are not in `main`; link-local IPv6 is copied too,
/// harmlessly.
fn parse_routes(json: &str) -> Vec<String> {
    let routes: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for r in routes.as_array().into_iter().flatten() {
        let Some(dst) = r["dst"].as_str() else {
            continue;
        };
        let mut line = dst.to_owned();
        if let Some(gw) = r["gateway"].as_str() {
            line.push_str(&format!(" via {gw}"));
        }
        if let Some(src) = r["prefsrc"].as_str() {
            line.push_str(&format!(" src {src}"));
        }
        if let Some(scope) = r["scope"].as_str() {
            line.push_str(&format!(" scope {scope}"));
        }
        let flags = r["flags"].as_array().into_iter().flatten();
        if flags.filter_map(Value::as_str).any(|f| f == "onlink") {
            line.push_str(" onlink");
        }
        out.push(line);
    }
    out
}

/// Runs `f` on a thread that has joined `netns`; children it spawns are
/// in that netns too. `what` (the feature) heads its errors.
pub(crate) fn in_netns<T: Send>(
    what: &str,
    netns: &Path,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> Result<T, Error> {
    let file = File::open(netns).map_err(|source| Error::Io {
        context: format!("{what}: opening the pod netns {}", netns.display()),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Io {
                context: format!("{what}: entering the pod netns {}", netns.display()),
                source: errno.into(),
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Internal {
                reason: format!("{what}: the netns thread panicked"),
            })
        })
    })
}

pub(crate) fn ip_binary(what: &str) -> Result<PathBuf, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("ip"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Io {
            context: format!("{what}: finding iproute2's `ip`"),
            source: std::io::ErrorKind::NotFound.into(),
        })
}

pub(crate) fn run(what: &str, ip: &Path, args: &[&str], stdin: &str) -> Result<String, Error> {
    let failed = |detail: String| Error::Io {
        context: format!("{what}: `ip {}`", args.join(" ")),
        source: std::io::Error::other(detail),
    };
    let mut child = Command::new(ip)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(format!(
            "{}; input:\n{stdin}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_copied_with_their_gateway_source_and_scope() {
        let shown = r#"[
            {"dst":"192.168.0.0/24","protocol":"kernel","scope":"link","prefsrc":"192.168.0.10","flags":[]},
            {"dst":"192.168.0.0/18","gateway":"192.168.0.1","flags":["onlink"]},
            {"type":"unicast"}]"#;
        assert_eq!(
            parse_routes(shown),
            [
                "192.168.0.0/24 src 192.168.0.10 scope link",
                "192.168.0.0/18 via 192.168.0.1 onlink"
            ]
        );
        assert!(parse_routes("not json").is_empty());
    }

    #[test]
    fn a_table_without_a_gateway_routes_out_of_the_interface() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let mut leg = Leg {
            ifname: "net1-1".into(),
            rail: 1,
            addresses: vec![ip("10.0.1.5"), ip("fd00:1::5")],
            gateways: vec![ip("10.0.1.1"), ip("fd00:1::1")],
        };
        assert_eq!(
            default_routes(&leg, Family::V6),
            ["route replace default via fd00:1::1 dev net1-1 table 101\n"]
        );
        leg.gateways.clear();
        assert_eq!(
            default_routes(&leg, Family::V4),
            ["route replace default dev net1-1 table 101\n"]
        );
        leg.addresses.truncate(1);
        assert!(default_routes(&leg, Family::V6).is_empty());
    }

    #[test]
    fn tables_and_priorities_follow_the_rail() {
        let leg = Leg {
            ifname: "net1-3".into(),
            rail: 3,
            addresses: vec![],
            gateways: vec![],
        };
        assert_eq!((leg.table(), leg.priority()), (103, 1003));
    }

    #[test]
    fn a_rail_whose_table_would_be_main_is_refused() {
        let member = |rail| Member {
            ifname: "net1-x".into(),
            nic: "eth9".into(),
            rail,
            nic_field: None,
            device: None,
            choice: None,
            chain: Vec::new(),
            config: serde_json::json!({"ipam": {"addresses": [
                {"address": "10.0.0.5/24", "gateway": "10.0.0.1"}]}})
            .as_object()
            .cloned()
            .unwrap(),
            result: None,
        };
        let leg = Leg::of(&member(Some(MAX_RAIL))).unwrap();
        assert_eq!(leg.table(), 252);
        assert_eq!(
            leg.addresses,
            ["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(
            leg.gateways,
            ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        for rail in [Some(MAX_RAIL + 2), None] {
            let err = Leg::of(&member(rail)).unwrap_err();
            assert_eq!(err.code(), crate::error::codes::INVALID_NETWORK_CONFIG);
            assert!(err.to_string().contains(FIELD), "{err}");
        }
    }
}
