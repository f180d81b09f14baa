//! `railyard-cni` when the runtime does what the spec says it should not,
//! as runtimes do after timeouts and crashes: ADD and DEL of one container
//! at once, ADD again without DEL, a container ID longer than a file name,
//! a netns that is already gone.
//!
//! Every test ends on the invariant that matters: the daemon holds exactly
//! the addresses on the pod's interfaces, or nothing and no interfaces. An
//! address held by nobody's interface leaks; an address on an interface
//! the daemon released is handed to a second pod.
//!
//! Real macvlan interfaces in real namespaces: needs root, fails without.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use common::daemon::TestDaemon;
use common::netns::Netns;
use common::world::World;
use serde_json::{json, Value};

fn macvlan() -> Value {
    json!({"type": "macvlan", "mode": "bridge"})
}

fn two_rail_world() -> World {
    World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"))
}

/// The addresses on the pod's `net1-*` interfaces.
fn on_pod(pod: &Netns) -> BTreeSet<String> {
    pod.addrs()
        .into_iter()
        .filter(|(name, _)| name.starts_with("net1-"))
        .flat_map(|(_, addrs)| addrs)
        .collect()
}

/// The addresses the daemon holds for `container`.
fn held(world: &World, container: &str) -> BTreeSet<String> {
    world
        .daemon
        .allocations()
        .into_iter()
        .filter(|(id, _)| id.container_id == container)
        .flat_map(|(_, nics)| nics)
        .flat_map(|nic| nic.addresses)
        .map(|a| a.to_string())
        .collect()
}

/// Interface name to (ifindex, mtu): a rebuilt interface gets a new index.
fn links(pod: &Netns) -> BTreeMap<String, (u64, u64)> {
    let text = pod.ip(&["-j", "link"]);
    let v: Value = serde_json::from_str(&text).expect("ip -j link prints JSON");
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["ifname"] != "lo")
        .map(|l| {
            let name = l["ifname"].as_str().unwrap_or_default().to_owned();
            let index = l["ifindex"].as_u64().unwrap_or_default();
            (name, (index, l["mtu"].as_u64().unwrap_or_default()))
        })
        .collect()
}

/// The state dir's attachment files (state files and lock files; not the
/// delegates' `.versions`, which outlives attachments on purpose).
fn state_files(world: &World) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(world.state.path())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != ".versions")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The pod's interfaces and the daemon's record agree: both the same
/// addresses, or both nothing.
fn assert_agree(world: &World, pod: &Netns, container: &str) -> BTreeSet<String> {
    let (on_pod, held) = (on_pod(pod), held(world, container));
    assert_eq!(
        on_pod, held,
        "{container}: the pod's interfaces have {on_pod:?} but the daemon holds {held:?}"
    );
    on_pod
}

const PAIRS: usize = 20;

#[test]
fn concurrent_add_and_del_of_one_container_leave_interfaces_and_allocation_in_agreement() {
    let world = two_rail_world();
    let conf = world.conf("1.0.0", macvlan());
    let pods: Vec<(String, Netns)> = (0..3)
        .map(|i| (format!("race{i}"), Netns::new(&format!("race{i}"))))
        .collect();
    let mut everywhere = BTreeSet::new();
    for round in 0..PAIRS {
        // An ADD and a DEL of each container at once, containers side by side.
        let outcomes: Vec<(&str, &str, common::Outcome)> = std::thread::scope(|s| {
            let runs: Vec<_> = pods
                .iter()
                .flat_map(|(cid, pod)| ["ADD", "DEL"].map(|command| (cid, pod, command)))
                .map(|(cid, pod, command)| {
                    let (world, conf) = (&world, &conf);
                    s.spawn(move || {
                        (
                            cid.as_str(),
                            command,
                            world.run(command, cid, &pod.path(), conf),
                        )
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("runner"))
                .collect()
        });
        everywhere.clear();
        for (cid, pod) in &pods {
            for a in assert_agree(&world, pod, cid) {
                assert!(
                    everywhere.insert(a.clone()),
                    "round {round}: {a} is on two pods"
                );
            }
            assert_eq!(
                world.state_file(cid).exists(),
                !on_pod(pod).is_empty(),
                "round {round}: {cid}'s state file and interfaces disagree"
            );
        }
        // One after the other, each is an ordinary ADD or DEL: none may fail.
        for (cid, command, out) in &outcomes {
            assert_eq!(
                out.exit, 0,
                "round {round}: {command} {cid}: {} {}",
                out.stdout, out.stderr
            );
        }
    }
    // A new pod gets none of the addresses the raced pods still use.
    let fresh = Netns::new("fresh");
    world.run("ADD", "fresh", &fresh.path(), &conf).ok();
    for a in on_pod(&fresh) {
        assert!(!everywhere.contains(&a), "{a} handed out twice");
    }
    // And everything can still be removed, lock files included.
    for (cid, pod) in pods.iter().chain([&("fresh".to_owned(), fresh)]) {
        world.run("DEL", cid, &pod.path(), &conf).ok();
        assert_agree(&world, pod, cid);
    }
    assert!(world.daemon.allocations().is_empty());
    assert_eq!(state_files(&world), Vec::<String>::new());
}

#[test]
fn a_re_add_that_fails_at_ipam_leaves_the_working_attachment_as_it_was() {
    let world = two_rail_world();
    let pod = Netns::new("pod");
    let conf = world.conf("1.0.0", macvlan());
    let first = world.run("ADD", "c1", &pod.path(), &conf).ok();
    let before = (links(&pod), assert_agree(&world, &pod, "c1"));
    assert_eq!(before.1.len(), 2);

    let mut unreachable = conf.clone();
    unreachable["ipam"]["socket"] = "/nonexistent/ipam.sock".into();
    let mut typo = conf.clone();
    typo["ipam"]["sockt"] = "/x".into();
    for (what, bad, code) in [
        ("daemon unreachable", unreachable, 11),
        ("ipam typo", typo, 2),
    ] {
        let (got, msg) = world.run("ADD", "c1", &pod.path(), &bad).err();
        assert_eq!(got, code, "{what}: {msg}");
        let after = (links(&pod), assert_agree(&world, &pod, "c1"));
        assert_eq!(after, before, "{what}: the working attachment changed");
        assert!(world.state_file("c1").exists(), "{what}: state kept");
    }
    let checked = World::with_prev(&conf, &first);
    world.run("CHECK", "c1", &pod.path(), &checked).ok();
    world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert_agree(&world, &pod, "c1");
    assert!(world.daemon.allocations().is_empty());
}

#[test]
fn a_re_add_keeps_intact_interfaces_rebuilds_changed_ones_and_rolls_back_whole() {
    let world = two_rail_world();
    let pod = Netns::new("pod");
    let conf = world.conf("1.0.0", macvlan());
    let first = world.run("ADD", "c1", &pod.path(), &conf).ok();
    let before = links(&pod);

    // The runtime retries an ADD that worked: same answer, same interfaces.
    let again = world.run("ADD", "c1", &pod.path(), &conf).ok();
    assert_eq!(again, first);
    assert_eq!(links(&pod), before, "intact interfaces were rebuilt");

    // A changed delegate config: the interfaces are rebuilt with it.
    let mut mtu = conf.clone();
    mtu["delegate"]["mtu"] = 1400.into();
    let rebuilt = world.run("ADD", "c1", &pod.path(), &mtu).ok();
    assert_eq!(rebuilt["ips"], first["ips"]);
    let after = links(&pod);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["net1-0", "net1-1"]);
    for (name, (index, mtu)) in &after {
        assert_ne!(*index, before[name].0, "{name} was not rebuilt");
        assert_eq!(*mtu, 1400, "{name}");
    }
    assert_agree(&world, &pod, "c1");

    // A re-ADD whose delegate fails, once the old interfaces are gone:
    // interfaces, allocation and record go together.
    let mut broken = conf.clone();
    broken["delegate"]["mode"] = "no-such-mode".into();
    world.run("ADD", "c1", &pod.path(), &broken).err();
    assert_eq!(assert_agree(&world, &pod, "c1"), BTreeSet::new());
    assert_eq!(state_files(&world), Vec::<String>::new());
}

#[test]
fn a_300_character_container_id_adds_checks_and_dels() {
    let world = two_rail_world();
    let pod = Netns::new("pod");
    let long: String = "0123456789abcdef".repeat(19).chars().take(300).collect();
    let conf = world.conf("1.0.0", macvlan());
    let result = world.run("ADD", &long, &pod.path(), &conf).ok();
    assert_eq!(assert_agree(&world, &pod, &long).len(), 2);
    let files = state_files(&world);
    assert!(
        files.iter().all(|f| f.len() <= 255) && files.iter().any(|f| f.ends_with(".json")),
        "{files:?}"
    );
    world
        .run(
            "CHECK",
            &long,
            &pod.path(),
            &World::with_prev(&conf, &result),
        )
        .ok();
    world.run("DEL", &long, &pod.path(), &conf).ok();
    assert_eq!(assert_agree(&world, &pod, &long), BTreeSet::new());
    assert_eq!(state_files(&world), Vec::<String>::new());
}

#[test]
fn add_into_a_netns_that_is_gone_is_refused_and_del_after_it_went_releases() {
    let world = two_rail_world();
    let conf = world.conf("1.0.0", macvlan());
    let gone = "/var/run/netns/ry-test-never-made";
    let (code, msg) = world.run("ADD", "c1", gone, &conf).err();
    assert_eq!(code, 4, "{msg}");
    assert!(msg.contains(&format!("CNI_NETNS={gone:?}")), "{msg}");
    assert_eq!(world.daemon.request_count(), 0, "refused before the daemon");
    assert_eq!(state_files(&world), Vec::<String>::new());

    // The sandbox goes (its interfaces with it) before the runtime's DEL.
    let pod = Netns::new("pod");
    let path = pod.path();
    world.run("ADD", "c1", &path, &conf).ok();
    assert_eq!(held(&world, "c1").len(), 2);
    drop(pod);
    world.run("DEL", "c1", &path, &conf).ok();
    assert!(world.daemon.allocations().is_empty(), "DEL released");
    assert_eq!(state_files(&world), Vec::<String>::new());
}
