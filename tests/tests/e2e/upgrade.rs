//! Upgrades and downgrades across format versions (`docs/etcd-keys.md` and
//! `docs/design/allocation-log.md`, "Format versions").
//!
//! Two tiers, for a reason of time:
//!
//! - `a_rolling_upgrade_from_the_previous_release_keeps_every_pod` runs the
//!   real previous release: a cluster of its binaries, then the planner and
//!   one daemon of this build beside daemons of the old one, then all new.
//!   The old binaries are built from a git worktree of that commit
//!   (`make test-upgrade`, `tests/upgrade-base.sh`), which takes about 4
//!   minutes on CI's 2 cores from a fresh clone, over the 3 minutes this
//!   issue may add to `make test`. So it is opt-in (ignored unless
//!   `RAILYARD_UPGRADE_FROM` names the old binaries), and `make test` runs
//!   its cheap equivalents instead: the previous release's log and etcd
//!   values, committed under `fixtures/format-v1/`, read by this build and
//!   written back byte-compatible (`route-daemon/allocdb/tests/format.rs`,
//!   `route-daemon/tests/format_versions.rs`,
//!   `planner/tests/format_versions.rs`), and the test below.
//! - `a_downgrade_meets_newer_data_and_refuses_it_untouched` runs in
//!   `make test`: this build's daemon and planner meet a log and a plan value
//!   of a newer version, as after a rollback from a newer release, and stop
//!   with a clear error instead of rewriting them; with the data restored they
//!   run again and every pod kept its addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use railyard_core::keys;
use railyard_e2e::cluster::pods::wait_ready;
use railyard_e2e::cluster::process;
use railyard_e2e::{bins, Cluster};
use railyard_store::{EtcdConfig, EtcdStore, Store};

use crate::common::{spec, TestCluster, CONVERGE};

/// Every pod's addresses, by pod name.
fn addresses(c: &Cluster) -> BTreeMap<String, Vec<IpAddr>> {
    c.state
        .pods
        .iter()
        .map(|p| (p.name.clone(), p.addresses.clone()))
        .collect()
}

/// Every allocation record in etcd: container ID to its addresses.
fn records(c: &mut Cluster) -> BTreeMap<String, Vec<IpAddr>> {
    let network = c.spec().network.clone();
    c.observer()
        .expect("observer")
        .allocations(&network)
        .expect("allocations")
        .iter()
        .map(|r| (r.id.container_id.clone(), r.addresses().collect()))
        .collect()
}

/// Runs what follows from the binaries in `dir` (the daemons and the planner
/// started after this, the CNI plugins of pods attached after this, and
/// `railyard check`).
fn use_bins(c: &mut Cluster, dir: &Path) {
    c.state.spec.bin_dir = dir.to_path_buf();
    c.state.save().expect("save state");
}

/// Restarts host `i`'s daemon from `dir`'s binary and waits until it serves.
fn restart_daemon(c: &mut Cluster, i: usize, dir: &Path) {
    c.stop_daemon(i);
    use_bins(c, dir);
    c.start_daemon(i).expect("start daemon");
    wait_ready(c.spec(), i, CONVERGE).expect("daemon ready");
}

/// The binary the process of `role` runs (a daemon's `ip netns exec` execs
/// into it).
fn binary(c: &Cluster, role: &str) -> PathBuf {
    let pid = c.state.process(role).expect("started").pid;
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_else(|e| panic!("{role}: {e}"))
}

fn daemon_binary(c: &Cluster, i: usize) -> PathBuf {
    binary(c, &c.spec().host(i))
}

/// Waits until etcd holds exactly the attached pods and every host has its
/// routes, then runs `railyard check` (every pod to every pod on every rail).
fn assert_cluster_whole(c: &mut TestCluster) {
    let hosts: Vec<usize> = (0..c.spec().hosts).collect();
    c.wait_converged(&hosts, CONVERGE).expect("routes converge");
    c.wait_mirrored(CONVERGE).expect("allocations mirrored");
    c.distinct_addresses();
    c.assert_connected(None);
}

/// The opt-in tier: the previous release's binaries are in
/// `$RAILYARD_UPGRADE_FROM` (`make test-upgrade` builds them).
#[test]
#[ignore = "needs the previous release's binaries (about 4 min to build): make test-upgrade"]
fn a_rolling_upgrade_from_the_previous_release_keeps_every_pod() {
    let old = PathBuf::from(std::env::var_os("RAILYARD_UPGRADE_FROM").expect(
        "RAILYARD_UPGRADE_FROM: the previous release's binaries (make test-upgrade builds them)",
    ));
    bins::check_dir(&old).unwrap_or_else(|e| panic!("{e}"));
    let mut s = spec("e2e-upgrade", 247);
    let new = s.bin_dir.clone();
    s.bin_dir = old.clone();
    s.hosts = 3;
    s.pods = 2;
    let mut c = TestCluster::up(s);
    for i in 0..c.spec().hosts {
        assert_eq!(daemon_binary(&c, i), old.join("railyard-route-daemon"));
    }
    assert_cluster_whole(&mut c);
    let before = addresses(&c);

    // The control plane first, as a rollout would: the planner takes over the
    // old planner's plan.
    c.kill_planner(0);
    use_bins(&mut c, &new);
    c.start_planner(0).expect("start the new planner");
    // One host's daemon is upgraded; the others stay old. The new daemon
    // replays the old daemon's log and takes the old records in etcd over.
    restart_daemon(&mut c, 0, &new);
    // Old and new side by side: a pod on each kind of host, each through its
    // host's own plugins, reachable from every pod.
    use_bins(&mut c, &new);
    c.attach_pods(&[(0, 2)], 1).expect("a pod on the new host");
    use_bins(&mut c, &old);
    c.attach_pods(&[(1, 2)], 1).expect("a pod on an old host");
    assert_eq!(
        binary(&c, &Cluster::planner_role(0)),
        new.join("railyard-planner")
    );
    assert_eq!(daemon_binary(&c, 0), new.join("railyard-route-daemon"));
    for i in 1..c.spec().hosts {
        assert_eq!(daemon_binary(&c, i), old.join("railyard-route-daemon"));
    }
    assert_cluster_whole(&mut c);

    // All new.
    for i in 1..c.spec().hosts {
        restart_daemon(&mut c, i, &new);
    }
    use_bins(&mut c, &new);
    c.attach_pods(&[(2, 2)], 1)
        .expect("a pod after the upgrade");
    for i in 0..c.spec().hosts {
        assert_eq!(daemon_binary(&c, i), new.join("railyard-route-daemon"));
    }
    assert_cluster_whole(&mut c);

    // Nothing was lost or moved: every pod from before holds what it held, in
    // etcd too, and no daemon had to rebuild its log from etcd.
    let now = records(&mut c);
    for (pod, addrs) in &before {
        let mut held = now.get(pod).cloned().unwrap_or_default();
        let mut had = addrs.clone();
        held.sort();
        had.sort();
        assert_eq!(held, had, "{pod} changed addresses across the upgrade");
    }
    for i in 0..c.spec().hosts {
        let log = std::fs::read_to_string(c.spec().log(&c.spec().host(i))).unwrap_or_default();
        assert!(
            !log.contains("recovered them from etcd"),
            "host {i}'s new daemon did not read the old log"
        );
    }
}

/// Raw etcd access, for a value no railyard binary of this build writes.
struct Etcd {
    rt: tokio::runtime::Runtime,
    store: EtcdStore,
}

impl Etcd {
    fn new(c: &Cluster) -> Etcd {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cfg = EtcdConfig::new([c.spec().local_endpoint()]);
        let store = rt.block_on(EtcdStore::connect(cfg)).expect("etcd");
        Etcd { rt, store }
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let kv = self.rt.block_on(self.store.get(key)).expect("get");
        kv.unwrap_or_else(|| panic!("{key} is missing")).value
    }

    fn put(&self, key: &str, value: Vec<u8>) {
        self.rt
            .block_on(self.store.put(key, value, None))
            .expect("put");
    }
}

/// Waits until the process of `role` has exited, and returns its log.
fn wait_exited(c: &Cluster, role: &str) -> String {
    let start = Instant::now();
    let record = c.state.process(role).expect("started").clone();
    while process::is_alive(&record) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{role} kept running over data of a newer format"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(c.spec().log(role)).unwrap_or_default()
}

fn assert_says(log: &str, who: &str, parts: &[&str]) {
    for part in parts {
        assert!(log.contains(part), "{who}'s log lacks {part:?}:\n{log}");
    }
}

#[test]
fn a_downgrade_meets_newer_data_and_refuses_it_untouched() {
    let mut s = spec("e2e-newer-format", 248);
    s.hosts = 2;
    s.pods = 1;
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    let before = addresses(&c);

    // Host 0's log as a newer release would leave it (this build writes
    // and reads allocation log version 2).
    c.stop_daemon(0);
    let log = spec.daemon_state(0).join("allocations/allocations.log");
    let original = std::fs::read(&log).expect("read the log");
    assert_eq!(&original[..8], b"RYALOG02");
    let mut newer = original.clone();
    newer[6..8].copy_from_slice(b"03");
    std::fs::write(&log, &newer).expect("write the log");
    c.start_daemon(0).expect("spawn the daemon");
    let said = wait_exited(&c, &spec.host(0));
    let path = log.display().to_string();
    assert_says(
        &said,
        "the daemon",
        &[&path, "format version 3", "versions up to 2"],
    );
    assert_eq!(std::fs::read(&log).unwrap(), newer, "the log was touched");

    // A plan value of a newer release stops a planner that would lead over it.
    let etcd = Etcd::new(&c);
    let key = keys::plan_host(&spec.network, &spec.host(1));
    let plan = etcd.get(&key);
    let mut value: serde_json::Value = serde_json::from_slice(&plan).unwrap();
    value["formatVersion"] = 2.into();
    let newer_plan = serde_json::to_vec(&value).unwrap();
    etcd.put(&key, newer_plan.clone());
    c.kill_planner(0);
    c.start_planner(0).expect("spawn the planner");
    let said = wait_exited(&c, &Cluster::planner_role(0));
    assert_says(
        &said,
        "the planner",
        &[&key, "format version 2", "versions up to 1"],
    );
    assert_eq!(etcd.get(&key), newer_plan, "the plan value was rewritten");

    // Rolled forward again (here: the data restored), both run and every pod
    // kept its addresses.
    std::fs::write(&log, &original).expect("restore the log");
    etcd.put(&key, plan);
    c.start_planner(0).expect("start the planner");
    c.start_daemon(0).expect("start the daemon");
    wait_ready(&spec, 0, CONVERGE).expect("daemon ready");
    c.attach_pods(&[(0, 1), (1, 1)], 2).expect("new pods");
    assert_cluster_whole(&mut c);
    let now = records(&mut c);
    for (pod, addrs) in &before {
        let mut held = now.get(pod).cloned().unwrap_or_default();
        let mut had = addrs.clone();
        held.sort();
        had.sort();
        assert_eq!(held, had, "{pod} changed addresses");
    }
}
