//! A pod never silently gets fewer rails or families than the network gives
//! its host. On a live cluster, with the real daemon following the kernel:
//!
//! - a rail NIC that lost its IPv4 address (the planner may withdraw its
//!   block), a rail NIC that lost only its IPv6 address (dual stack), and a
//!   rail NIC whose link is down each make an ADD with no selection fail with
//!   code 100 naming the NIC, leaving nothing allocated (IPAM CHECK, the etcd
//!   mirror) and nothing on the pod;
//! - once the NIC is whole again, the same ADD gets every rail (and family);
//! - an ADD that selects a subset of rails avoiding the broken one succeeds.
//!
//! Before the fix the default "every NIC" meant every NIC usable right now,
//! so each of these ADDs succeeded with one rail (or family) fewer, and CHECK
//! could never tell a rail the pod never got.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use railyard_e2e::cluster::cmd::ip_in;
use railyard_e2e::cluster::pods::wait_ready;
use railyard_e2e::{ClusterSpec, Family};
use serde_json::{json, Value};

use crate::common::{spec, TestCluster, CONVERGE};
use crate::plugin_exec::{
    cni_add, cni_files, daemon_holds, result_addresses, wait_mirror, wait_registration, Pod, NO_NIC,
};

/// The broken rail's NIC on host 0.
const BROKEN: &str = "rail1";

/// Host 0's blocks in the plan, by rail index.
fn host0_blocks(c: &mut TestCluster) -> BTreeMap<u32, Vec<IpNet>> {
    let spec = c.spec().clone();
    let plan = c
        .observer()
        .expect("observer")
        .plan(&spec.network)
        .expect("read the plan")
        .expect("a plan");
    let mut out = BTreeMap::<u32, Vec<IpNet>>::new();
    for b in &plan.hosts[&spec.host(0)].blocks {
        out.entry(b.interface).or_default().push(b.cidr);
    }
    out
}

/// The daemon reads the kernel through its own watch (its NIC list for IPAM)
/// as the registration does; once the registration shows a change, the IPAM
/// side has had the same events. This is the margin for it to re-list.
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

/// Asserts an ADD with no selection on host 0 fails with code 100 naming the
/// broken NIC, and leaves nothing: no interface in the pod, nothing the daemon
/// holds. Returns the message.
fn assert_refused(spec: &ClusterSpec, pod: &Pod, what: &str) -> String {
    let outcome = cni_add(spec, 0, pod, None);
    let (code, msg) = match outcome {
        Ok(r) => panic!(
            "{what}: the ADD with no selection succeeded with {:?}: the pod got fewer rails than it is owed",
            result_addresses(&r)
        ),
        Err(e) => e,
    };
    assert_eq!(code, NO_NIC, "{what}: {msg}");
    assert!(
        msg.contains(BROKEN),
        "{what}: the error does not name {BROKEN}: {msg}"
    );
    assert!(
        pod.links().is_empty(),
        "{what}: the failed ADD left interfaces {:?}",
        pod.links()
    );
    assert_eq!(
        cni_files(spec, &pod.name),
        Vec::<String>::new(),
        "{what}: the failed ADD left railyard-cni state"
    );
    assert!(
        !daemon_holds(spec, 0, &pod.name),
        "{what}: the daemon holds addresses for the refused pod"
    );
    msg
}

/// An ADD that selects a subset avoiding the broken rail (`sel`, the
/// network config's `args`) works meanwhile: it gets rail 0's blocks. Also
/// asserts the refused pod is not mirrored once this one is (the mirror
/// follows the log in order, so it would be by then).
fn assert_subset_works(
    c: &mut TestCluster,
    blocks: &BTreeMap<u32, Vec<IpNet>>,
    refused: &Pod,
    sel: Value,
) {
    let spec = c.spec().clone();
    let pod = Pod::new(format!("{}subset", spec.prefix));
    let r = cni_add(&spec, 0, &pod, Some(&sel))
        .unwrap_or_else(|(code, msg)| panic!("ADD of a pod asking for {sel}: {code}: {msg}"));
    let got = result_addresses(&r);
    assert_eq!(got.len(), blocks[&0].len(), "{sel}: {got:?}");
    for a in &got {
        assert!(
            blocks[&0].iter().any(|b| b.contains(a)),
            "{sel}: {a} is not from rail0's blocks {:?}",
            blocks[&0]
        );
    }
    assert_eq!(pod.addresses(), got, "the subset pod's interfaces");
    let m = wait_mirror(c, "the subset pod", CONVERGE, |m| {
        m.get(&pod.name) == Some(&got)
    });
    assert!(
        !m.contains_key(&refused.name),
        "the refused pod is mirrored: {:?}",
        m.get(&refused.name)
    );
}

/// The runtime retries the refused pod's ADD once the NIC is whole: it must
/// get an address from every block of every rail. A retry told 100 (the daemon
/// has not seen the repair yet) is retried; a success is judged.
fn assert_every_rail(c: &mut TestCluster, blocks: &BTreeMap<u32, Vec<IpNet>>, pod: &Pod) {
    let spec = c.spec().clone();
    let start = Instant::now();
    let r = loop {
        match cni_add(&spec, 0, pod, None) {
            Ok(r) => break r,
            Err((NO_NIC, msg)) if start.elapsed() < Duration::from_secs(10) => {
                eprintln!("not yet: {msg}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((code, msg)) => panic!("ADD after the repair: {code}: {msg}"),
        }
    };
    let got = result_addresses(&r);
    let all: Vec<IpNet> = blocks.values().flatten().copied().collect();
    assert_eq!(
        got.len(),
        all.len(),
        "one address per block {all:?}, got {got:?}"
    );
    for b in &all {
        assert_eq!(
            got.iter().filter(|a| b.contains(*a)).count(),
            1,
            "block {b}: got {got:?}"
        );
    }
    assert_eq!(pod.addresses(), got, "the pod's interfaces");
    wait_mirror(c, "the repaired pod", CONVERGE, |m| {
        m.get(&pod.name) == Some(&got)
    });
}

fn nic<'a>(inv: &'a railyard_core::HostInventory, name: &str) -> Option<&'a railyard_core::Nic> {
    inv.nics.iter().find(|n| n.name == name)
}

fn holds(inv: &railyard_core::HostInventory, addr: IpAddr) -> bool {
    nic(inv, BROKEN).is_some_and(|n| n.addresses.iter().any(|a| a.addr() == addr))
}

#[test]
fn a_rail_nic_that_lost_its_address_fails_the_add_by_name_until_it_has_it_again() {
    let mut s = spec("e2e-railaddr", 250);
    s.pods = 0;
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready");
    let blocks = host0_blocks(&mut c);
    assert_eq!(
        blocks.len(),
        2,
        "host 0 is planned on both rails: {blocks:?}"
    );

    let lost = IpAddr::V4(spec.rail_v4(0, 1));
    ip_in(
        &spec.host(0),
        &["addr", "del", &format!("{lost}/24"), "dev", BROKEN],
    )
    .expect("remove rail1's address");
    wait_registration(&mut c, 0, "rail1 without its address", |inv| {
        nic(inv, BROKEN).is_some() && !holds(inv, lost)
    });
    settle();
    let pod = Pod::new(format!("{}degraded", spec.prefix));
    let msg = assert_refused(&spec, &pod, "rail1 without its IPv4 address");
    println!("refused: {msg}");
    let masters = json!({"args": {"cni": {"masters": ["rail0"]}}});
    assert_subset_works(&mut c, &blocks, &pod, masters);

    ip_in(
        &spec.host(0),
        &["addr", "add", &format!("{lost}/24"), "dev", BROKEN],
    )
    .expect("give rail1 its address back");
    wait_registration(&mut c, 0, "rail1 with its address", |inv| holds(inv, lost));
    c.wait_converged(&[0, 1], CONVERGE)
        .expect("the plan and routes back");
    assert_every_rail(&mut c, &blocks, &pod);
}

#[test]
fn a_rail_nic_whose_link_is_down_fails_the_add_and_once_up_the_pod_gets_every_rail() {
    let mut s = spec("e2e-raildown", 251);
    s.pods = 0;
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready");
    let blocks = host0_blocks(&mut c);
    assert_eq!(
        blocks.len(),
        2,
        "host 0 is planned on both rails: {blocks:?}"
    );

    ip_in(&spec.host(0), &["link", "set", BROKEN, "down"]).expect("rail1 down");
    wait_registration(&mut c, 0, "rail1 down", |inv| {
        nic(inv, BROKEN).is_some_and(|n| !n.up)
    });
    settle();
    let pod = Pod::new(format!("{}degraded", spec.prefix));
    let msg = assert_refused(&spec, &pod, "rail1 down");
    println!("refused: {msg}");
    assert!(
        msg.contains("down"),
        "the error does not say rail1 is down: {msg}"
    );
    // One NIC, whichever the policy ranks first among the usable: rail0.
    let one = json!({"args": {"cni": {"nics": 1}}});
    assert_subset_works(&mut c, &blocks, &pod, one);

    ip_in(&spec.host(0), &["link", "set", BROKEN, "up"]).expect("rail1 up");
    wait_registration(&mut c, 0, "rail1 up", |inv| {
        nic(inv, BROKEN).is_some_and(|n| n.up)
    });
    c.wait_converged(&[0, 1], CONVERGE)
        .expect("the routes over rail1 back");
    assert_every_rail(&mut c, &blocks, &pod);
}

#[test]
fn dual_stack_a_rail_nic_that_lost_only_its_ipv6_address_fails_the_add() {
    let mut s = spec("e2e-railv6", 252);
    s.pods = 0;
    s.family = Family::Dual;
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready");
    let blocks = host0_blocks(&mut c);
    assert!(
        blocks.len() == 2 && blocks.values().all(|b| b.len() == 2),
        "host 0 is planned on both rails, both families: {blocks:?}"
    );

    let lost = IpAddr::V6(spec.rail_v6(0, 1));
    let kept = IpAddr::V4(spec.rail_v4(0, 1));
    ip_in(
        &spec.host(0),
        &["addr", "del", &format!("{lost}/64"), "dev", BROKEN],
    )
    .expect("remove rail1's IPv6 address");
    wait_registration(&mut c, 0, "rail1 with IPv4 only", |inv| {
        holds(inv, kept) && !holds(inv, lost)
    });
    settle();
    let pod = Pod::new(format!("{}degraded", spec.prefix));
    let msg = assert_refused(&spec, &pod, "rail1 without its IPv6 address");
    println!("refused: {msg}");
    assert!(
        msg.contains("IPv6") || msg.contains(&lost.to_string()),
        "the error does not say what rail1 lacks: {msg}"
    );
    let masters = json!({"args": {"cni": {"masters": ["rail0"]}}});
    assert_subset_works(&mut c, &blocks, &pod, masters);

    ip_in(
        &spec.host(0),
        &["addr", "add", &format!("{lost}/64"), "dev", BROKEN, "nodad"],
    )
    .expect("give rail1 its IPv6 address back");
    wait_registration(&mut c, 0, "rail1 with both addresses", |inv| {
        holds(inv, kept) && holds(inv, lost)
    });
    c.wait_converged(&[0, 1], CONVERGE)
        .expect("the plan and routes back");
    assert_every_rail(&mut c, &blocks, &pod);
}
