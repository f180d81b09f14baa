//! The soak (`railyard_e2e::soak`): pods added and deleted through the real
//! `railyard-cni` on every host at once while route-daemons are killed, etcd
//! members killed and restarted, and rail NICs flapped, with the invariants
//! checked throughout (no address held twice, no leak after GC, routes
//! converge, only retryable errors).
//!
//! - `a_short_soak_under_chaos_keeps_every_invariant`: the CI version, in
//!   `make test`, a few hundred cycles in about a minute.
//! - `soak_benchmark` (ignored): the long run behind docs/benchmarks.md,
//!   `make soak` (`SOAK_CYCLES`, default 3000).
//!
//! Needs root and etcd 3.6 (`make deps`); fails, never skips, without them.
//! The railyard binaries come from `cargo build --bins` (see `bins.rs`).

// The end-to-end tests' set-up (spec, teardown on failure), shared as source.
#[allow(dead_code)]
#[path = "e2e/common.rs"]
mod common;

use std::time::Duration;

use railyard_e2e::soak::{self, SoakConfig};

use common::{spec, TestCluster};

/// A cluster for the soak: 3 hosts x 2 rails on a three-member etcd, with
/// production-like leases and graces, so that a daemon dead for a moment or
/// a NIC without its address for a moment renumbers nothing and withdraws
/// no route.
fn soak_cluster(name: &str, mgmt_id: u8) -> TestCluster {
    let mut s = spec(name, mgmt_id);
    s.etcd_members = 3;
    s.hosts = 3;
    s.rails = 2;
    s.pods = 0;
    s.lease_ttl = 5;
    s.grace = "60s".into();
    s.nic_grace = Some("30s".into());
    TestCluster::up(s)
}

fn cycles(default: usize) -> usize {
    std::env::var("RAILYARD_SOAK_CYCLES")
        .ok()
        .map(|v| v.parse().expect("RAILYARD_SOAK_CYCLES is a number"))
        .unwrap_or(default)
}

fn soak_and_judge(c: &mut TestCluster, config: SoakConfig) {
    let report = soak::run(c, &config).unwrap_or_else(|e| panic!("the soak stopped: {e}"));
    println!("\n{report}\n");
    assert!(
        report.violations.is_empty(),
        "{} invariant violations:\n{}",
        report.violations.len(),
        report.violations.join("\n")
    );
    assert_eq!(report.cycles, config.cycles, "every cycle ran");
    assert_eq!(
        report.faults.len(),
        3,
        "every kind of fault was injected at least once: {:?} (too few cycles?)",
        report.faults
    );
}

/// A soak of `cycles` cycles (`RAILYARD_SOAK_CYCLES` overrides it), six
/// runtimes each keeping two pods, on a cluster of its own.
fn soak(name: &str, mgmt_id: u8, default_cycles: usize, fault_for: Duration) {
    let mut c = soak_cluster(name, mgmt_id);
    let config = SoakConfig {
        cycles: cycles(default_cycles),
        workers: 6,
        hold: 2,
        fault_for,
    };
    soak_and_judge(&mut c, config);
}

#[test]
fn a_short_soak_under_chaos_keeps_every_invariant() {
    soak("soak", 226, 500, Duration::from_secs(1));
}

#[test]
#[ignore = "the long soak, a benchmark: make soak"]
fn soak_benchmark() {
    soak("soak-long", 227, 3000, Duration::from_secs(2));
}
