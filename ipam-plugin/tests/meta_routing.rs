//! `podPolicyRouting`: after ADD each pod interface has its table
//! (100 + rail) with its routes, a `from <address>` rule (priority
//! 1000 + rail) and arp_ignore=1/arp_announce=2; after DEL the rules and
//! tables are gone. Real namespaces, real macvlan; needs root.

mod common;

use std::process::Command;

use common::daemon::TestDaemon;
use common::netns::{ip_binary, Netns};
use common::world::World;
use serde_json::json;

fn sysctl(pod: &Netns, ifname: &str, key: &str) -> String {
    let out = Command::new(ip_binary())
        .args(["netns", "exec", pod.name(), "cat"])
        .arg(format!("/proc/sys/net/ipv4/conf/{ifname}/{key}"))
        .output()
        .expect("run ip netns exec");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `from <addr> lookup <table>` rules at railyard's priorities.
fn rules(pod: &Netns) -> Vec<String> {
    let text = pod.ip(&["-4", "rule", "show"]);
    text.lines()
        .filter(|l| l.starts_with("100"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn add_makes_a_table_rule_and_sysctls_per_interface_and_del_removes_them() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("pod");
    let mut conf = world.conf("1.0.0", json!({"type": "macvlan", "mode": "bridge"}));
    conf["podPolicyRouting"] = json!(true);

    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(
        rules(&pod),
        [
            "1000: from 192.168.0.10 lookup 100",
            "1001: from 192.168.64.10 lookup 101"
        ]
    );
    let table = |t: &str| pod.ip(&["-4", "route", "show", "table", t]);
    let t100 = table("100");
    // macvlan: the block through the gateway (railyard-cni's own routes,
    // copied like the delegate's).
    assert!(
        t100.contains("192.168.0.0/24 via 192.168.0.1 dev net1-0"),
        "{t100}"
    );
    assert!(
        t100.contains("192.168.0.0/18 via 192.168.0.1 dev net1-0"),
        "{t100}"
    );
    assert!(
        t100.contains("default via 192.168.0.1 dev net1-0"),
        "{t100}"
    );
    assert!(!t100.contains("net1-1"), "{t100}");
    let t101 = table("101");
    assert!(
        t101.contains("192.168.64.0/18 via 192.168.64.1 dev net1-1"),
        "{t101}"
    );
    // A reply from rail 1's address to a rail-1 peer is looked up in 101.
    let got = pod.ip(&["route", "get", "192.168.64.77", "from", "192.168.64.10"]);
    assert!(
        got.contains("dev net1-1") && got.contains("table 101"),
        "{got}"
    );
    // A reply from rail 0's address to a rail-1 peer (the request crossed
    // rails at the hosts) leaves by rail 0: the main table alone says
    // net1-1, as the unsourced lookup shows.
    let cross = pod.ip(&["route", "get", "192.168.64.77", "from", "192.168.0.10"]);
    assert!(
        cross.contains("via 192.168.0.1 dev net1-0") && cross.contains("table 100"),
        "{cross}"
    );
    let main = pod.ip(&["route", "get", "192.168.64.77"]);
    assert!(main.contains("dev net1-1"), "{main}");
    for ifname in ["net1-0", "net1-1"] {
        assert_eq!(sysctl(&pod, ifname, "arp_ignore"), "1");
        assert_eq!(sysctl(&pod, ifname, "arp_announce"), "2");
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.state_file("c1")).unwrap()).unwrap();
    assert_eq!(state["policyRouting"], json!(true));

    let prev = World::with_prev(&conf, &result);
    world.run("CHECK", "c1", &pod.path(), &prev).ok();
    // DEL under a config without the flag: the record says what to undo.
    conf.as_object_mut().unwrap().remove("podPolicyRouting");
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert_eq!(rules(&pod), Vec::<String>::new());
    assert_eq!(table("100").trim(), "");
    assert_eq!(table("101").trim(), "");
    assert_eq!(pod.links(), Vec::<String>::new());
    assert!(world.daemon.allocations().is_empty());
}

#[test]
fn without_the_flag_the_pod_gets_no_rules() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("pod");
    let conf = world.conf("1.0.0", json!({"type": "macvlan", "mode": "bridge"}));
    world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(rules(&pod), Vec::<String>::new());
    assert_eq!(sysctl(&pod, "net1-0", "arp_ignore"), "0");
    // macvlan pods reach their own block through the gateway too, never
    // over the rail's L2 (one neighbour entry per rail, not one per pod),
    // and take no redirect back to it.
    let main = pod.ip(&["-4", "route", "show"]);
    for (block, gw, dev) in [
        ("192.168.0.0/24", "192.168.0.1", "net1-0"),
        ("192.168.64.0/24", "192.168.64.1", "net1-1"),
    ] {
        assert!(
            main.contains(&format!("{block} via {gw} dev {dev}")),
            "{main}"
        );
        assert!(
            main.contains(&format!("{gw} dev {dev} scope link")),
            "{main}"
        );
        assert!(!main.contains(&format!("{block} dev {dev}")), "{main}");
        assert_eq!(sysctl(&pod, dev, "accept_redirects"), "0");
    }
    assert_eq!(sysctl(&pod, "all", "accept_redirects"), "0");
    let got = pod.ip(&["route", "get", "192.168.0.77"]);
    assert!(got.contains("via 192.168.0.1 dev net1-0"), "{got}");
    world.run("DEL", "c1", &pod.path(), &conf).ok();
}

/// A re-ADD that finds the interfaces intact keeps the rules as they are;
/// one that rebuilds (the config changed) removes and re-creates them:
/// never a duplicate rule, never a stale one.
#[test]
fn re_add_neither_duplicates_nor_strands_rules() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("pod");
    let mut conf = world.conf("1.0.0", json!({"type": "macvlan", "mode": "bridge"}));
    conf["podPolicyRouting"] = json!(true);
    let want = [
        "1000: from 192.168.0.10 lookup 100",
        "1001: from 192.168.64.10 lookup 101",
    ];
    world.run("ADD", "c1", &pod.path(), &conf).ok();
    world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(rules(&pod), want, "intact re-ADD");
    conf["delegate"]["mtu"] = json!(1400);
    world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(rules(&pod), want, "rebuilding re-ADD");
    conf.as_object_mut().unwrap().remove("podPolicyRouting");
    world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(rules(&pod), Vec::<String>::new(), "flag turned off");
    world.run("DEL", "c1", &pod.path(), &conf).ok();
}

/// A network without gateways (`spec.ipam.gateway: none`, ipvlan l3 in
/// production; macvlan here, which this kernel has, for the routes alone):
/// the pod's rail routes are device routes, nothing is routed through a
/// gateway, the result names none, and each policy table's default route
/// leaves by its interface.
#[test]
fn without_gateways_the_pod_gets_device_routes() {
    let daemon = TestDaemon::two_rails("ry-h0a", "ry-h0b");
    daemon.without_gateways();
    let world = World::with_host(daemon);
    let pod = Netns::new("pod");
    let mut conf = world.conf("1.0.0", json!({"type": "macvlan", "mode": "bridge"}));
    conf["podPolicyRouting"] = json!(true);
    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    let text = result.to_string();
    assert!(
        !text.contains("gateway") && !text.contains("\"gw\"") && !text.contains("railyardNic"),
        "{text}"
    );
    let main = pod.ip(&["-4", "route", "show"]);
    for (rail, block, dev) in [
        ("192.168.0.0/18", "192.168.0.0/24", "net1-0"),
        ("192.168.64.0/18", "192.168.64.0/24", "net1-1"),
    ] {
        assert!(main.contains(&format!("{rail} dev {dev}")), "{main}");
        // The connected route stays: no gateway to route the block through.
        assert!(
            main.contains(&format!("{block} dev {dev} proto kernel")),
            "{main}"
        );
    }
    assert!(!main.contains("via"), "{main}");
    let t100 = pod.ip(&["-4", "route", "show", "table", "100"]);
    assert!(t100.contains("default dev net1-0"), "{t100}");
    let got = pod.ip(&["route", "get", "192.168.64.77", "from", "192.168.0.10"]);
    assert!(
        got.contains("dev net1-0") && got.contains("table 100") && !got.contains("via"),
        "{got}"
    );
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert!(world.daemon.allocations().is_empty());
}
