//! The full-kernel tier: clusters whose data path this machine's kernel cannot
//! run (ipvlan, VLAN rails, bonded rails), brought up inside the VM
//! (`railyard_e2e::vm`, Debian's kernel under qemu) with the same binaries and
//! checked with `railyard check`: every pod reaches every other pod on every
//! rail, and each host forwards the pods' traffic through the rail's own NIC.
//! One VM runs every cluster in turn (a boot is cheap, a cluster under
//! software emulation is not). Needs qemu and the kernel from `make deps`;
//! fails, never skips, without them.

use std::path::PathBuf;
use std::time::Duration;

use railyard_e2e::vm::{self, VmConfig};

/// (name, railyard-local flags) of each cluster the tier brings up.
const CLUSTERS: [(&str, &str); 4] = [
    // multi-nic-cni's default data path.
    ("ipvlan-l3", "--pods 2 --delegate ipvlan --ipvlan-mode l3"),
    ("ipvlan-l3s", "--pods 2 --delegate ipvlan --ipvlan-mode l3s"),
    // Rails on VLAN sub-interfaces and on bonds, as SpiderMultusConfig's
    // ifacer makes them (here the harness makes them; ptp pods).
    ("vlan", "--pods 1 --vlan 42"),
    ("bond", "--pods 1 --bond"),
];

#[test]
fn ipvlan_vlan_and_bonded_rails_reach_every_pod_on_every_rail_across_hosts() {
    let local = env!("CARGO_BIN_EXE_railyard-local");
    let mut script = String::from("set -e\n");
    for (name, flags) in CLUSTERS {
        script.push_str(&format!(
            "{local} up --state /tmp/rl-{name} --hosts 2 --rails 2 {flags}\n\
             echo '== {name} checked'\n\
             {local} down --state /tmp/rl-{name}\n"
        ));
    }
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
    assert_eq!(
        out.output
            .matches("host paths checked, all leave through the rail's NIC")
            .count(),
        CLUSTERS.len(),
        "{}",
        out.output
    );
}
