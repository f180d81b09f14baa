//! Waiting for the cluster to reach a state, judged from the outside: the plan in
//! etcd against the routes in each host's kernel, the allocations in etcd
//! against the pods attached, and `railyard check` for the data path.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use railyard_core::{desired_routes, route_table_for, Plan};

use super::cmd::failure_text;
use super::topology::kernel_routes;
use super::Cluster;
use crate::error::{Error, Result};

/// What `railyard check` said.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub ok: bool,
    /// The connection table.
    pub table: String,
    /// Progress lines and, on failure, the error.
    pub stderr: String,
    pub elapsed: Duration,
}

impl Cluster {
    /// Waits until the plan's live hosts are exactly `hosts` and each of them
    /// holds exactly the routes the plan gives it. Returns that plan.
    pub fn wait_converged(&mut self, hosts: &[usize], timeout: Duration) -> Result<Plan> {
        let spec = self.spec().clone();
        let table = route_table_for(&spec.network);
        let want_live: BTreeSet<String> = hosts.iter().map(|&i| spec.host(i)).collect();
        let start = Instant::now();
        loop {
            let why = match self.observer()?.plan(&spec.network) {
                Err(e) => format!("cannot read the plan: {e}"),
                Ok(None) => "no plan yet".to_owned(),
                Ok(Some(plan)) => {
                    let live: BTreeSet<String> = plan
                        .hosts
                        .iter()
                        .filter(|(_, h)| h.departed_at.is_none())
                        .map(|(n, _)| n.clone())
                        .collect();
                    let off: Vec<String> = hosts
                        .iter()
                        .filter_map(|&i| {
                            let host = spec.host(i);
                            let want: BTreeSet<_> = expected_routes(&spec, &plan, i, table)
                                .into_iter()
                                .map(|r| {
                                    (r.dst.to_string(), r.gateway.to_string(), r.dev.to_string())
                                })
                                .collect();
                            let have = kernel_routes(&spec, i, table);
                            (want != have).then(|| {
                                format!("{host}: {} routes wanted, {} held", want.len(), have.len())
                            })
                        })
                        .collect();
                    // With `spec.ifacer` (--vlan, --bond) the daemons make the
                    // rail NICs and move the addresses: converged once every
                    // host's blocks are on those, not on what provisioning left.
                    let moved: Vec<String> = if spec.ifacer().is_some() {
                        let want: BTreeSet<String> =
                            (0..spec.rails).map(|j| spec.rail_nic(j)).collect();
                        hosts
                            .iter()
                            .filter_map(|&i| {
                                let host = spec.host(i);
                                let have: BTreeSet<String> = plan
                                    .hosts
                                    .get(&host)
                                    .map(|h| h.blocks.iter().map(|b| b.nic.to_string()).collect())
                                    .unwrap_or_default();
                                (have != want)
                                    .then(|| format!("{host}: blocks on {have:?}, want {want:?}"))
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    if live == want_live && off.is_empty() && moved.is_empty() {
                        return Ok(plan);
                    }
                    format!(
                        "live hosts in the plan {live:?} (want {want_live:?}); {off:?} {moved:?}"
                    )
                }
            };
            if start.elapsed() > timeout {
                return Err(Error::Timeout {
                    what: "every host's routes".into(),
                    secs: timeout.as_secs_f64(),
                    detail: why,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every host in `hosts` is registered (its daemon is up and
    /// has found its NICs).
    pub fn wait_registered(&mut self, hosts: &[usize], timeout: Duration) -> Result<()> {
        let names: Vec<String> = hosts.iter().map(|&i| self.spec().host(i)).collect();
        let start = Instant::now();
        loop {
            let mut missing = Vec::new();
            for name in &names {
                if !matches!(self.observer()?.registration_lease(name), Ok(Some(_))) {
                    missing.push(name.clone());
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Error::Timeout {
                    what: "host registrations".into(),
                    secs: timeout.as_secs_f64(),
                    detail: format!("not registered: {missing:?} (see their logs)"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until etcd holds an allocation record for exactly the attached pods
    /// (the daemons mirror in batches, after answering the plugin). `railyard
    /// check` finds pods through those records.
    pub fn wait_mirrored(&mut self, timeout: Duration) -> Result<()> {
        let network = self.spec().network.clone();
        let want: BTreeSet<String> = self.state.pods.iter().map(|p| p.name.clone()).collect();
        let start = Instant::now();
        loop {
            let have: BTreeSet<String> = match self.observer()?.allocations(&network) {
                Ok(records) => records.iter().map(|r| r.id.container_id.clone()).collect(),
                Err(_) => BTreeSet::new(),
            };
            if have == want {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let missing: Vec<_> = want.difference(&have).take(5).collect();
                let extra: Vec<_> = have.difference(&want).take(5).collect();
                return Err(Error::Timeout {
                    what: "allocations mirrored to etcd".into(),
                    secs: timeout.as_secs_f64(),
                    detail: format!(
                        "{} of {} pods recorded; missing e.g. {missing:?}, unexpected {extra:?}",
                        have.len(),
                        want.len()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `railyard check <network>` (all peers, or `peers` per pod).
    pub fn check(&self, peers: Option<usize>) -> Result<CheckRun> {
        let spec = self.spec();
        let mut cmd = Command::new(spec.bin_dir.join("railyard"));
        cmd.arg("check")
            .arg(&spec.network)
            .arg("--etcd-endpoints")
            .arg(spec.local_endpoint());
        if let Some(k) = peers {
            cmd.arg("--peers").arg(k.to_string());
        }
        let start = Instant::now();
        let out = cmd.output().map_err(|e| Error::Command {
            command: "railyard check".into(),
            output: format!("cannot run it: {e}"),
        })?;
        let stderr = if out.status.success() {
            String::from_utf8_lossy(&out.stderr).into_owned()
        } else {
            failure_text(&out)
        };
        Ok(CheckRun {
            ok: out.status.success(),
            table: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
            elapsed: start.elapsed(),
        })
    }
}

/// What host `i`'s table should hold: `desired_routes`, on a routed fabric
/// through the host's own leaf on each rail (`railyard_core::fabric`).
fn expected_routes(
    spec: &super::ClusterSpec,
    plan: &Plan,
    i: usize,
    table: u32,
) -> Vec<railyard_core::Route> {
    let host = spec.host(i);
    let routes = desired_routes(plan, &host, table);
    if !spec.routed {
        return routes;
    }
    let addresses: Vec<(railyard_core::IfName, ipnet::IpNet)> = (0..spec.rails)
        .flat_map(|j| {
            let nic: railyard_core::IfName = format!("rail{j}").parse().expect("a valid name");
            spec.rail_addrs(i, j)
                .into_iter()
                .filter_map(move |(a, len)| Some((nic, ipnet::IpNet::new(a, len).ok()?)))
        })
        .collect();
    let blocks = plan
        .hosts
        .get(&host)
        .map(|h| h.blocks.as_slice())
        .unwrap_or_default();
    let (links, _) = railyard_core::fabric::routed_links(blocks, &addresses);
    railyard_core::fabric::route_via_leaves(routes, &links).0
}
