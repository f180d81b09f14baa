//! The full-kernel tier: clusters whose data path this machine's kernel cannot
//! run (ipvlan), brought up inside the VM (`railyard_e2e::vm`, Debian's kernel
//! under qemu) with the same binaries and checked with `railyard check`: every
//! pod reaches every other pod on every rail, and each host forwards the pods'
//! traffic through the rail's own NIC. Needs qemu and the kernel from
//! `make deps`; fails, never skips, without them.

use std::path::PathBuf;
use std::time::Duration;

use railyard_e2e::vm::{self, VmConfig};

/// ipvlan in modes l3 and l3s (multi-nic-cni's default is l3): 2 hosts x 2
/// rails x 2 pods each, one VM for both.
#[test]
fn ipvlan_l3_and_l3s_pods_reach_every_pod_on_every_rail_across_hosts() {
    let local = env!("CARGO_BIN_EXE_railyard-local");
    let script = format!(
        "set -e\n\
         for mode in l3 l3s; do\n\
           {local} up --state /tmp/rl-$mode --hosts 2 --rails 2 --pods 2 \
             --delegate ipvlan --ipvlan-mode $mode\n\
           echo \"== ipvlan $mode checked\"\n\
           {local} down --state /tmp/rl-$mode\n\
         done\n"
    );
    let cfg = VmConfig {
        cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        timeout: Duration::from_secs(900),
        ..VmConfig::default()
    }
    .inherit_env();
    let out = vm::run(&["sh".into(), "-c".into(), script], &cfg)
        .unwrap_or_else(|e| panic!("the VM did not run: {e}"));
    println!("{}", out.output);
    assert_eq!(
        out.status, 0,
        "the ipvlan clusters failed in the VM:\n{}",
        out.output
    );
    for mode in ["l3", "l3s"] {
        assert!(
            out.output.contains(&format!("== ipvlan {mode} checked")),
            "ipvlan {mode} did not complete:\n{}",
            out.output
        );
    }
    assert_eq!(
        out.output.matches("24 of 24 probes connected").count(),
        2,
        "{}",
        out.output
    );
    assert_eq!(
        out.output
            .matches("8 host paths checked, all leave through the rail's NIC")
            .count(),
        2,
        "{}",
        out.output
    );
}
