//! Chosen MACs: the CNI `mac` capability (`runtimeConfig.mac`) for a pod
//! with one interface, `args.cni.macs` per rail, with the real macvlan plugin
//! and the in-process macvlan. Needs root and fails without it.

mod common;

use common::daemon::TestDaemon;
use common::netns::Netns;
use common::world::World;
use serde_json::{json, Value};

/// The MAC of `ifname` inside `pod`.
fn mac_of(pod: &Netns, ifname: &str) -> String {
    let out = pod.ip(&["-j", "link", "show", "dev", ifname]);
    let v: Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["address"].as_str().expect("address").to_owned()
}

fn conf(world: &World, in_process: bool) -> Value {
    let mut c = world.conf("1.0.0", json!({"type": "macvlan", "mode": "bridge"}));
    c["inProcessDelegates"] = json!(in_process);
    c
}

#[test]
fn a_one_rail_pod_gets_the_runtimes_mac_and_rails_get_theirs() {
    for in_process in [false, true] {
        let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
        let pod = Netns::new("mac1");
        let mut one = conf(&world, in_process);
        one["args"] = json!({"cni": {"masters": ["ry-h0b"]}});
        one["runtimeConfig"] = json!({"mac": "02:AA:00:00:00:01"});
        let result = world.run("ADD", "c1", &pod.path(), &one).ok();
        assert_eq!(mac_of(&pod, "net1-1"), "02:aa:00:00:00:01", "{result}");
        assert_eq!(
            result["interfaces"][0]["mac"], "02:aa:00:00:00:01",
            "{result}"
        );
        world
            .run("CHECK", "c1", &pod.path(), &World::with_prev(&one, &result))
            .ok();
        world.run("DEL", "c1", &pod.path(), &one).ok();

        let two = Netns::new("mac2");
        let mut per_rail = conf(&world, in_process);
        per_rail["args"] =
            json!({"cni": {"macs": {"0": "02:aa:00:00:00:10", "1": "02:aa:00:00:00:11"}}});
        world.run("ADD", "c2", &two.path(), &per_rail).ok();
        assert_eq!(
            mac_of(&two, "net1-0"),
            "02:aa:00:00:00:10",
            "in process: {in_process}"
        );
        assert_eq!(mac_of(&two, "net1-1"), "02:aa:00:00:00:11");
        world.run("DEL", "c2", &two.path(), &per_rail).ok();
        assert!(world.daemon.allocations().is_empty());
    }
}

#[test]
fn the_daemons_annotated_macs_reach_the_interfaces() {
    for in_process in [false, true] {
        let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
        world
            .daemon
            .annotate_macs(&[(0, "02:bb:00:00:00:10"), (1, "02:bb:00:00:00:11")]);
        let pod = Netns::new("macann");
        let c = conf(&world, in_process);
        world.run("ADD", "c1", &pod.path(), &c).ok();
        assert_eq!(
            mac_of(&pod, "net1-0"),
            "02:bb:00:00:00:10",
            "in process: {in_process}"
        );
        assert_eq!(mac_of(&pod, "net1-1"), "02:bb:00:00:00:11");
        world.run("DEL", "c1", &pod.path(), &c).ok();
        // The pod's own arguments saying another MAC: refused, rolled back.
        let mut other = conf(&world, in_process);
        other["args"] = json!({"cni": {"macs": {"1": "02:aa:00:00:00:99"}}});
        let (code, msg) = world.run("ADD", "c2", &pod.path(), &other).err();
        assert_eq!(code, 7, "{msg}");
        assert!(
            msg.contains("mac_address") && msg.contains("disagrees"),
            "{msg}"
        );
        assert!(world.daemon.allocations().is_empty(), "released");
        assert_eq!(pod.links(), Vec::<String>::new());
    }
}

#[test]
fn a_mac_that_cannot_be_served_is_refused_and_leaves_nothing() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    let pod = Netns::new("macbad");
    // One MAC for a pod that gets two rails: refused after IPAM, rolled back.
    let mut two_rails = conf(&world, false);
    two_rails["runtimeConfig"] = json!({"mac": "02:aa:00:00:00:01"});
    let (code, msg) = world.run("ADD", "c3", &pod.path(), &two_rails).err();
    assert_eq!(code, 7, "{msg}");
    assert!(
        msg.contains("runtimeConfig.mac") && msg.contains("2 rails"),
        "{msg}"
    );
    assert!(world.daemon.allocations().is_empty(), "released");
    assert!(!world.state_file("c3").exists());
    assert_eq!(pod.links(), Vec::<String>::new());

    let requests = world.daemon.request_count();
    let cases = [
        (
            json!({"type": "ipvlan", "mode": "l3"}),
            json!({"mac": "02:aa:00:00:00:01"}),
            Value::Null,
            "the ipvlan delegate cannot take a MAC",
        ),
        (
            json!({"type": "macvlan"}),
            json!({"mac": "01:00:5e:00:00:01"}),
            Value::Null,
            "multicast",
        ),
        (
            json!({"type": "macvlan"}),
            Value::Null,
            json!({"cni": {"macs": {"x": "02:aa:00:00:00:01"}}}),
            "args.cni.macs.x",
        ),
        (
            json!({"type": "macvlan"}),
            Value::Null,
            json!({"cni": {"macs": {"0": "02:aa:00:00:00:01", "1": "02:AA:00:00:00:01"}}}),
            "repeats rail 0",
        ),
    ];
    for (delegate, runtime, args, part) in cases {
        let mut c = world.conf("1.0.0", delegate);
        c["runtimeConfig"] = runtime;
        c["args"] = args;
        let (code, msg) = world.run("ADD", "c4", &pod.path(), &c).err();
        assert_eq!(code, 7, "{msg}");
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    assert_eq!(
        world.daemon.request_count(),
        requests,
        "refused before IPAM"
    );
}
