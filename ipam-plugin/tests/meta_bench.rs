//! How long railyard-cni's ADD and DEL take for one pod with 8 NICs
//! against one with 1 NIC: real macvlan (or ipvlan) in real namespaces, the stand-in
//! daemon. A measurement, not a check: `#[ignore]`d so the shared test
//! run does not time a busy machine; run it with
//!
//! ```sh
//! cargo test --release -p railyard-ipam-plugin --test meta_bench -- --ignored --nocapture
//! ```
//!
//! Figures and the machine they came from: docs/benchmarks.md.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{TestDaemon, TestNic};
use common::netns::{require_root, Netns};
use common::world::World;
use serde_json::json;

const ROUNDS: usize = 20;

fn world(nics: u32) -> World {
    require_root();
    let host = Netns::new("bench");
    let mut list = Vec::new();
    for rail in 0..nics {
        let (name, peer) = (format!("ry-b{rail}"), format!("ry-b{rail}-x"));
        host.ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
        host.ip(&["link", "set", &name, "up"]);
        host.ip(&["link", "set", &peer, "up"]);
        let third = 32 * rail;
        list.push(TestNic::v4(
            &name,
            rail,
            &format!("10.{third}.0.0/24"),
            &format!("10.{third}.0.0/11"),
        ));
    }
    World {
        host: Some(host),
        ..World::without_host(TestDaemon::start(list))
    }
}

/// macvlan, or with `RAILYARD_BENCH_DELEGATE=ipvlan` ipvlan l3 (a kernel with
/// ipvlan: the full-kernel VM, `railyard-vm -- <this test binary> --ignored`).
fn delegate() -> serde_json::Value {
    match std::env::var("RAILYARD_BENCH_DELEGATE").as_deref() {
        Ok("ipvlan") => json!({"type": "ipvlan", "mode": "l3"}),
        _ => json!({"type": "macvlan", "mode": "bridge"}),
    }
}

/// Median ADD and DEL times over `ROUNDS` attachments of one pod, with the
/// macvlan binary (and its `static` IPAM) or served in process.
fn measure(nics: u32, in_process: bool) -> (Duration, Duration) {
    let world = world(nics);
    let pod = Netns::new("pod");
    let mut conf = world.conf("1.0.0", delegate());
    conf["inProcessDelegates"] = json!(in_process);
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let cid = format!("c{round}");
        let t = Instant::now();
        world.run("ADD", &cid, &pod.path(), &conf).ok();
        adds.push(t.elapsed());
        assert_eq!(pod.links().len(), nics as usize);
        let t = Instant::now();
        world.run("DEL", &cid, &pod.path(), &conf).ok();
        dels.push(t.elapsed());
    }
    adds.sort();
    dels.sort();
    (adds[ROUNDS / 2], dels[ROUNDS / 2])
}

#[test]
#[ignore = "a measurement; run with --ignored --nocapture"]
fn eight_nics_against_one() {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    for (in_process, how) in [(false, "binaries"), (true, "in process")] {
        let (add1, del1) = measure(1, in_process);
        let (add8, del8) = measure(8, in_process);
        println!(
            "railyard-cni {} ({how}), median of {ROUNDS}: 1 NIC ADD {add1:?} DEL {del1:?}; \
             8 NICs ADD {add8:?} ({:.2}x) DEL {del8:?} ({:.2}x)",
            delegate()["type"],
            ratio(add8, add1),
            ratio(del8, del1)
        );
    }
}
