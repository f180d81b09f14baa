//! The scale run behind `railyard-local bench`: how long a cluster of many pods
//! takes to attach, prove connected, and delete, and how many operations fail.
//! Pods are attached all at once (a few at a time per CPU), as a burst of pod
//! creations across many kubelets would, but with no kubelet or API server in
//! the path: the figures are railyard plus the reference plugins.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ClusterSpec};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub hosts: usize,
    pub rails: usize,
    pub pods: usize,
    /// `up` without pods: topology, etcd, planner, daemons, routes everywhere.
    pub cluster_ready: Duration,
    /// Every CNI ADD returned.
    pub attached: Duration,
    /// ... and every allocation is mirrored to etcd.
    pub mirrored: Duration,
    pub check: Duration,
    pub check_ok: bool,
    /// The check's summary lines (the table's last lines).
    pub check_summary: String,
    /// Cross-host sample: probes, failures and time (`railyard check --peers`
    /// probes the next pods in name order, mostly on the same host).
    pub cross_probes: usize,
    pub cross_failed: usize,
    pub cross: Duration,
    /// Every CNI DEL returned.
    pub deleted: Duration,
    /// ... and etcd holds no allocation of the network.
    pub released: Duration,
    /// Failed ADDs and DELs.
    pub failures: usize,
    pub failure_samples: Vec<String>,
    /// Addresses handed to two pods at once (must be 0).
    pub duplicates: usize,
}

/// Runs the scale scenario on a fresh cluster of `spec` (`spec.pods` per host).
pub fn run(
    spec: ClusterSpec,
    peers: usize,
    parallel: usize,
    keep: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    let pods_per_host = spec.pods;
    let mut bare = spec.clone();
    bare.pods = 0;
    let start = Instant::now();
    let state_dir = bare.state_dir.clone();
    let mut c = match Cluster::up(bare, progress) {
        Ok(c) => c,
        Err(e @ crate::Error::AlreadyRunning(_)) => return Err(e),
        Err(e) => {
            // A measurement leaves nothing behind, also when it cannot start.
            if let Ok(Some(mut partial)) = Cluster::open(&state_dir) {
                partial.down();
            }
            return Err(e);
        }
    };
    let cluster_ready = start.elapsed();
    let result = measure(
        &mut c,
        pods_per_host,
        peers,
        parallel,
        cluster_ready,
        progress,
    );
    if !keep {
        let problems = c.down();
        if !problems.is_empty() {
            progress(&format!("down left: {}", problems.join("; ")));
        }
    }
    result
}

fn measure(
    c: &mut Cluster,
    pods_per_host: usize,
    peers: usize,
    parallel: usize,
    cluster_ready: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    let hosts = c.spec().hosts;
    let jobs: Vec<(usize, usize)> = (0..hosts)
        .flat_map(|i| (0..pods_per_host).map(move |k| (i, k)))
        .collect();
    progress(&format!(
        "attaching {} pods, {parallel} at a time",
        jobs.len()
    ));
    let t = Instant::now();
    let (attached, mut failure_samples) = c.try_attach_pods(&jobs, parallel)?;
    let attached_at = t.elapsed();
    c.wait_mirrored(Duration::from_secs(120))?;
    let mirrored = t.elapsed();
    progress(&format!(
        "{} attached in {:.1} s, mirrored at {:.1} s",
        attached.len(),
        attached_at.as_secs_f64(),
        mirrored.as_secs_f64()
    ));
    let mut seen = BTreeSet::new();
    let duplicates = attached
        .iter()
        .flat_map(|p| p.addresses.iter())
        .filter(|a| !seen.insert(**a))
        .count();
    progress(&format!("railyard check --peers {peers}"));
    let check = c.check(Some(peers))?;
    let check_summary = check
        .table
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    progress(&format!(
        "check done in {:.1} s",
        check.elapsed.as_secs_f64()
    ));
    let t = Instant::now();
    let (cross_probes, cross_failed) = c.ping_across_hosts(2, 32);
    let cross = t.elapsed();
    progress(&format!(
        "{cross_probes} cross-host pings in {:.1} s, {} failed",
        cross.as_secs_f64(),
        cross_failed.len()
    ));
    let t = Instant::now();
    let del_failures = c.detach_pods(None, parallel)?;
    let deleted = t.elapsed();
    c.wait_mirrored(Duration::from_secs(120))?;
    let released = t.elapsed();
    progress(&format!(
        "deleted in {:.1} s, released in etcd at {:.1} s",
        deleted.as_secs_f64(),
        released.as_secs_f64()
    ));
    let failures = failure_samples.len() + del_failures.len();
    failure_samples.extend(del_failures);
    failure_samples.truncate(5);
    Ok(BenchReport {
        hosts,
        rails: c.spec().rails,
        pods: jobs.len(),
        cluster_ready,
        attached: attached_at,
        mirrored,
        check: check.elapsed,
        check_ok: check.ok,
        check_summary,
        cross_probes,
        cross_failed: cross_failed.len(),
        cross,
        deleted,
        released,
        failures,
        failure_samples,
        duplicates,
    })
}

impl BenchReport {
    pub fn markdown(&self) -> String {
        let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let mut out = format!(
            "| {} hosts x {} rails, {} pods | time |\n|---|---|\n",
            self.hosts, self.rails, self.pods
        );
        let rows = [
            (
                "cluster up (etcd, planner, daemons, routes)",
                s(self.cluster_ready),
            ),
            ("all pods attached (CNI ADD returned)", s(self.attached)),
            ("all allocations mirrored to etcd", s(self.mirrored)),
            ("`railyard check` (connected)", s(self.check)),
            ("attached and connected", s(self.mirrored + self.check)),
            (
                "cross-host sample (each pod to a pod on each of the next 2 hosts, every rail)",
                s(self.cross),
            ),
            ("all pods deleted (CNI DEL returned)", s(self.deleted)),
            ("all allocations released in etcd", s(self.released)),
        ];
        for (what, t) in rows {
            out.push_str(&format!("| {what} | {t} |\n"));
        }
        out.push_str(&format!(
            "\ncheck {}; cross-host pings failed: {} of {}; CNI failures: {}; duplicate addresses: {}\n",
            if self.check_ok { "passed" } else { "FAILED" },
            self.cross_failed,
            self.cross_probes,
            self.failures,
            self.duplicates
        ));
        if !self.check_summary.is_empty() {
            out.push_str(&format!("```\n{}\n```\n", self.check_summary));
        }
        for f in &self.failure_samples {
            out.push_str(&format!("- {f}\n"));
        }
        out
    }
}
