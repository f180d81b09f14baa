//! The full-kernel tier: clusters whose data path this machine's kernel cannot
//! run (ipvlan, VLAN rails, bonded rails), brought up inside the VM
//! (`railyard_e2e::vm`, Debian's kernel under qemu) with the same binaries and
//! checked with `railyard check`: every pod reaches every other pod on every
//! rail, and each host forwards the pods' traffic through the rail's own NIC.
//! One VM runs every cluster in turn (a boot is cheap, a cluster under
//! software emulation is not), then the end-to-end membership tests again
//! on ipvlan: a host joining and leaving, and a route-daemon that crashes and
//! comes back (`tests/e2e/membership.rs`, run from its own test binary with
//! `RAILYARD_E2E_DELEGATE=ipvlan`). In between, the route-daemon's kernel
//! conformance cases for rail interfaces run on netlink, with the VLAN and
//! bond ones this machine's kernel cannot (its `kernel_netlink` test binary,
//! built by `cargo test -p railyard-route-daemon`). Needs qemu and the kernel
//! from `make deps`; fails, never skips, without them.

use std::path::PathBuf;
use std::time::Duration;

use railyard_e2e::vm::{self, VmConfig};

/// (name, railyard-local flags) of each cluster the tier brings up.
const CLUSTERS: [(&str, &str); 5] = [
    // multi-nic-cni's default data path.
    ("ipvlan-l3", "--pods 2 --delegate ipvlan --ipvlan-mode l3"),
    // ipvlan l3 without gateways (`spec.ipam.gateway: none`): no address of
    // a block is reserved, the pods get device routes, and the parent's L3
    // stack routes them all the same. Dual stack: both families without.
    (
        "ipvlan-l3-no-gateway",
        "--pods 2 --delegate ipvlan --ipvlan-mode l3 --gateway none --dual-stack",
    ),
    // l3s with railyard-cni making the ipvlan links itself, dual stack.
    (
        "ipvlan-l3s",
        "--pods 2 --delegate ipvlan --ipvlan-mode l3s --in-process-delegates --dual-stack",
    ),
    // Rails on VLAN sub-interfaces and on bonds, as SpiderMultusConfig's
    // ifacer makes them: the route-daemons make them from the network's
    // spec.ifacer and move the rail addresses onto them (ptp pods, dual
    // stack: the IPv6 rail address moves with the IPv4 one).
    ("vlan", "--pods 1 --vlan 42 --dual-stack"),
    ("bond", "--pods 1 --bond --dual-stack"),
];

/// The end-to-end tests that run again on ipvlan in the VM.
const ON_IPVLAN: &str = "membership::";

/// The route-daemon's kernel conformance cases for rail interfaces, over
/// netlink: the two that need 8021q and bonding (ignored on a build machine
/// without them) and the two that run everywhere, for a count of 4.
const RAIL_LINK_CASES: [&str; 4] = [
    "rail_links_are_listed_and_addresses_move_between_them",
    "rail_link_steps_are_refused_not_forced",
    "vlans_are_made_marked_and_found_again",
    "bonds_take_their_slaves_and_the_moved_addresses",
];

/// This package's `e2e` test binary, built beside this one by the same
/// `cargo test` (the newest, should several builds be there).
fn e2e_binary() -> PathBuf {
    test_binary("e2e", "cargo test -p railyard-e2e --no-run")
}

/// The newest test binary `<name>-<hash>` beside this one; panics naming
/// `build` when there is none.
fn test_binary(name: &str, build: &str) -> PathBuf {
    let me = std::env::current_exe().expect("this test binary's path");
    let deps = me.parent().expect("target/<profile>/deps");
    let name_prefix = format!("{name}-");
    let newest = std::fs::read_dir(deps)
        .expect("read target/<profile>/deps")
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(name_prefix.as_str())
                .is_some_and(|hash| hash.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    newest.map(|(_, p)| p).unwrap_or_else(|| {
        panic!(
            "no {name} test binary in {}: build it with `{build}`",
            deps.display()
        )
    })
}

#[test]
fn ipvlan_vlan_and_bonded_rails_reach_every_pod_and_ipvlan_hosts_join_leave_and_restart() {
    let local = env!("CARGO_BIN_EXE_railyard-local");
    let mut script = String::from("set -e\n");
    for (name, flags) in CLUSTERS {
        script.push_str(&format!(
            "{local} up --state /tmp/rl-{name} --hosts 2 --rails 2 {flags}\n\
             echo '== {name} checked'\n\
             {local} down --state /tmp/rl-{name}\n"
        ));
    }
    let conformance = test_binary(
        "kernel_netlink",
        "cargo test -p railyard-route-daemon --test kernel_netlink --no-run",
    );
    script.push_str(&format!(
        "{} --include-ignored --exact {} --test-threads=1 --color=never\n\
         echo '== rail link conformance checked'\n",
        conformance.display(),
        RAIL_LINK_CASES.join(" ")
    ));
    script.push_str(&format!(
        "RAILYARD_E2E_DELEGATE=ipvlan {} {ON_IPVLAN} --test-threads=1 --color=never\n",
        e2e_binary().display()
    ));
    let cfg = VmConfig {
        cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        timeout: Duration::from_secs(1200),
        ..VmConfig::default()
    }
    .inherit_env();
    let out = vm::run(&["sh".into(), "-c".into(), script], &cfg)
        .unwrap_or_else(|e| panic!("the VM did not run: {e}"));
    println!("{}", out.output);
    assert_eq!(out.status, 0, "a cluster failed in the VM:\n{}", out.output);
    for (name, _) in CLUSTERS {
        assert!(
            out.output.contains(&format!("== {name} checked")),
            "{name} did not complete:\n{}",
            out.output
        );
    }
    // "N of M probes connected", once per cluster, with N == M > 0.
    let probes: Vec<(u32, u32)> = out
        .output
        .lines()
        .filter_map(|l| {
            let (n, rest) = l.split_once(" of ")?;
            let m = rest.strip_suffix(" probes connected")?;
            Some((n.trim().parse().ok()?, m.trim().parse().ok()?))
        })
        .collect();
    assert_eq!(probes.len(), CLUSTERS.len(), "{}", out.output);
    assert!(probes.iter().all(|&(n, m)| n == m && m > 0), "{probes:?}");
    // The clusters' checks, and the membership tests' own (they check too).
    assert!(
        out.output
            .matches("host paths checked, all leave through the rail's NIC")
            .count()
            >= CLUSTERS.len(),
        "{}",
        out.output
    );
    assert!(
        out.output.contains("== rail link conformance checked")
            && out.output.contains("test result: ok. 4 passed; 0 failed"),
        "the rail-interface conformance cases (VLAN, bond) did not all pass on netlink:\n{}",
        out.output
    );
    assert!(
        out.output.contains("test result: ok. 2 passed; 0 failed"),
        "the membership tests did not both pass on ipvlan:\n{}",
        out.output
    );
}
