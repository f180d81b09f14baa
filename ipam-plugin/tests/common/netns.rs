//! Named network namespaces for tests, removed on drop (also on panic).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub const IP: &str = "/usr/sbin/ip";

/// Fails (never skips) without root: a skipped data-path test reads as
/// green in CI while proving nothing.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "this test creates network namespaces and interfaces and must run as root \
         (effective uid is {uid}); run it as root, e.g. `sudo -E cargo test -p railyard-ipam-plugin`"
    );
}

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new(IP)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip_json(args: &[&str]) -> Value {
    let text = ip(args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("ip {args:?} printed no JSON ({e}): {text}"))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named netns (`/var/run/netns/<name>`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `role` makes names readable in `ip netns list` if a test is killed.
    pub fn new(role: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("ry-test-{}-{n}-{role}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// ifname -> IPv4 addresses with prefix, for every interface.
    pub fn addrs(&self) -> BTreeMap<String, Vec<String>> {
        let mut map = BTreeMap::new();
        let v = ip_json(&["-n", &self.name, "-j", "addr"]);
        for link in v.as_array().into_iter().flatten() {
            let name = link["ifname"].as_str().unwrap_or_default().to_owned();
            let addrs = link["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["family"] == "inet")
                .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
                .collect();
            map.insert(name, addrs);
        }
        map
    }

    /// Interface names, `lo` excluded.
    pub fn links(&self) -> Vec<String> {
        self.addrs().into_keys().filter(|n| n != "lo").collect()
    }

    /// `dst via gw dev` of every IPv4 route with a gateway.
    pub fn gateway_routes(&self) -> Vec<String> {
        let v = ip_json(&["-n", &self.name, "-j", "route"]);
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some(format!(
                    "{} via {} dev {}",
                    r["dst"].as_str()?,
                    r["gateway"].as_str()?,
                    r["dev"].as_str()?
                ))
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new(IP).args(["netns", "del", &self.name]).status();
    }
}

/// A "host" netns with two rail NICs, `ry-h0a` (192.168.0.1/24, rail 0)
/// and `ry-h0b` (192.168.64.1/24, rail 1), each one end of a veth pair.
pub fn two_rail_host() -> Netns {
    let host = Netns::new("host");
    for (nic, addr) in [("ry-h0a", "192.168.0.1/24"), ("ry-h0b", "192.168.64.1/24")] {
        let peer = format!("{nic}-x");
        host.ip(&["link", "add", nic, "type", "veth", "peer", "name", &peer]);
        host.ip(&["addr", "add", addr, "dev", nic]);
        host.ip(&["link", "set", nic, "up"]);
        host.ip(&["link", "set", &peer, "up"]);
    }
    host
}
