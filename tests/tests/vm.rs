//! The full-kernel VM itself: it boots, shares this machine's files, has the
//! modules this kernel lacks, and returns the command's output and status.
//! Needs qemu and Debian's kernel (`make deps`); fails, never skips, without.

use railyard_e2e::vm::{self, VmConfig};

#[test]
fn a_command_runs_in_the_full_kernel_with_ipvlan_vlan_and_bond() {
    let script = "ip link add d0 type dummy \
        && ip link add link d0 name iv0 type ipvlan mode l3 \
        && ip link add link d0 name d0.7 type vlan id 7 \
        && ip link add b0 type bond \
        && ip -o link show | cut -d: -f2 | tr -d ' ' \
        && test -f Cargo.toml && echo workspace-visible \
        && exit 7";
    let cfg = VmConfig {
        cwd: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
        ..VmConfig::default()
    };
    let out = vm::run(&["sh".into(), "-c".into(), script.into()], &cfg)
        .unwrap_or_else(|e| panic!("the VM did not run: {e}"));
    assert_eq!(
        out.status, 7,
        "exit status is the command's:\n{}",
        out.output
    );
    assert_ne!(
        out.kernel,
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        "the VM runs another kernel than this machine's"
    );
    for link in ["iv0@d0", "d0.7@d0", "b0", "workspace-visible"] {
        assert!(
            out.output.contains(link),
            "{link} missing from:\n{}",
            out.output
        );
    }
    assert!(
        !out.output.contains("Power down"),
        "kernel noise leaked:\n{}",
        out.output
    );
}
