//! `podPolicyRouting` on a live cluster: a reply leaves by the rail its
//! request came in on.
//!
//! Pod A on host 0 has no rules; pod B on host 1 has them. A pings B's
//! rail-1 address from A's rail-0 address. A's main table sends the
//! request out on rail 1 (the rail of B's address), so it reaches B on
//! net1-1; B's reply goes to A's rail-0 address, which B's main table
//! routes by rail 0 (net1-0). With the rule `from <B's rail-1 address>
//! lookup 101`, it leaves by net1-1 instead, and the hosts carry it
//! across to rail 0. Asserted three ways: `ip route get` in B (and the
//! same question in A, without rules, answering the other rail), the
//! ping getting its replies, and B's TX counters: net1-1 sends them,
//! net1-0 does not.

use std::net::IpAddr;

use railyard_e2e::cluster::cmd::ip_in;
use railyard_e2e::cluster::pods::wait_ready;
use serde_json::{json, Value};

use crate::common::{spec, TestCluster, CONVERGE};
use crate::plugin_exec::{cni_add, Pod};

const PINGS: u64 = 5;

/// The address on `pod`'s interface `ifname` (IPv4, global).
fn address(pod: &Pod, ifname: &str) -> IpAddr {
    let text = ip_in(&pod.name, &["-4", "-j", "addr", "show", "dev", ifname]).expect("ip addr");
    let v: Value = serde_json::from_str(&text).expect("ip -j prints JSON");
    v[0]["addr_info"][0]["local"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address on {}'s {ifname}: {text}", pod.name))
}

/// Packets `ifname` of `pod` has sent.
fn tx_packets(pod: &Pod, ifname: &str) -> u64 {
    let text = ip_in(&pod.name, &["-s", "-j", "link", "show", "dev", ifname]).expect("ip -s link");
    let v: Value = serde_json::from_str(&text).expect("ip -j prints JSON");
    v[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no tx counter: {text}"))
}

fn route_get(pod: &Pod, dst: IpAddr, from: IpAddr) -> String {
    let (dst, from) = (dst.to_string(), from.to_string());
    ip_in(&pod.name, &["route", "get", &dst, "from", &from]).expect("ip route get")
}

#[test]
fn a_reply_leaves_by_the_rail_its_request_came_in_on() {
    let mut s = spec("e2e-podrules", 235);
    s.pods = 0;
    let c = TestCluster::up(s);
    let spec = c.spec().clone();
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready");
    wait_ready(&spec, 1, CONVERGE).expect("host 1 ready");
    let a = Pod::new(format!("{}pa", spec.prefix));
    let b = Pod::new(format!("{}pb", spec.prefix));
    cni_add(&spec, 0, &a, None).unwrap_or_else(|e| panic!("ADD pod A: {e:?}"));
    cni_add(&spec, 1, &b, Some(&json!({"podPolicyRouting": true})))
        .unwrap_or_else(|e| panic!("ADD pod B: {e:?}"));
    let (a0, a1) = (address(&a, "net1-0"), address(&a, "net1-1"));
    let (b0, b1) = (address(&b, "net1-0"), address(&b, "net1-1"));

    // The same question in both pods: only B's rule sends it by rail 1.
    let in_b = route_get(&b, a0, b1);
    assert!(
        in_b.contains("dev net1-1") && in_b.contains("table 101"),
        "{in_b}"
    );
    let in_a = route_get(&a, b0, a1);
    assert!(in_a.contains("dev net1-0"), "without rules: {in_a}");

    let (tx0, tx1) = (tx_packets(&b, "net1-0"), tx_packets(&b, "net1-1"));
    let (src, dst) = (a0.to_string(), b1.to_string());
    let count = PINGS.to_string();
    let ping = std::process::Command::new("ip")
        .args(["netns", "exec", &a.name, "ping", "-n", "-q", "-c", &count])
        .args(["-i", "0.2", "-W", "2", "-I", &src, &dst])
        .output()
        .expect("run ping");
    let said = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success(),
        "ping {dst} from {src}: {said} {}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let sent1 = tx_packets(&b, "net1-1") - tx1;
    let sent0 = tx_packets(&b, "net1-0") - tx0;
    assert!(
        sent1 >= PINGS,
        "B sent {sent1} packets on net1-1, {sent0} on net1-0"
    );
    assert!(
        sent0 < PINGS,
        "the replies left by rail 0: B sent {sent0} packets on net1-0, {sent1} on net1-1"
    );
}
