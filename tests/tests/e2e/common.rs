//! What every end-to-end test shares: a cluster of its own (name prefix, etcd
//! port, management subnet and state dir), torn down when the test ends, also
//! when it fails, with the services' logs printed on failure.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use railyard_e2e::cluster::etcd::free_port_pair;
use railyard_e2e::cluster::spec::{Delegate, IpvlanMode};
use railyard_e2e::{bins, Cluster, ClusterSpec};

/// Fails (never skips) without root: a green run that created no namespace
/// would claim end-to-end behaviour nobody checked.
pub fn require_root() {
    railyard_test_support::require_root("railyard-e2e");
    assert!(
        bins::on_path("ping"),
        "`ping` is needed by `railyard check` and these tests (install iputils-ping)"
    );
}

/// What `RAILYARD_E2E_DELEGATE` names (ptp when unset), and with ipvlan
/// `RAILYARD_E2E_IPVLAN_MODE` (l3 when unset): the full-kernel tier
/// (`tests/full_kernel.rs`) runs tests of this binary again inside the VM
/// with ipvlan, which this machine's kernel lacks. A value that names no
/// delegate fails the test rather than running another one.
fn delegate_from_env() -> (Delegate, IpvlanMode) {
    let parse = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let delegate = parse("RAILYARD_E2E_DELEGATE").map_or(Delegate::Ptp, |v| {
        Delegate::from_str(&v, true).unwrap_or_else(|e| panic!("RAILYARD_E2E_DELEGATE={v:?}: {e}"))
    });
    let mode = parse("RAILYARD_E2E_IPVLAN_MODE").map_or(IpvlanMode::default(), |v| {
        IpvlanMode::from_str(&v, true)
            .unwrap_or_else(|e| panic!("RAILYARD_E2E_IPVLAN_MODE={v:?}: {e}"))
    });
    (delegate, mode)
}

/// A spec for test `name`: `mgmt_id` must differ between tests (it picks the
/// management subnet; the tests run side by side). Its delegate is ptp unless
/// the environment names another ([`delegate_from_env`]).
pub fn spec(name: &str, mgmt_id: u8) -> ClusterSpec {
    require_root();
    // Two clusters on one management subnet would route over each other.
    static TAKEN: std::sync::Mutex<BTreeSet<u8>> = std::sync::Mutex::new(BTreeSet::new());
    let fresh = TAKEN.lock().map(|mut t| t.insert(mgmt_id)).unwrap_or(true);
    assert!(
        fresh,
        "{name}: management id {mgmt_id} is already used by another test"
    );
    let bin_dir = bins::for_tests().unwrap_or_else(|e| panic!("{e}"));
    let state = PathBuf::from("/tmp/railyard-e2e").join(name);
    let mut s = ClusterSpec::new(state, bin_dir);
    s.prefix = format!("{name}-");
    s.mgmt_id = mgmt_id;
    s.etcd_port = free_port_pair().expect("two free loopback ports for etcd");
    s.hosts = 2;
    s.rails = 2;
    s.pods = 2;
    s.lease_ttl = 3;
    s.grace = "2s".into();
    (s.delegate, s.ipvlan_mode) = delegate_from_env();
    // RAILYARD_E2E_IN_PROCESS=1: railyard-cni makes macvlan and ipvlan itself.
    s.in_process_delegates = std::env::var("RAILYARD_E2E_IN_PROCESS").is_ok_and(|v| v == "1");
    s
}

pub struct TestCluster(Option<Cluster>);

impl TestCluster {
    /// Brings `spec` up, after removing what a killed earlier run of the same
    /// test may have left (its state dir is fixed per test for that reason).
    pub fn up(spec: ClusterSpec) -> TestCluster {
        if let Some(mut stale) = Cluster::open(&spec.state_dir).expect("read old state") {
            let problems = stale.down();
            assert!(
                problems.is_empty(),
                "stale cluster not removed: {problems:?}"
            );
        }
        let dir = spec.state_dir.clone();
        match Cluster::up(spec, &mut |l| eprintln!("[up] {l}")) {
            Ok(c) => TestCluster(Some(c)),
            Err(e) => {
                // Whatever was made is in the state file.
                if let Ok(Some(mut partial)) = Cluster::open(&dir) {
                    eprintln!("{}", partial.log_tails(30));
                    partial.down();
                }
                panic!("cluster did not come up: {e}");
            }
        }
    }

    /// Asserts `railyard check` passes, printing its table either way.
    pub fn assert_connected(&self, peers: Option<usize>) {
        let run = self.check(peers).expect("run railyard check");
        println!("{}", run.table);
        assert!(
            run.ok,
            "railyard check failed:\n{}\n{}",
            run.table, run.stderr
        );
    }

    /// Every address of every attached pod, asserting none is held twice.
    pub fn distinct_addresses(&self) -> BTreeSet<IpAddr> {
        let mut seen = BTreeSet::new();
        for p in &self.state.pods {
            assert_eq!(
                p.addresses.len(),
                self.spec().rails
                    * if self.spec().family == railyard_e2e::Family::Dual {
                        2
                    } else {
                        1
                    },
                "{} has addresses {:?}",
                p.name,
                p.addresses
            );
            for a in &p.addresses {
                assert!(
                    seen.insert(*a),
                    "{a} is held by two pods (second: {})",
                    p.name
                );
            }
        }
        seen
    }

    /// Pings from every pod to every other pod's addresses; panics listing failures.
    pub fn assert_mesh(&self) {
        let failed = self.ping_mesh(8);
        assert!(
            failed.is_empty(),
            "{} pings failed: {failed:?}",
            failed.len()
        );
    }
}

impl Deref for TestCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        self.0.as_ref().expect("cluster")
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        self.0.as_mut().expect("cluster")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if std::thread::panicking() {
                eprintln!("{}", c.log_tails(40));
            }
            let problems = c.down();
            if !problems.is_empty() {
                eprintln!("teardown left: {problems:?}");
            }
        }
    }
}

pub const CONVERGE: Duration = Duration::from_secs(30);
