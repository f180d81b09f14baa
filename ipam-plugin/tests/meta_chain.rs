//! `railyard-cni` with chained plugins (`chain`): the real tuning and
//! bandwidth plugins (upstream v1.10.0, built by `make deps`) after each
//! rail's ptp interface, as a runtime would run a conflist per interface.
//! Needs root and fails without it.

mod common;

use std::process::Command;

use common::daemon::TestDaemon;
use common::netns::Netns;
use common::world::World;
use serde_json::{json, Value};

/// What a pod interface's sysctl reads inside `pod`.
fn sysctl(pod: &Netns, key: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", pod.name(), "cat"])
        .arg(format!("/proc/sys/{}", key.replace('.', "/")))
        .output()
        .expect("ip netns exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn set_sysctl(pod: &Netns, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let out = Command::new("ip")
        .args(["netns", "exec", pod.name(), "sh", "-c"])
        .arg(format!("echo {value} > {path}"))
        .output()
        .expect("ip netns exec sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Host-side interfaces of the final result with a name prefix: ptp's veths
/// (`veth`), bandwidth's ifbs (`bwp`).
fn host_side(result: &Value, prefix: &str) -> Vec<String> {
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("sandbox").is_none())
        .filter_map(|i| i["name"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn qdiscs(host: &Netns, dev: &str) -> String {
    host.ip(&["link", "show", dev]);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            host.name(),
            "tc",
            "qdisc",
            "show",
            "dev",
            dev,
        ])
        .output()
        .expect("tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chained() -> Value {
    json!([
        {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1"}},
        {"type": "bandwidth", "ingressRate": 100_000_000, "ingressBurst": 200_000,
         "egressRate": 100_000_000, "egressBurst": 200_000},
    ])
}

#[test]
fn tuning_and_bandwidth_run_on_every_rails_interface_and_del_undoes_them() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world
        .cni_path
        .link_upstream(&["ptp", "tuning", "bandwidth"]);
    let mut conf = world.conf("1.0.0", json!({"type": "ptp"}));
    conf["chain"] = chained();
    let host = world.host.as_ref().unwrap();
    let pod = Netns::new("chain");

    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    for ifname in ["net1-0", "net1-1"] {
        let key = format!("net.ipv4.conf.{ifname}.arp_ignore");
        assert_eq!(sysctl(&pod, &key), "1", "tuning on {ifname}: {result}");
    }
    let veths = host_side(&result, "veth");
    assert_eq!(veths.len(), 2, "{result}");
    assert_eq!(
        host_side(&result, "bwp").len(),
        2,
        "bandwidth reports its ifbs"
    );
    for veth in &veths {
        // bandwidth: ingress as a tbf on the host veth, egress through an ifb.
        let q = qdiscs(host, veth);
        assert!(q.contains("tbf"), "{veth}: {q}");
        assert!(q.contains("ingress"), "{veth}: {q}");
    }
    let ifbs = || -> Vec<String> {
        host.links()
            .into_iter()
            .filter(|l| l.starts_with("bwp"))
            .collect()
    };
    assert_eq!(ifbs().len(), 2, "one ifb per rail: {:?}", host.links());

    let with_prev = World::with_prev(&conf, &result);
    world.run("CHECK", "c1", &pod.path(), &with_prev).ok();
    // CHECK runs the chain too: tuning sees the drifted sysctl.
    set_sysctl(&pod, "net.ipv4.conf.net1-1.arp_ignore", "0");
    let (_, msg) = world.run("CHECK", "c1", &pod.path(), &with_prev).err();
    assert!(msg.contains("tuning") && msg.contains("net1-1"), "{msg}");
    set_sysctl(&pod, "net.ipv4.conf.net1-1.arp_ignore", "1");

    world.run("DEL", "c1", &pod.path(), &with_prev).ok();
    assert_eq!(ifbs(), Vec::<String>::new(), "bandwidth's DEL ran");
    assert_eq!(pod.links(), Vec::<String>::new());
    assert!(world.daemon.allocations().is_empty());
    assert!(!world.state_file("c1").exists());
}

#[test]
fn a_failing_chained_plugin_rolls_the_whole_pod_back() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world.cni_path.link_upstream(&["ptp", "tuning"]);
    let mut conf = world.conf("1.0.0", json!({"type": "ptp"}));
    conf["chain"] = json!([
        {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.no_such_knob": "1"}},
    ]);
    let pod = Netns::new("chainfail");
    let (code, msg) = world.run("ADD", "c2", &pod.path(), &conf).err();
    assert_ne!(code, 0);
    assert!(
        msg.contains("tuning") && msg.contains("pod interface net1-"),
        "{msg}"
    );
    assert_eq!(
        pod.links(),
        Vec::<String>::new(),
        "the interfaces were removed"
    );
    assert!(
        world.daemon.allocations().is_empty(),
        "the addresses were released"
    );
    assert!(!world.state_file("c2").exists());
}

#[test]
fn chain_config_errors_name_the_entry_and_allocate_nothing() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("chainconf");
    for (chain, code, part) in [
        (json!([{"type": "portmap"}]), 2, "chain[0].type"),
        (
            json!([{"type": "tuning"}, {"type": "sbr", "name": "x"}]),
            2,
            "chain[1].name",
        ),
        (json!([{"mtu": 9000}]), 7, "chain[0].type"),
        (json!({"type": "tuning"}), 6, "chain"),
    ] {
        let mut conf = world.conf("1.0.0", json!({"type": "ptp"}));
        conf["chain"] = chain;
        let (got, msg) = world.run("ADD", "c3", &pod.path(), &conf).err();
        assert_eq!(got, code, "{msg}");
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    assert_eq!(
        world.daemon.request_count(),
        0,
        "nothing reached the daemon"
    );
}
