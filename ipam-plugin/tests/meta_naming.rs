//! Pod interface names (`ifNameTemplate`): by rail unless the network
//! asks for ranking order, and records written under the old naming still
//! DEL and CHECK by the names they hold.
//!
//! A "host" netns with four rail NICs, a stand-in daemon whose policy
//! ranks them 3, 0, 2, 1 (so the ranking never matches the rail order),
//! and a pod selecting two of them. Needs root; fails without it.

mod common;

use common::daemon::{TestDaemon, TestNic};
use common::netns::{require_root, Netns};
use common::world::World;
use serde_json::{json, Value};

/// Rail r's NIC is `ry-r<r>`, host block 192.168.(64r).0/24.
fn nic(rail: u32) -> TestNic {
    let third = 64 * rail;
    TestNic::v4(
        &format!("ry-r{rail}"),
        rail,
        &format!("192.168.{third}.0/24"),
        &format!("192.168.{third}.0/18"),
    )
}

/// Four rails, ranked 3, 0, 2, 1 by the daemon's "policy".
fn four_rail_world() -> World {
    require_root();
    let host = Netns::new("host4");
    for rail in 0..4u32 {
        let (name, peer) = (format!("ry-r{rail}"), format!("ry-r{rail}-x"));
        host.ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
        host.ip(&[
            "addr",
            "add",
            &format!("192.168.{}.1/24", 64 * rail),
            "dev",
            &name,
        ]);
        host.ip(&["link", "set", &name, "up"]);
        host.ip(&["link", "set", &peer, "up"]);
    }
    let daemon = TestDaemon::start(vec![nic(3), nic(0), nic(2), nic(1)]);
    World {
        host: Some(host),
        ..World::without_host(daemon)
    }
}

/// Rails 1 and 3, which the policy ranks 3 first.
fn conf(world: &World, template: Option<&str>) -> Value {
    let mut c = world.conf("1.0.0", json!({"type": "macvlan", "mode": "bridge"}));
    c["args"] = json!({"cni": {"masters": ["ry-r1", "ry-r3"]}});
    if let Some(t) = template {
        c["ifNameTemplate"] = json!(t);
    }
    c
}

fn names(result: &Value) -> Vec<&str> {
    let list = result["interfaces"].as_array().expect("interfaces");
    list.iter().map(|i| i["name"].as_str().unwrap()).collect()
}

#[test]
fn two_of_four_rails_are_named_by_rail_whatever_the_ranking() {
    let world = four_rail_world();
    let pod = Netns::new("pod");
    let conf = conf(&world, None);

    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    // Ranking order in the result, rail numbers in the names.
    assert_eq!(names(&result), ["net1-3", "net1-1"]);
    let addrs = pod.addrs();
    assert_eq!(addrs["net1-3"], ["192.168.192.10/24"], "{addrs:?}");
    assert_eq!(addrs["net1-1"], ["192.168.64.10/24"], "{addrs:?}");
    assert_eq!(pod.links(), ["net1-1", "net1-3"]);
    let state: Value =
        serde_json::from_slice(&std::fs::read(world.state_file("c1")).unwrap()).unwrap();
    let rails: Vec<&Value> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["rail"])
        .collect();
    assert_eq!(rails, [&json!(3), &json!(1)], "{state}");

    let prev = World::with_prev(&conf, &result);
    world.run("CHECK", "c1", &pod.path(), &prev).ok();
    world.run("DEL", "c1", &pod.path(), &prev).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
    assert!(world.daemon.allocations().is_empty());
    assert!(!world.state_file("c1").exists());
}

#[test]
fn the_index_template_keeps_ranking_order_names() {
    let world = four_rail_world();
    let pod = Netns::new("pod");
    let conf = conf(&world, Some("{ifname}-{index}"));

    let result = world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(names(&result), ["net1-0", "net1-1"]);
    let addrs = pod.addrs();
    assert_eq!(addrs["net1-0"], ["192.168.192.10/24"], "{addrs:?}");
    assert_eq!(addrs["net1-1"], ["192.168.64.10/24"], "{addrs:?}");
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
}

/// A record from before rail naming (index names, no `rail`), then the
/// new default config: CHECK and DEL go by the recorded names, and a
/// re-ADD replaces the old interfaces with rail-named ones.
#[test]
fn records_with_the_old_names_still_check_del_and_re_add() {
    let world = four_rail_world();
    let pod = Netns::new("pod");
    let old_conf = conf(&world, Some("{ifname}-{index}"));
    let new_conf = conf(&world, None);

    let old = world.run("ADD", "c1", &pod.path(), &old_conf).ok();
    let path = world.state_file("c1");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for member in state["members"].as_array_mut().unwrap() {
        member.as_object_mut().unwrap().remove("rail");
    }
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    world
        .run(
            "CHECK",
            "c1",
            &pod.path(),
            &World::with_prev(&new_conf, &old),
        )
        .ok();
    let again = world.run("ADD", "c1", &pod.path(), &new_conf).ok();
    assert_eq!(names(&again), ["net1-3", "net1-1"]);
    assert_eq!(pod.links(), ["net1-1", "net1-3"]);
    assert_eq!(pod.addrs()["net1-3"], ["192.168.192.10/24"]);

    // And DEL of an old record removes the old names.
    world.run("DEL", "c1", &pod.path(), &new_conf).ok();
    world.run("ADD", "c2", &pod.path(), &old_conf).ok();
    assert_eq!(pod.links(), ["net1-0", "net1-1"]);
    world.run("DEL", "c2", &pod.path(), &new_conf).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
    assert!(world.daemon.allocations().is_empty());
}

#[test]
fn a_bad_template_is_refused_before_allocating() {
    let world = World::without_host(TestDaemon::start(vec![nic(0)]));
    let mut c = world.conf("1.0.0", json!({"type": "macvlan"}));
    c["ifNameTemplate"] = json!("{ifname}-{rial}");
    let (code, msg) = world.run("ADD", "c1", common::NETNS, &c).err();
    assert_eq!(code, 7, "{msg}");
    assert!(
        msg.contains("ifNameTemplate") && msg.contains("{rial}"),
        "{msg}"
    );
    c["ifNameTemplate"] = json!("pod-interfaces-{rail}");
    let (code, msg) = world.run("ADD", "c1", common::NETNS, &c).err();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("ifNameTemplate"), "{msg}");
    assert_eq!(world.daemon.request_count(), 0);
}
