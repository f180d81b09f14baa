//! needs root: every test here creates its own network namespace.
//!
//! Shared set-up for the kernel tests: a private namespace per test (named
//! `ry-t-<pid>-<n>`, deleted on drop even when the test panics), and shorthands
//! for the `ip` commands that build the scene.
#![allow(dead_code)]

use railyard_core::{IfName, Route};
use railyard_test_support::NamedNetns;

/// Fails (never skips) when not root: a green run without root would claim
/// kernel behaviour nobody checked.
pub fn require_root() {
    railyard_test_support::require_root("railyard-route-daemon");
}

/// A fresh namespace for one test (`lo` up); namespaces left by killed runs
/// are removed first.
pub fn netns() -> NamedNetns {
    require_root();
    NamedNetns::private("")
}

/// `ip -n <ns> <args>` (whitespace separated), panicking with ip's message.
pub fn ip(ns: &NamedNetns, args: &str) -> String {
    let args: Vec<&str> = args.split_whitespace().collect();
    ns.ip_ok(&args)
}

/// A veth pair `name` <-> `peer`, both up, `name` with the given addresses.
pub fn veth(ns: &NamedNetns, name: &str, peer: &str, addrs: &[&str]) {
    ip(ns, &format!("link add {name} type veth peer name {peer}"));
    for a in addrs {
        let nodad = if a.contains(':') { " nodad" } else { "" };
        ip(ns, &format!("addr add {a} dev {name}{nodad}"));
    }
    ip(ns, &format!("link set {peer} up"));
    ip(ns, &format!("link set {name} up"));
}

pub fn route(dst: &str, gw: &str, dev: &str, table: u32) -> Route {
    Route {
        dst: dst.parse().expect("dst"),
        gateway: gw.parse().expect("gw"),
        dev: dev.parse().expect("valid interface name"),
        table,
    }
}

/// `n` /24 destinations (10.128.0.0/24, 10.128.1.0/24, ...) through next hops
/// spread over 10.10.1.1 .. 10.10.1.200 on `dev` (on-link for a NIC in
/// 10.10.0.0/16, and never its own 10.10.0.5).
pub fn v4_routes(n: usize, dev: &str, table: u32) -> Vec<Route> {
    let dev: IfName = dev.parse().expect("valid interface name");
    (0..n)
        .map(|i| Route {
            dst: format!("10.{}.{}.0/24", 128 + i / 256, i % 256)
                .parse()
                .expect("dst"),
            gateway: format!("10.10.1.{}", 1 + i % 200).parse().expect("gw"),
            dev,
            table,
        })
        .collect()
}

/// `n` /64 destinations under fd00:100::/32 through next hops fd00:10::100 ..
/// fd00:10::1c7, on-link for a NIC in fd00:10::/64 and never its own ::5.
pub fn v6_routes(n: usize, dev: &str, table: u32) -> Vec<Route> {
    let dev: IfName = dev.parse().expect("valid interface name");
    (0..n)
        .map(|i| Route {
            dst: format!("fd00:100:{i:x}::/64").parse().expect("dst"),
            gateway: format!("fd00:10::{:x}", 0x100 + i % 200)
                .parse()
                .expect("gw"),
            dev,
            table,
        })
        .collect()
}

pub fn sorted(mut routes: Vec<Route>) -> Vec<Route> {
    routes.sort_by(|a, b| {
        (a.table, a.dst, a.gateway, &a.dev).cmp(&(b.table, b.dst, b.gateway, &b.dev))
    });
    routes
}
