//! needs root: every case runs in its own network namespace. `NetlinkRoutes`
//! against the kernel port's conformance suite, on this machine's kernel (the
//! same cases `tests/kernel_memory.rs` runs on `MemoryRoutes`). Without root
//! every case fails, it never skips.

mod common;

use std::process::Command;

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::{ActualRoute, IfName, Route};
use railyard_route_daemon::kernel::conformance::{self, Fixture, SeenKind, SeenLink};
use railyard_route_daemon::kernel::netlink::NetlinkRoutes;
use railyard_route_daemon::kernel::{PolicyRule, RAILYARD_PROTOCOL};
use railyard_route_daemon::{Netlink, Result};
use serde_json::Value;

use common::{netns, veth};

/// A port opened inside the namespace; `ip -n <ns>` plays everyone else.
struct NetlinkFixture {
    ns: String,
    kernel: NetlinkRoutes,
}

impl NetlinkFixture {
    /// `ip -n <ns> <args>`; `Err` carries ip's message.
    fn ip(&self, args: &[&str]) -> std::result::Result<String, String> {
        let out = Command::new("ip")
            .args(["-n", &self.ns])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`ip -n {} {}` failed: {}",
                self.ns,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn must(&self, args: &[&str]) -> String {
        self.ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip -j` output as a list of objects; numbers (`-N`) instead of names, so
    /// an rt_protos entry for 167 on this machine changes nothing.
    fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["-N", "-j"];
        full.extend_from_slice(args);
        let text = match self.ip(&full) {
            Ok(text) => text,
            // A table nothing was ever written to.
            Err(e) if e.contains("does not exist") => return Vec::new(),
            Err(e) => panic!("{e}"),
        };
        match serde_json::from_str(&text) {
            Ok(Value::Array(items)) => items,
            other => panic!("ip {full:?}: unexpected output {other:?} from {text:?}"),
        }
    }
}

fn family(ip: &str) -> &'static str {
    if ip.contains(':') {
        "-6"
    } else {
        "-4"
    }
}

fn str_of<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

fn ours(v: &Value) -> bool {
    str_of(v, "protocol") == Some(&RAILYARD_PROTOCOL.to_string())
}

/// A route of `ip -j route show` in railyard's terms: a missing gateway is the
/// unspecified address, a destination without a length a host route.
fn route_of(v: &Value, v6: bool, table: u32) -> Route {
    let any = if v6 { "::" } else { "0.0.0.0" };
    let full = if v6 { 128 } else { 32 };
    let dst = match str_of(v, "dst").expect("dst") {
        "default" => format!("{any}/0"),
        d if d.contains('/') => d.to_owned(),
        d => format!("{d}/{full}"),
    };
    Route {
        dst: dst.parse().expect("dst"),
        gateway: str_of(v, "gateway")
            .unwrap_or(any)
            .parse()
            .expect("gateway"),
        dev: str_of(v, "dev")
            .map(|d| d.parse::<IfName>().expect("dev"))
            .unwrap_or_default(),
        table,
    }
}

#[async_trait]
impl Fixture for NetlinkFixture {
    type Kernel = NetlinkRoutes;

    fn kernel(&self) -> &NetlinkRoutes {
        &self.kernel
    }

    async fn reopen(&self) -> Result<NetlinkRoutes> {
        NetlinkRoutes::new(Netlink::connect()?)
    }

    async fn add_foreign_route(&self, r: &Route) {
        self.must(&[
            "route",
            "add",
            &r.dst.to_string(),
            "via",
            &r.gateway.to_string(),
            "dev",
            &r.dev,
            "table",
            &r.table.to_string(),
            "proto",
            "static",
        ]);
    }

    async fn delete_route(&self, r: &Route) {
        self.must(&[
            "route",
            "del",
            &r.dst.to_string(),
            "via",
            &r.gateway.to_string(),
            "dev",
            &r.dev,
            "table",
            &r.table.to_string(),
        ]);
    }

    async fn link_down(&self, dev: &str) {
        self.must(&["link", "set", dev, "down"]);
    }

    async fn add_foreign_rule(&self, rule: PolicyRule) {
        let from = rule.from.to_string();
        self.must(&[
            family(&from),
            "rule",
            "add",
            "from",
            &from,
            "lookup",
            &rule.table.to_string(),
            "priority",
            &rule.priority.to_string(),
        ]);
    }

    async fn seen_routes(&self, table: u32) -> Vec<ActualRoute> {
        let t = table.to_string();
        let mut out = Vec::new();
        for v6 in [false, true] {
            let fam = if v6 { "-6" } else { "-4" };
            for v in self.json(&[fam, "route", "show", "table", &t]) {
                out.push(ActualRoute {
                    route: route_of(&v, v6, table),
                    owned: ours(&v),
                });
            }
        }
        out
    }

    async fn seen_rules(&self) -> Vec<(PolicyRule, bool)> {
        let mut out = Vec::new();
        for fam in ["-4", "-6"] {
            for v in self.json(&[fam, "-d", "rule", "show"]) {
                let src = str_of(&v, "src").expect("src");
                if src == "all" {
                    continue;
                }
                let len = v.get("srclen").and_then(Value::as_u64).expect("srclen");
                let table = str_of(&v, "table").expect("table");
                let priority = v.get("priority").and_then(Value::as_u64).expect("priority");
                let rule = PolicyRule {
                    from: format!("{src}/{len}").parse().expect("from"),
                    table: table.parse().expect("numeric table"),
                    priority: u32::try_from(priority).expect("u32"),
                };
                out.push((rule, ours(&v)));
            }
        }
        out
    }

    async fn add_foreign_link(&self, name: &str, parent: &str, alias: Option<&str>) {
        self.must(&[
            "link", "add", name, "link", parent, "type", "macvlan", "mode", "bridge",
        ]);
        if let Some(alias) = alias {
            self.must(&["link", "set", name, "alias", alias]);
        }
    }

    async fn delete_link(&self, name: &str) {
        self.must(&["link", "del", name]);
    }

    async fn delete_address(&self, name: &str, addr: IpNet) {
        self.must(&["addr", "del", &addr.to_string(), "dev", name]);
    }

    async fn seen_link(&self, name: &str) -> Option<SeenLink> {
        let text = self
            .ip(&["-j", "-d", "addr", "show", "dev", name])
            .map_err(|e| assert!(e.contains("does not exist"), "{e}"))
            .ok()?;
        let items: Vec<Value> = serde_json::from_str(&text).expect("ip -j output");
        let link = items.first()?;
        let info = &link["linkinfo"];
        let ipv6_ready = link["addr_info"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["family"] == "inet6" && a["scope"] == "link" && a["tentative"] != true)
        });
        let addrs: Vec<&Value> = link["addr_info"]
            .as_array()
            .map(|a| a.iter().filter(|a| a["scope"] != "link").collect())
            .unwrap_or_default();
        let mut addresses: Vec<IpNet> = addrs
            .iter()
            .map(|a| {
                let local = str_of(a, "local").expect("local");
                let len = a["prefixlen"].as_u64().expect("prefixlen");
                format!("{local}/{len}").parse().expect("address")
            })
            .collect();
        addresses.sort_unstable();
        Some(SeenLink {
            macvlan_bridge: info["info_kind"] == "macvlan" && info["info_data"]["mode"] == "bridge",
            parent: str_of(link, "link").map(str::to_owned),
            mac: str_of(link, "address").unwrap_or_default().to_owned(),
            alias: str_of(link, "ifalias").map(str::to_owned),
            up: link["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "UP")),
            addresses,
            nodad: addrs
                .iter()
                .filter(|a| a["family"] == "inet6")
                .all(|a| a["nodad"] == true),
            ipv6_ready,
        })
    }

    async fn seen_kind(&self, name: &str) -> Option<SeenKind> {
        let text = self
            .ip(&["-j", "-d", "link", "show", "dev", name])
            .map_err(|e| assert!(e.contains("does not exist"), "{e}"))
            .ok()?;
        let items: Vec<Value> = serde_json::from_str(&text).expect("ip -j output");
        let link = items.first()?;
        let info = &link["linkinfo"];
        Some(SeenKind {
            kind: str_of(info, "info_kind").map(str::to_owned),
            vlan_id: info["info_data"]["id"]
                .as_u64()
                .map(|id| u16::try_from(id).expect("a VLAN id")),
            controller: str_of(link, "master").map(str::to_owned),
        })
    }

    async fn add_address(&self, name: &str, addr: IpNet) {
        let a = addr.to_string();
        let mut args = vec!["addr", "add", &a, "dev", name];
        if addr.addr().is_ipv6() {
            args.push("nodad");
        }
        self.must(&args);
    }

    async fn add_default_route(&self, name: &str) {
        self.must(&["route", "add", "default", "dev", name]);
    }
}

/// A fresh namespace with the scene of [`conformance::RAILS`], the case run on
/// a port opened inside it.
fn run(case: &'static str) {
    let ns = netns();
    for (i, (dev, addrs)) in conformance::RAILS.iter().enumerate() {
        veth(&ns, dev, &format!("veth-r{i}"), addrs);
    }
    let name = ns.name().to_owned();
    ns.run(move || async move {
        let fx = NetlinkFixture {
            ns: name,
            kernel: NetlinkRoutes::new(Netlink::connect().expect("netlink")).expect("route socket"),
        };
        conformance::run_case(case, &fx)
            .await
            .unwrap_or_else(|e| panic!("kernel conformance case {case} failed: {e}"));
    })
    .expect("netns");
}

railyard_route_daemon::kernel_conformance_tests!(run);

// The rail-interface cases that need the 8021q and bonding modules, which this
// project's build machines' kernel lacks: `tests/tests/full_kernel.rs` runs them
// (`--include-ignored`) in the VM with Debian's full kernel. Run anywhere else,
// they fail loudly on a kernel without the modules; they never pass vacuously.
#[test]
#[ignore = "needs the 8021q module: run in the full-kernel VM (tests/tests/full_kernel.rs)"]
fn vlans_are_made_marked_and_found_again() {
    run("vlans_are_made_marked_and_found_again");
}

#[test]
#[ignore = "needs the bonding module: run in the full-kernel VM (tests/tests/full_kernel.rs)"]
fn bonds_take_their_slaves_and_the_moved_addresses() {
    run("bonds_take_their_slaves_and_the_moved_addresses");
}
