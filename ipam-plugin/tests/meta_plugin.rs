//! `railyard-cni` as a runtime runs it, with the real reference plugins.
//!
//! The data-path tests build a "host" netns with two rail NICs and a "pod"
//! netns, and run the meta plugin inside the host netns exactly as a
//! runtime would (env + stdin), so the delegates really create interfaces.
//! They need root and fail without it. The config and STATUS tests at the
//! end stop before any interface is made and run unprivileged.

mod common;

use common::daemon::TestDaemon;
use common::netns::Netns;
use common::world::World;
use common::{attach_env, NETNS};
use railyard_core::ipam::Request;
use serde_json::{json, Value};

fn macvlan() -> Value {
    json!({"type": "macvlan", "mode": "bridge"})
}

#[test]
fn macvlan_gives_each_nic_its_own_interface_and_del_removes_them() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("pod");
    let conf = world.conf("1.1.0", macvlan());

    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(result["cniVersion"], "1.1.0");
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["net1-0", "net1-1"]);
    assert_eq!(result["interfaces"][1]["sandbox"], json!(pod.path()));
    assert_eq!(
        result["ips"],
        json!([
            {"address": "192.168.0.10/24", "gateway": "192.168.0.1", "interface": 0},
            {"address": "192.168.64.10/24", "gateway": "192.168.64.1", "interface": 1}
        ])
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "192.168.0.0/18", "gw": "192.168.0.1"},
               {"dst": "192.168.64.0/18", "gw": "192.168.64.1"}])
    );

    let addrs = pod.addrs();
    assert_eq!(addrs["net1-0"], ["192.168.0.10/24"], "{addrs:?}");
    assert_eq!(addrs["net1-1"], ["192.168.64.10/24"], "{addrs:?}");
    let routes = pod.gateway_routes();
    for want in [
        "192.168.0.0/18 via 192.168.0.1 dev net1-0",
        "192.168.64.0/18 via 192.168.64.1 dev net1-1",
    ] {
        assert!(routes.iter().any(|r| r == want), "{want} not in {routes:?}");
    }
    assert!(world.state_file("c1").exists());

    let conf = World::with_prev(&conf, &result);
    world.run("CHECK", "c1", &pod.path(), &conf).ok();

    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
    assert!(world.daemon.allocations().is_empty());
    assert!(!world.state_file("c1").exists());
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    let (code, _) = world.run("CHECK", "c1", &pod.path(), &conf).err();
    assert_eq!(code, 3, "CHECK after DEL: container unknown");
    drop(pod);
    // The netns is gone too: DEL still succeeds.
    world.run("DEL", "c1", "/var/run/netns/gone", &conf).ok();
}

/// `railyard-ipam` runs inside railyard-cni (no fork, exec or VERSION call
/// per invocation), so a node with railyard-cni alone attaches, and the
/// daemon sees exactly the requests the binary would have sent.
#[test]
fn railyard_ipam_runs_in_process_without_its_binary_in_cni_path() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world.cni_path.remove("railyard-ipam");
    let pod = Netns::new("pod");
    let conf = world.conf("1.1.0", macvlan());

    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(result["ips"].as_array().map(Vec::len), Some(2), "{result}");
    assert_eq!(world.daemon.allocations().len(), 1);
    let conf = World::with_prev(&conf, &result);
    world.run("CHECK", "c1", &pod.path(), &conf).ok();
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert!(world.daemon.allocations().is_empty());
    let kinds: Vec<&str> = world
        .daemon
        .requests()
        .iter()
        .map(|r| match r {
            Request::Add { .. } => "add",
            Request::Check { .. } => "check",
            Request::Del { .. } => "del",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["add", "check", "del"]);

    // Its errors reach the runtime as the binary's did: named after it.
    world
        .daemon
        .fail_with(101, "block 192.168.0.0/24 is exhausted");
    let (code, msg) = world.run("ADD", "c2", &pod.path(), &conf).err();
    assert_eq!(code, 101, "{msg}");
    assert_eq!(
        msg,
        "plugin \"railyard-ipam\" failed: block 192.168.0.0/24 is exhausted"
    );
}

/// A delegate's VERSION answer is asked once per binary, not once per call:
/// it is kept in the state dir until the binary changes (an upgrade).
#[test]
fn a_delegate_is_asked_its_versions_once_until_its_binary_changes() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let log = world.state.path().join("macvlan-calls");
    let wrapper = |tag: &str| {
        format!(
            "#!/bin/sh\n# {tag}\necho \"$CNI_COMMAND\" >> {}\nexec {}/macvlan\n",
            log.display(),
            common::REFERENCE_DIR
        )
    };
    world.cni_path.add_script("macvlan", &wrapper("v1"));
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    let pod = Netns::new("pod");
    let conf = world.conf("1.0.0", macvlan());
    for container in ["c1", "c2"] {
        world.run("ADD", container, &pod.path(), &conf).ok();
        world.run("DEL", container, &pod.path(), &conf).ok();
    }
    assert_eq!(calls(), "VERSION\nADD\nADD\nDEL\nDEL\nADD\nADD\nDEL\nDEL\n");

    // Upgraded in place (a new file renamed over the old): asked again.
    std::fs::remove_file(&log).unwrap();
    world.cni_path.add_script("macvlan", &wrapper("v2"));
    world.run("ADD", "c3", &pod.path(), &conf).ok();
    assert_eq!(calls().lines().next(), Some("VERSION"), "{}", calls());
    assert_eq!(calls().matches("VERSION").count(), 1, "{}", calls());
}

/// The same path as macvlan with `master` set per NIC; this test machine's
/// kernel has no ipvlan, so it only runs where asked for.
#[test]
#[ignore = "needs a kernel with ipvlan support; run with --ignored there"]
fn ipvlan_gives_each_nic_its_own_interface() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("pod");
    let conf = world.conf("1.0.0", json!({"type": "ipvlan", "mode": "l2"}));
    world.run("ADD", "c1", &pod.path(), &conf).ok();
    let addrs = pod.addrs();
    assert_eq!(addrs["net1-0"], ["192.168.0.10/24"], "{addrs:?}");
    assert_eq!(addrs["net1-1"], ["192.168.64.10/24"], "{addrs:?}");
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
}

#[test]
fn ptp_at_0_4_0_gives_each_nic_its_own_veth() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let host = world.host.as_ref().unwrap();
    let pod = Netns::new("pod");
    let host_links_before = host.links().len();
    let conf = world.conf("0.4.0", json!({"type": "ptp", "mtu": 1400}));

    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(result["cniVersion"], "0.4.0");
    let interfaces = result["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 4, "host and pod end per NIC: {result}");
    for (i, ip) in result["ips"].as_array().unwrap().iter().enumerate() {
        assert_eq!(ip["version"], "4");
        let at = ip["interface"].as_u64().unwrap() as usize;
        assert_eq!(interfaces[at]["name"], format!("net1-{i}"), "{result}");
    }

    let addrs = pod.addrs();
    assert_eq!(addrs["net1-0"], ["192.168.0.10/24"], "{addrs:?}");
    assert_eq!(addrs["net1-1"], ["192.168.64.10/24"], "{addrs:?}");
    assert_eq!(host.links().len(), host_links_before + 2);

    let conf = World::with_prev(&conf, &result);
    world.run("CHECK", "c1", &pod.path(), &conf).ok();
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
    assert_eq!(
        host.links().len(),
        host_links_before,
        "host veth ends removed"
    );
    assert!(world.daemon.allocations().is_empty());
    world.run("DEL", "c1", &pod.path(), &conf).ok();
}

/// With an explicit `nicField`, host-device moves the rail NIC itself (by
/// default it takes a spare: `tests/meta_host_device.rs`).
#[test]
fn host_device_with_nic_field_moves_each_nic_into_the_pod_and_back() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let host = world.host.as_ref().unwrap();
    let pod = Netns::new("pod");
    let mut conf = world.conf("1.0.0", json!({"type": "host-device"}));
    conf["nicField"] = json!("device");
    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    let addrs = pod.addrs();
    assert_eq!(addrs["net1-0"], ["192.168.0.10/24"], "{addrs:?} {result}");
    assert_eq!(addrs["net1-1"], ["192.168.64.10/24"], "{addrs:?}");
    assert!(!host.links().contains(&"ry-h0a".to_owned()));

    world
        .run("DEL", "c1", &pod.path(), &World::with_prev(&conf, &result))
        .ok();
    assert_eq!(pod.links(), Vec::<String>::new());
    let back = host.links();
    assert!(
        back.contains(&"ry-h0a".to_owned()) && back.contains(&"ry-h0b".to_owned()),
        "{back:?}"
    );
    assert!(world.daemon.allocations().is_empty());
}

#[test]
fn failure_in_the_second_delegate_rolls_back_the_first_and_the_allocation() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-missing"));
    let pod = Netns::new("pod");
    let conf = world.conf("1.0.0", macvlan());

    let out = world.run("ADD", "c1", &pod.path(), &conf);
    let (code, msg) = out.err();
    assert_ne!(code, 0);
    assert!(
        msg.contains("macvlan") && msg.contains("net1-1") && msg.contains("ry-missing"),
        "the delegate's error, with the member: {msg}"
    );
    assert!(
        out.json().get("details").is_none(),
        "rollback was clean: {}",
        out.stdout
    );
    assert_eq!(pod.links(), Vec::<String>::new(), "net1-0 was removed");
    assert!(world.daemon.allocations().is_empty());
    let ops: Vec<&str> = world
        .daemon
        .requests()
        .iter()
        .map(|r| match r {
            Request::Add { .. } => "add",
            Request::Del { .. } => "del",
            _ => "other",
        })
        .collect();
    assert_eq!(ops, ["add", "del"]);
    assert!(!world.state_file("c1").exists());
    // The runtime's DEL after the failed ADD finds nothing to do.
    world.run("DEL", "c1", &pod.path(), &conf).ok();
}

#[test]
fn a_repeated_add_converges_and_del_finishes_an_unrecorded_member() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("pod");
    let conf = world.conf("1.0.0", macvlan());
    let first = world.run("ADD", "c1", &pod.path(), &conf).ok();
    // ADD again without DEL (the runtime lost track after a crash): the
    // old interfaces are replaced and the daemon returns the same addresses.
    let again = world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(again["ips"], first["ips"]);
    assert_eq!(pod.links(), ["net1-0", "net1-1"]);

    // As if ADD had died between creating net1-1 and recording it.
    let path = world.state_file("c1");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["members"][1]
        .as_object_mut()
        .unwrap()
        .remove("result");
    std::fs::write(&path, state.to_string()).unwrap();
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
    assert!(world.daemon.allocations().is_empty());
}

#[test]
fn gc_removes_interfaces_and_addresses_of_forgotten_attachments() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let (kept, forgotten) = (Netns::new("pod1"), Netns::new("pod2"));
    let conf = world.conf("1.1.0", macvlan());
    world.run("ADD", "c1", &kept.path(), &conf).ok();
    world.run("ADD", "c2", &forgotten.path(), &conf).ok();
    assert_eq!(forgotten.links(), ["net1-0", "net1-1"]);

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "net1"}]);
    world.run_plain("GC", &gc).ok();

    assert_eq!(forgotten.links(), Vec::<String>::new());
    assert_eq!(kept.links(), ["net1-0", "net1-1"]);
    let held: Vec<String> = world
        .daemon
        .allocations()
        .into_keys()
        .map(|id| id.container_id)
        .collect();
    assert_eq!(held, ["c1"]);
    assert!(world.state_file("c1").exists() && !world.state_file("c2").exists());
}

#[test]
fn invalid_meta_configs_fail_before_anything_is_allocated() {
    let world = World::without_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = NETNS;
    let base = world.conf("1.0.0", macvlan());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    let cases = [
        (
            "delegate.master",
            with(&|c| c["delegate"]["master"] = "eth9".into()),
            2,
        ),
        (
            "top-level master",
            with(&|c| c["master"] = "eth9".into()),
            2,
        ),
        ("no delegate", with(&|c| c["delegate"] = Value::Null), 7),
        (
            "delegate not installed",
            with(&|c| c["delegate"]["type"] = "no-such-plugin".into()),
            5,
        ),
        (
            "ipam not installed",
            with(&|c| c["ipam"]["type"] = "no-such-ipam".into()),
            5,
        ),
        (
            "unknown ipam field",
            with(&|c| c["ipam"]["sockt"] = "/x".into()),
            2,
        ),
    ];
    for (what, conf, code) in cases {
        let (got, msg) = world.run("ADD", "c1", pod, &conf).err();
        assert_eq!(got, code, "{what}: {msg}");
    }
    let long = attach_env("ADD", "c1", "abcdefghijklmn", pod, &world.cni_path.value());
    let (got, msg) = world.exec(&long, &base).err();
    assert_eq!(got, 4, "{msg}");
    assert!(msg.contains("abcdefghijklmn-0"), "{msg}");
    assert_eq!(
        world.daemon.request_count(),
        0,
        "{:?}",
        world.daemon.requests()
    );
}

#[test]
fn daemon_errors_reach_the_runtime_through_the_meta_plugin() {
    let world = World::without_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world
        .daemon
        .fail_with(101, "block 192.168.0.0/24 is exhausted");
    let conf = world.conf("1.0.0", macvlan());
    let (code, msg) = world.run("ADD", "c1", NETNS, &conf).err();
    assert_eq!(code, 101, "{msg}");
    assert_eq!(
        msg,
        "plugin \"railyard-ipam\" failed: block 192.168.0.0/24 is exhausted"
    );
}

#[test]
fn status_needs_both_plugins_and_a_ready_daemon() {
    let world = World::without_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let conf = world.conf("1.1.0", macvlan());
    world.run_plain("STATUS", &conf).ok();
    assert_eq!(
        world.daemon.requests(),
        [Request::Status {
            network: "rdma".into()
        }]
    );

    let mut missing = conf.clone();
    missing["delegate"]["type"] = "no-such-plugin".into();
    let (code, msg) = world.run_plain("STATUS", &missing).err();
    assert_eq!(code, 50, "{msg}");

    world.daemon.fail_with(11, "no plan for rdma yet");
    let (code, msg) = world.run_plain("STATUS", &conf).err();
    assert_eq!(code, 11, "{msg}");
    assert!(msg.ends_with("no plan for rdma yet"), "{msg}");

    let mut down = conf.clone();
    down["ipam"]["socket"] = "/nonexistent/ipam.sock".into();
    let (code, msg) = world.run_plain("STATUS", &down).err();
    assert_eq!(code, 50, "{msg}");
}
