//! `inProcessDelegates`: railyard-cni serving macvlan itself must leave a pod
//! exactly as the reference macvlan binary (with its `static` IPAM) leaves it,
//! in real namespaces. Each test runs the same attachment both ways and
//! compares what the pod holds. Needs root; fails without it.

mod common;

use common::daemon::TestDaemon;
use common::netns::Netns;
use common::world::World;
use serde_json::{json, Value};

/// What a pod holds after an ADD: its links with their kind and state, its
/// addresses and its routes through a gateway.
fn pod_state(pod: &Netns) -> Value {
    let links: Value =
        serde_json::from_str(&pod.ip(&["-j", "-d", "link", "show"])).expect("ip -j link");
    let mut links: Vec<Value> = links
        .as_array()
        .expect("list")
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .map(|l| {
            json!({
                "name": l["ifname"],
                "kind": l["linkinfo"]["info_kind"],
                "mode": l["linkinfo"]["info_data"]["mode"],
                "up": l["flags"].as_array().expect("flags").contains(&json!("UP")),
                "mtu": l["mtu"],
            })
        })
        .collect();
    // Delegates run at once, so creation (index) order varies.
    links.sort_by_key(|l| l["name"].to_string());
    json!({"links": links, "addrs": pod.addrs(), "routes": pod.gateway_routes()})
}

fn conf(world: &World, in_process: bool) -> Value {
    let mut c = world.conf("1.1.0", json!({"type": "macvlan", "mode": "bridge"}));
    c["inProcessDelegates"] = json!(in_process);
    c
}

#[test]
fn in_process_macvlan_leaves_the_pod_as_the_binary_does_and_del_removes_it() {
    let mut seen = Vec::new();
    for in_process in [false, true] {
        // A world each, so both pods get the same addresses.
        let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
        let pod = Netns::new("pod");
        let c = conf(&world, in_process);
        let mut result = world.run("ADD", "c1", &pod.path(), &c).ok();
        let state = pod_state(&pod);
        assert_eq!(state["links"].as_array().map(Vec::len), Some(2), "{state}");

        let prev = World::with_prev(&c, &result);
        world.run("CHECK", "c1", &pod.path(), &prev).ok();
        world.run("DEL", "c1", &pod.path(), &prev).ok();
        assert_eq!(pod.links(), Vec::<String>::new());
        assert!(world.daemon.allocations().is_empty());
        world.run("DEL", "c1", &pod.path(), &prev).ok();

        // MACs differ by design (random, or derived from the attachment),
        // and so do the two pods' namespaces.
        for i in result["interfaces"].as_array_mut().expect("interfaces") {
            let i = i.as_object_mut().expect("object");
            let mac = i.remove("mac");
            assert!(mac.is_some_and(|m| m.as_str().is_some_and(|m| m.len() == 17)));
            assert_eq!(i.remove("sandbox"), Some(json!(pod.path())));
        }
        seen.push((result, state));
    }
    assert_eq!(seen[0], seen[1], "binary (left) against in process (right)");
}

#[test]
fn a_check_finds_a_missing_address_and_a_failed_add_leaves_nothing() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("pod");
    let c = conf(&world, true);
    let result = world.run("ADD", "c1", &pod.path(), &c).ok();
    let prev = World::with_prev(&c, &result);
    let address = result["ips"][1]["address"]
        .as_str()
        .expect("address")
        .to_owned();
    pod.ip(&["addr", "del", &address, "dev", "net1-1"]);
    let (code, msg) = world.run("CHECK", "c1", &pod.path(), &prev).err();
    assert!(
        msg.contains(&address) && msg.contains("net1-1"),
        "{code}: {msg}"
    );
    world.run("DEL", "c1", &pod.path(), &prev).ok();

    // The second rail's name is taken in the pod: the ADD fails, and neither
    // the first rail's interface nor any address stays.
    pod.ip(&[
        "link", "add", "net1-1", "type", "veth", "peer", "name", "other",
    ]);
    let (_, msg) = world.run("ADD", "c2", &pod.path(), &c).err();
    assert!(msg.contains("net1-1"), "{msg}");
    let links = pod.links();
    assert!(!links.iter().any(|l| l == "net1-0"), "{links:?}");
    assert!(world.daemon.allocations().is_empty());
}

#[test]
fn a_delegate_setting_not_served_in_process_is_refused_by_name_before_anything_is_made() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("pod");
    let mut c = conf(&world, true);
    c["delegate"]["linkInContainer"] = json!(true);
    let (code, msg) = world.run("ADD", "c1", &pod.path(), &c).err();
    assert!(msg.contains("linkInContainer"), "{code}: {msg}");
    assert_eq!(pod.links(), Vec::<String>::new());
    assert!(world.daemon.allocations().is_empty());
}
