//! `railyard-cni` against the real route-daemon when the runtime does what the
//! CNI spec says it should not, as runtimes do after a timeout: an ADD and a
//! DEL of one container at once; and the inputs a runtime may send anyway: a
//! container ID longer than a file name (or than the daemon takes), a netns
//! that is already gone.
//!
//! What must hold throughout: a pod has interfaces exactly when the daemon
//! holds its addresses, those very addresses, and no address is held twice.
//! The daemon's side is read twice: `railyard-ipam` CHECK on its socket (held
//! or not, at once) and the etcd mirror (which addresses, once mirrored).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use railyard_e2e::cluster::cmd::{ip_in, netns_add, netns_del};
use railyard_e2e::cluster::pods::wait_ready;
use serde_json::Value;

use crate::common::{spec, TestCluster, CONVERGE};
use crate::plugin_exec::{daemon_holds, mirrored, run, Outcome};

/// Concurrent ADD/DEL pairs per container.
const PAIRS: usize = 20;
const CONTAINERS: usize = 4;

/// A pod namespace of this test, removed when the test ends (also on failure:
/// the cluster's teardown only knows the pods it attached itself).
struct Pod {
    name: String,
}

impl Pod {
    fn new(name: String) -> Pod {
        // A killed earlier run may have left it.
        netns_del(&name).expect("remove a stale pod netns");
        netns_add(&name).expect("create a pod netns");
        Pod { name }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The addresses on the pod's railyard interfaces (`net1-<i>`).
    fn addresses(&self) -> BTreeSet<IpAddr> {
        let text = ip_in(&self.name, &["-j", "addr"]).expect("ip -j addr in the pod");
        let links: Value = serde_json::from_str(&text).expect("ip -j prints JSON");
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("net1-")))
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] != "link")
            .filter_map(|a| a["local"].as_str()?.parse().ok())
            .collect()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = netns_del(&self.name);
    }
}

/// One plugin run: stdout as JSON, or the CNI error code and the whole reply.
/// Waits until the mirror holds exactly `want` for each of its containers.
fn wait_mirrored(c: &mut TestCluster, want: &BTreeMap<String, BTreeSet<IpAddr>>, when: &str) {
    let start = Instant::now();
    loop {
        let now = mirrored(c);
        let got: BTreeMap<&String, BTreeSet<IpAddr>> = want
            .keys()
            .map(|cid| (cid, now.get(cid).cloned().unwrap_or_default()))
            .collect();
        if got.iter().all(|(cid, addrs)| want.get(*cid) == Some(addrs)) {
            return;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "{when}: the pods have {want:?} but etcd's mirror of the daemon holds {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn concurrent_add_and_del_of_one_container_leave_pod_and_daemon_in_agreement() {
    let mut s = spec("e2e-cnirace", 230);
    s.pods = 0;
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready for pods");
    let pods: Vec<(String, Pod)> = (0..CONTAINERS)
        .map(|k| {
            let name = format!("{}race-{k}", spec.prefix);
            (name.clone(), Pod::new(name))
        })
        .collect();

    for round in 0..PAIRS {
        let outcomes: Vec<(String, &str, Outcome)> = std::thread::scope(|scope| {
            let runs: Vec<_> = pods
                .iter()
                .flat_map(|(cid, pod)| ["ADD", "DEL"].map(|command| (cid, pod, command)))
                .map(|(cid, pod, command)| {
                    let spec = &spec;
                    scope.spawn(move || {
                        let out = run(spec, 0, "railyard-cni", command, cid, &pod.path(), None);
                        (cid.clone(), command, out)
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("runner"))
                .collect()
        });
        let mut want = BTreeMap::new();
        let mut seen = BTreeMap::<IpAddr, &str>::new();
        for (cid, pod) in &pods {
            let on_pod = pod.addresses();
            assert_eq!(
                daemon_holds(&spec, 0, cid),
                !on_pod.is_empty(),
                "round {round}: {cid} has interfaces with {on_pod:?}, and the daemon disagrees"
            );
            for a in &on_pod {
                if let Some(other) = seen.insert(*a, cid) {
                    panic!("round {round}: {a} is on {other} and {cid}");
                }
            }
            want.insert(cid.clone(), on_pod);
        }
        wait_mirrored(&mut c, &want, &format!("round {round}"));
        // One after the other, each is an ordinary ADD or DEL: none may fail.
        for (cid, command, out) in outcomes {
            if let Err((code, msg)) = out {
                panic!("round {round}: {command} {cid} failed with {code}: {msg}");
            }
        }
    }

    // A new pod gets none of the addresses the raced pods still have.
    let fresh = Pod::new(format!("{}fresh", spec.prefix));
    run(
        &spec,
        0,
        "railyard-cni",
        "ADD",
        &fresh.name,
        &fresh.path(),
        None,
    )
    .expect("fresh ADD");
    let raced: BTreeSet<IpAddr> = pods.iter().flat_map(|(_, p)| p.addresses()).collect();
    let new = fresh.addresses();
    assert_eq!(new.len(), spec.rails, "{new:?}");
    assert!(raced.is_disjoint(&new), "{new:?} overlaps {raced:?}");

    let mut gone = BTreeMap::new();
    for (cid, pod) in pods.iter().chain([&(fresh.name.clone(), fresh)]) {
        run(&spec, 0, "railyard-cni", "DEL", cid, &pod.path(), None).expect("final DEL");
        assert_eq!(pod.addresses(), BTreeSet::new(), "{cid} kept interfaces");
        gone.insert(cid.clone(), BTreeSet::new());
    }
    wait_mirrored(&mut c, &gone, "after the last DEL");
}

#[test]
fn a_300_character_container_id_and_a_netns_that_is_gone_with_the_real_daemon() {
    let mut s = spec("e2e-cniinput", 231);
    s.pods = 0;
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready for pods");

    // ADD, CHECK, DEL of a container ID no file name can hold.
    let long: String = "0123456789abcdef".repeat(19).chars().take(300).collect();
    let pod = Pod::new(format!("{}long", spec.prefix));
    let result = run(&spec, 0, "railyard-cni", "ADD", &long, &pod.path(), None)
        .unwrap_or_else(|(code, msg)| panic!("ADD of a 300-character ID: {code}: {msg}"));
    let addrs = pod.addresses();
    assert_eq!(addrs.len(), spec.rails, "{addrs:?}");
    wait_mirrored(
        &mut c,
        &BTreeMap::from([(long.clone(), addrs)]),
        "after ADD",
    );
    let prev = serde_json::json!({ "prevResult": result });
    run(
        &spec,
        0,
        "railyard-cni",
        "CHECK",
        &long,
        &pod.path(),
        Some(&prev),
    )
    .unwrap_or_else(|(code, msg)| panic!("CHECK of a 300-character ID: {code}: {msg}"));
    run(&spec, 0, "railyard-cni", "DEL", &long, &pod.path(), None)
        .unwrap_or_else(|(code, msg)| panic!("DEL of a 300-character ID: {code}: {msg}"));
    assert_eq!(pod.addresses(), BTreeSet::new());
    wait_mirrored(
        &mut c,
        &BTreeMap::from([(long, BTreeSet::new())]),
        "after DEL",
    );

    // Longer than the daemon takes: ADD gets the daemon's reason, naming the
    // field, and the runtime's DEL succeeds (a failing one is retried forever).
    let absurd = "c".repeat(2000);
    let (code, msg) = run(&spec, 0, "railyard-cni", "ADD", &absurd, &pod.path(), None)
        .expect_err("ADD of a 2000-character ID");
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("containerId"), "{msg}");
    run(&spec, 0, "railyard-cni", "DEL", &absurd, &pod.path(), None)
        .unwrap_or_else(|(code, msg)| panic!("DEL of a 2000-character ID: {code}: {msg}"));
    // `.versions` is the delegates' VERSION cache, kept across attachments.
    let left: Vec<_> = std::fs::read_dir(spec.cni_state())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| n != ".versions")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "state or lock files left: {left:?}");

    // ADD into a netns that does not exist: refused, nothing allocated.
    let missing = format!("/run/netns/{}never-made", spec.prefix);
    let (code, msg) = run(&spec, 0, "railyard-cni", "ADD", "nowhere", &missing, None)
        .expect_err("ADD into a missing netns");
    assert_eq!(code, 4, "{msg}");
    assert!(msg.contains("CNI_NETNS") && msg.contains(&missing), "{msg}");
    assert!(
        !daemon_holds(&spec, 0, "nowhere"),
        "the refused ADD allocated"
    );

    // The sandbox goes before the runtime's DEL: DEL still releases.
    let doomed = Pod::new(format!("{}doomed", spec.prefix));
    let path = doomed.path();
    run(&spec, 0, "railyard-cni", "ADD", "doomed", &path, None).expect("ADD");
    assert!(daemon_holds(&spec, 0, "doomed"));
    drop(doomed);
    run(&spec, 0, "railyard-cni", "DEL", "doomed", &path, None)
        .unwrap_or_else(|(code, msg)| panic!("DEL after the netns went: {code}: {msg}"));
    assert!(!daemon_holds(&spec, 0, "doomed"), "DEL released");
    wait_mirrored(
        &mut c,
        &BTreeMap::from([("doomed".to_owned(), BTreeSet::new())]),
        "after DEL",
    );
}
