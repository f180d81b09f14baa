//! The disk under a route-daemon's allocation log fills up while pods run
//! (host 0's `--state-dir` is a small tmpfs: `ClusterSpec::state_tmpfs_kib`).
//!
//! What must hold, through the real plugins: once a log write fails, STATUS
//! says not ready (50) and ADD fails with "try again later" (11) saying the log
//! cannot be written, leaving nothing on the pod and nothing held; a DEL of a
//! running pod is accepted (its release is queued, its addresses stay held).
//! Once space is free, without a restart, within a few seconds: STATUS is
//! ready, ADD works, the queued release has landed (the pod's addresses are
//! free, its etcd record gone), what callers were told is still held, and no
//! address is held twice.
//!
//! Before the fix the first failed write made the daemon refuse everything
//! (DEL included) until someone restarted it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use railyard_e2e::cluster::pods::wait_ready;
use railyard_e2e::cluster::tmpfs::is_mount_point;
use railyard_e2e::ClusterSpec;

use crate::common::{spec, TestCluster, CONVERGE};
use crate::plugin_exec::{
    cni_add, cni_files, daemon_holds, mirrored, result_addresses, run, wait_mirror, Outcome, Pod,
    NOT_READY, TRY_AGAIN_LATER,
};

/// Host 0's state dir: room for the log of a few pods, little more.
const TMPFS_KIB: u64 = 512;
/// How long the daemon may take to notice the space and serve again (it
/// retries once a second).
const RECOVERY: Duration = Duration::from_secs(5);

/// Writes a file into `dir` until the file system is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let chunk = [0u8; 4096];
    let mut written = 0usize;
    while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {
        written += chunk.len();
        assert!(
            written <= 2 * 1024 * TMPFS_KIB as usize,
            "{} took {written} bytes and is not full: not the small tmpfs",
            dir.display()
        );
    }
    path
}

/// `railyard-ipam` ADD of container `cid` on host 0 (no pod interfaces: the
/// cheap way to make the daemon write records).
fn ipam_add(spec: &ClusterSpec, cid: &str) -> Outcome {
    let netns = format!("/run/netns/{}", spec.host(0));
    run(spec, 0, "railyard-ipam", "ADD", cid, &netns, None)
}

fn status(spec: &ClusterSpec, plugin: &str) -> Result<(), (u64, String)> {
    run(spec, 0, plugin, "STATUS", "", "", None).map(|_| ())
}

#[test]
fn a_full_disk_under_the_allocation_log_refuses_adds_queues_dels_and_recovers_without_a_restart() {
    let mut s = spec("e2e-diskfull", 253);
    s.pods = 2;
    s.state_tmpfs_kib.insert(0, TMPFS_KIB);
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    let state = spec.daemon_state(0);
    assert!(
        is_mount_point(&state),
        "{} is not a mount point: the daemon's log is not on the small tmpfs",
        state.display()
    );
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready");
    let daemon = c
        .state
        .process(&spec.host(0))
        .expect("host 0's daemon")
        .clone();
    let leaving = spec.pod(0, 0);
    let before = mirrored(&mut c);
    let leaving_addrs = before
        .get(&leaving)
        .cloned()
        .unwrap_or_else(|| panic!("{leaving} not mirrored: {before:?}"));

    // The disk fills. The log's last page may still take a record or two:
    // those ADDs were answered and must keep their addresses.
    let filler = fill(&state);
    let mut told = BTreeMap::<String, BTreeSet<IpAddr>>::new();
    let mut refused = None;
    for k in 0..300 {
        let cid = format!("probe-{k:03}");
        match ipam_add(&spec, &cid) {
            Ok(r) => {
                told.insert(cid, result_addresses(&r));
            }
            Err(e) => {
                refused = Some((cid, e));
                break;
            }
        }
    }
    let (probe, (code, msg)) = refused.expect("300 ADDs fit a full 512 KiB tmpfs");
    println!(
        "{} ADDs answered on the full disk, then {probe}: {code} {msg}",
        told.len()
    );
    assert_eq!(code, TRY_AGAIN_LATER, "{probe}: {msg}");
    assert!(msg.contains("cannot be written"), "{probe}: {msg}");

    // Through railyard-cni: refused the same way, nothing on the pod.
    let pod = Pod::new(format!("{}refused", spec.prefix));
    let (code, msg) = cni_add(&spec, 0, &pod, None).expect_err("railyard-cni ADD on a full disk");
    assert_eq!(code, TRY_AGAIN_LATER, "{msg}");
    assert!(msg.contains("cannot be written"), "{msg}");
    assert!(
        pod.links().is_empty(),
        "the refused ADD left {:?}",
        pod.links()
    );
    assert_eq!(
        cni_files(&spec, &pod.name),
        Vec::<String>::new(),
        "the refused ADD left railyard-cni state"
    );
    for plugin in ["railyard-cni", "railyard-ipam"] {
        let (code, msg) = status(&spec, plugin)
            .err()
            .unwrap_or_else(|| panic!("{plugin} STATUS says ready on a full disk"));
        assert_eq!(code, NOT_READY, "{plugin} STATUS: {msg}");
    }

    // A runtime deletes a pod meanwhile: accepted, the release queued, the
    // addresses still held (the mirror keeps the record).
    let failed = c
        .detach_pods(Some(std::slice::from_ref(&leaving)), 1)
        .expect("detach");
    assert!(failed.is_empty(), "DEL on a full disk failed: {failed:?}");
    // The runtime's DEL after the refused ADD succeeds too.
    run(
        &spec,
        0,
        "railyard-cni",
        "DEL",
        &pod.name,
        &pod.path(),
        None,
    )
    .unwrap_or_else(|(code, msg)| panic!("DEL of the refused pod: {code}: {msg}"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        mirrored(&mut c).get(&leaving),
        Some(&leaving_addrs),
        "a queued release must keep the addresses held until it is durable"
    );
    let (code, msg) =
        status(&spec, "railyard-cni").expect_err("STATUS still not ready while the disk is full");
    assert_eq!(code, NOT_READY, "{msg}");

    // Space comes back; nobody restarts anything, and nobody asks the daemon
    // anything either: it retries by itself, and the queued release lands (the
    // mirror deletes the record once the release is durable).
    std::fs::remove_file(&filler).expect("remove the filler");
    let start = Instant::now();
    wait_mirror(&mut c, &format!("no {leaving}"), RECOVERY, |m| {
        !m.contains_key(&leaving)
    });
    println!(
        "the queued release landed {:?} after space was freed",
        start.elapsed()
    );
    status(&spec, "railyard-cni")
        .unwrap_or_else(|(code, msg)| panic!("STATUS once the disk has room: {code}: {msg}"));
    status(&spec, "railyard-ipam")
        .unwrap_or_else(|(code, msg)| panic!("IPAM STATUS once the disk has room: {code}: {msg}"));
    let now = c
        .state
        .process(&spec.host(0))
        .expect("host 0's daemon")
        .clone();
    assert_eq!(now, daemon, "the daemon was restarted");
    assert!(
        c.running_hosts().contains(&0),
        "host 0's daemon is not running"
    );

    let after = Pod::new(format!("{}after", spec.prefix));
    let r = cni_add(&spec, 0, &after, None)
        .unwrap_or_else(|(code, msg)| panic!("ADD once the disk has room: {code}: {msg}"));
    let after_addrs = result_addresses(&r);
    assert_eq!(after_addrs.len(), spec.rails, "{after_addrs:?}");
    assert_eq!(after.addresses(), after_addrs);

    // The queued release landed: not held, not mirrored.
    assert!(
        !daemon_holds(&spec, 0, &leaving),
        "{leaving} is still held after its DEL"
    );
    for cid in [&probe, &pod.name] {
        assert!(!daemon_holds(&spec, 0, cid), "the refused {cid} is held");
    }
    let mut want: BTreeMap<String, BTreeSet<IpAddr>> = before;
    want.remove(&leaving);
    want.extend(told);
    want.insert(after.name.clone(), after_addrs);
    let m = wait_mirror(&mut c, "the pods after the recovery", RECOVERY, |m| {
        *m == want
    });
    // Its addresses are free: nobody holds them, unless the new pod got them.
    for (cid, addrs) in &m {
        if *cid != after.name {
            assert!(
                addrs.is_disjoint(&leaving_addrs),
                "{cid} holds {addrs:?}, {leaving} had {leaving_addrs:?}"
            );
        }
    }
}
