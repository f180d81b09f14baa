//! `railyard-cni` with the real host-device plugin: a spare link per rail
//! moves into the pod and back (`delegate.spareDevices`, see
//! `src/meta/spares.rs`).
//!
//! The "host" netns has the two rail NICs of the other meta tests plus
//! spare veths named after them. Needs root and fails without it.

mod common;

use std::collections::BTreeSet;

use common::daemon::{TestDaemon, TestNic};
use common::netns::Netns;
use common::world::World;
use serde_json::{json, Value};

/// The code railyard-cni gives an ADD that finds no free spare.
const NO_FREE_DEVICE: u64 = 103;

/// Adds veth spares `names` (each with a peer `x-<name>`, which the default
/// `{nic}s*` does not match) to the host.
fn add_spares(world: &World, names: &[&str]) {
    let host = world.host.as_ref().expect("a host netns");
    for name in names {
        let peer = format!("x-{name}");
        host.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
        host.ip(&["link", "set", &peer, "up"]);
    }
}

fn host_device() -> Value {
    json!({"type": "host-device"})
}

/// The `device` each member of `container`'s record holds.
fn recorded_devices(world: &World, container: &str) -> Vec<String> {
    let text = std::fs::read_to_string(world.state_file(container)).expect("state file");
    let state: Value = serde_json::from_str(&text).expect("state JSON");
    state["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            assert_eq!(m["config"]["device"], m["device"], "{m}");
            m["device"].as_str().expect("a recorded device").to_owned()
        })
        .collect()
}

#[test]
fn spares_move_into_the_pod_and_back_and_running_out_leaves_nothing() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    // Name order puts s2 before s10; rail 1 has one spare.
    add_spares(&world, &["ry-h0as10", "ry-h0as2", "ry-h0bs0"]);
    let host = world.host.as_ref().unwrap();
    let conf = world.conf("1.0.0", host_device());

    let pod = Netns::new("pod");
    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    let addrs = pod.addrs();
    assert_eq!(addrs["net1-0"], ["192.168.0.10/24"], "{addrs:?} {result}");
    assert_eq!(addrs["net1-1"], ["192.168.64.10/24"], "{addrs:?}");
    assert_eq!(recorded_devices(&world, "c1"), ["ry-h0as2", "ry-h0bs0"]);
    let links = host.links();
    assert!(
        !links.contains(&"ry-h0as2".to_owned()) && !links.contains(&"ry-h0bs0".to_owned()),
        "the spares left the host: {links:?}"
    );
    assert!(
        links.contains(&"ry-h0a".to_owned()) && links.contains(&"ry-h0b".to_owned()),
        "the rail NICs stay: {links:?}"
    );
    // On the rail's L2 like macvlan: the block goes through the gateway.
    let routes = pod.gateway_routes();
    assert!(
        routes.contains(&"192.168.0.0/24 via 192.168.0.1 dev net1-0".to_owned()),
        "{routes:?}"
    );
    let with_prev = World::with_prev(&conf, &result);
    world.run("CHECK", "c1", &pod.path(), &with_prev).ok();

    // A second pod: rail 0 has ry-h0as10 left, rail 1 nothing.
    let second = Netns::new("pod2");
    let out = world.run("ADD", "c2", &second.path(), &conf);
    let (code, msg) = out.err();
    assert_eq!(code, NO_FREE_DEVICE, "{msg}");
    for part in [
        "\"ry-h0b\"",
        "rail 1",
        "{nic}s*",
        "ry-h0bs*",
        "1 by other attachments (ry-h0bs0)",
    ] {
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    assert_eq!(second.links(), Vec::<String>::new());
    assert!(!world.state_file("c2").exists());
    let held: Vec<String> = world
        .daemon
        .allocations()
        .keys()
        .map(|a| a.container_id.clone())
        .collect();
    assert_eq!(held, ["c1"], "c2's addresses were released");
    assert!(host.links().contains(&"ry-h0as10".to_owned()));

    // DEL moves each spare back under its own name.
    world.run("DEL", "c1", &pod.path(), &with_prev).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
    let back = host.links();
    for spare in ["ry-h0as2", "ry-h0as10", "ry-h0bs0"] {
        assert!(back.contains(&spare.to_owned()), "{spare}: {back:?}");
    }
    assert!(world.daemon.allocations().is_empty());
    // Now there is room again.
    world.run("ADD", "c2", &second.path(), &conf).ok();
    assert_eq!(recorded_devices(&world, "c2"), ["ry-h0as2", "ry-h0bs0"]);
    world.run("DEL", "c2", &second.path(), &conf).ok();
}

#[test]
fn concurrent_adds_never_share_a_spare() {
    const PODS: usize = 6;
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let spares: Vec<String> = (0..PODS)
        .flat_map(|k| [format!("ry-h0as{k}"), format!("ry-h0bs{k}")])
        .collect();
    add_spares(
        &world,
        &spares.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let conf = world.conf(
        "1.0.0",
        json!({"type": "host-device", "spareDevices": "{nic}s*"}),
    );
    let pods: Vec<Netns> = (0..PODS).map(|k| Netns::new(&format!("p{k}"))).collect();
    std::thread::scope(|s| {
        for (k, pod) in pods.iter().enumerate() {
            let (world, conf) = (&world, &conf);
            s.spawn(move || {
                world.run("ADD", &format!("c{k}"), &pod.path(), conf).ok();
            });
        }
    });
    let mut seen = BTreeSet::new();
    for (k, pod) in pods.iter().enumerate() {
        for device in recorded_devices(&world, &format!("c{k}")) {
            assert!(seen.insert(device.clone()), "{device} given twice");
        }
        assert_eq!(pod.links().len(), 2, "{:?}", pod.links());
    }
    assert_eq!(seen.len(), 2 * PODS);
    // Every spare is in use: one more pod fails, naming rail 0's NIC.
    let extra = Netns::new("extra");
    let (code, msg) = world.run("ADD", "cx", &extra.path(), &conf).err();
    assert_eq!(code, NO_FREE_DEVICE, "{msg}");
    assert!(msg.contains("\"ry-h0a\""), "{msg}");
    for (k, pod) in pods.iter().enumerate() {
        world.run("DEL", &format!("c{k}"), &pod.path(), &conf).ok();
    }
    let back = world.host.as_ref().unwrap().links();
    for spare in &spares {
        assert!(back.contains(spare), "{spare}: {back:?}");
    }
    assert!(world.daemon.allocations().is_empty());
}

/// The device plugin's choice (`runtimeConfig.deviceID`, or `deviceID` at
/// the top as Multus adds it) goes to host-device as `pciBusID` for a
/// one-rail pod (a wrapper stands in for host-device: there is no PCI NIC
/// to move here); a pod of two rails cannot use one device.
#[test]
fn runtime_device_id_is_passed_as_pci_bus_id_for_one_rail_only() {
    let one = World::with_host(TestDaemon::start(vec![TestNic::v4(
        "ry-h0a",
        0,
        "192.168.0.0/24",
        "192.168.0.0/18",
    )]));
    let seen = one.state.path().join("host-device.stdin");
    one.cni_path.add_script(
        "host-device",
        &format!(
            "#!/bin/sh\n\
             if [ \"$CNI_COMMAND\" = VERSION ]; then\n\
             echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}}'; exit 0; fi\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then cat > {}; \
             echo '{{\"code\":11,\"msg\":\"no such PCI device here\"}}'; exit 1; fi\n\
             exit 0\n",
            seen.display()
        ),
    );
    let mut conf = one.conf("1.0.0", host_device());
    conf["runtimeConfig"] = json!({"deviceID": "0000:3b:00.1"});
    let pod = Netns::new("pod");
    let (code, msg) = one.run("ADD", "c1", &pod.path(), &conf).err();
    assert_eq!(code, 11, "host-device's own error: {msg}");
    let sent: Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("the wrapper ran"))
            .expect("JSON config");
    assert_eq!(sent["pciBusID"], "0000:3b:00.1", "{sent}");
    assert!(sent.get("device").is_none(), "{sent}");
    assert!(one.daemon.allocations().is_empty());

    // Where Multus puts it: the top level of the config.
    std::fs::remove_file(&seen).expect("the first call's config");
    let mut conf = one.conf("1.0.0", host_device());
    conf["deviceID"] = json!("0000:3b:00.2");
    let (code, msg) = one.run("ADD", "c2", &pod.path(), &conf).err();
    assert_eq!(code, 11, "host-device's own error: {msg}");
    let sent: Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("the wrapper ran"))
            .expect("JSON config");
    assert_eq!(sent["pciBusID"], "0000:3b:00.2", "{sent}");
    assert!(one.daemon.allocations().is_empty());

    let two = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    for (key, field) in [
        ("runtimeConfig", "runtimeConfig.deviceID"),
        ("deviceID", "`deviceID`"),
    ] {
        let mut conf = two.conf("1.0.0", host_device());
        conf[key] = if key == "deviceID" {
            json!("0000:3b:00.1")
        } else {
            json!({"deviceID": "0000:3b:00.1"})
        };
        let (code, msg) = two.run("ADD", "c1", &pod.path(), &conf).err();
        assert_eq!(code, 7, "{msg}");
        assert!(msg.contains(field) && msg.contains("2 rails"), "{msg}");
        assert!(two.daemon.allocations().is_empty());
        assert_eq!(pod.links(), Vec::<String>::new());
    }
}

/// A pod whose netns is gone before its DEL (a node's crash, a runtime that
/// removed it first): host-device's DEL fails on the missing netns, but the
/// kernel already dealt with the link (a veth here goes with the netns; a
/// physical NIC goes back to the host), so railyard-cni's DEL succeeds and
/// releases the addresses instead of blocking the pod's removal forever.
#[test]
fn del_after_the_pods_netns_is_gone_releases_the_addresses() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    add_spares(&world, &["ry-h0as0", "ry-h0bs0"]);
    let conf = world.conf("1.0.0", host_device());
    let pod = Netns::new("pod");
    let path = pod.path();
    world.run("ADD", "c1", &path, &conf).ok();
    drop(pod);
    assert!(!std::path::Path::new(&path).exists());
    world.run("DEL", "c1", &path, &conf).ok();
    assert!(world.daemon.allocations().is_empty());
    assert!(!world.state_file("c1").exists());
}
