//! Runs the probes of `railyard check` on this machine: pods and hosts are network
//! namespaces (the local cluster of `deploy/local`), named by templates.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use railyard_core::{keys, Plan};
use railyard_store::Store;
use serde::Serialize;
use tokio::process::Command;

use crate::check::{self, AllocationRecord, Pod, Probe, Report};
use crate::error::{CliError, Result};

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub network: String,
    /// Probe only this many peers per pod (all when None).
    pub peers: Option<usize>,
    /// Network namespace of a pod; `{pod}` and `{host}` are replaced.
    pub pod_netns: String,
    /// Network namespace of a host; `{host}` is replaced.
    pub host_netns: String,
    pub concurrency: usize,
    /// Print "checked X/Y" to stderr while running.
    pub progress: bool,
    /// Also measure one TCP transfer per rail (`throughput`).
    pub throughput: bool,
}

/// One rail's transfer: between which pods, and the rate or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RailThroughput {
    pub rail: u32,
    pub from: String,
    pub to: String,
    pub dst: IpAddr,
    pub mbit_per_s: Option<f64>,
    pub error: Option<String>,
}

/// A host's rail-j traffic leaving through another NIC than its rail-j NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathProblem {
    pub host: String,
    pub pod: String,
    pub dst: IpAddr,
    pub expected_dev: String,
    pub actual: String,
}

#[derive(Debug, Serialize)]
pub struct CheckOutcome {
    pub report: Report,
    /// How many host paths were checked; `None` where the hosts' namespaces
    /// are out of reach (the in-cluster check of `check_agents`).
    pub paths_checked: Option<usize>,
    pub path_problems: Vec<PathProblem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub throughput: Vec<RailThroughput>,
}

impl CheckOutcome {
    /// The connection table, then what was found of the host paths.
    pub fn render(&self) -> String {
        let mut table = crate::check::render(&self.report);
        match self.paths_checked {
            None => table.push_str(
                "host paths not checked (in the cluster; `railyard check` on a node checks them)",
            ),
            Some(n) => table.push_str(&format!("{n} host paths checked")),
        }
        if self.paths_checked.is_none() {
            table.push('\n');
        } else if self.path_problems.is_empty() {
            table.push_str(", all leave through the rail's NIC\n");
        } else {
            table.push('\n');
            for p in &self.path_problems {
                table.push_str(&format!(
                    "PATH {} on {} -> {}: expected dev {}, got {}\n",
                    p.pod, p.host, p.dst, p.expected_dev, p.actual
                ));
            }
        }
        if !self.throughput.is_empty() {
            table.push_str("RAIL  FROM -> TO  BANDWIDTH\n");
            for t in &self.throughput {
                let rate = match (t.mbit_per_s, &t.error) {
                    (Some(m), _) => format!("{m:.0} Mbit/s"),
                    (None, e) => format!("FAILED: {}", e.as_deref().unwrap_or("?")),
                };
                table.push_str(&format!(
                    "{}  {} -> {} ({})  {rate}\n",
                    t.rail, t.from, t.to, t.dst
                ));
            }
        }
        table
    }

    pub fn ok(&self) -> bool {
        self.report.ok()
            && self.path_problems.is_empty()
            && self.throughput.iter().all(|t| t.mbit_per_s.is_some())
    }
}

/// The check with the pods of the allocation records the route-daemons mirror
/// to etcd.
pub async fn run(store: &dyn Store, plan: &Plan, opts: &CheckOptions) -> Result<CheckOutcome> {
    let stored = store
        .range(&format!("{}{}/", keys::ALLOCATIONS, opts.network))
        .await?;
    let mut records = Vec::new();
    for kv in &stored.kvs {
        records.push((kv.key.clone(), kv.decode_json::<AllocationRecord>()?));
    }
    let pods = check::pods_of(&opts.network, &records);
    run_pods(plan, &pods, opts).await
}

/// The check of `pods`, wherever they were found (etcd, or the Kubernetes API:
/// `check_k8s`).
pub async fn run_pods(plan: &Plan, pods: &[Pod], opts: &CheckOptions) -> Result<CheckOutcome> {
    if pods.len() < 2 {
        return Err(CliError::Usage(format!(
            "network {:?} has {} attached pod(s); the check needs at least 2",
            opts.network,
            pods.len()
        )));
    }
    let probes = check::probes(pods, opts.peers);
    let done = Arc::new(AtomicUsize::new(0));
    let progress = opts.progress.then(|| {
        let done = Arc::clone(&done);
        let total = probes.len();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!("checked {}/{total} probes", done.load(Ordering::Relaxed));
            }
        })
    });
    let results: Vec<bool> = futures::stream::iter(probes.iter())
        .map(|p| {
            let done = Arc::clone(&done);
            let netns = netns_of(&opts.pod_netns, &pods[p.from]);
            async move {
                let ok = ping(&netns, p.dst).await;
                done.fetch_add(1, Ordering::Relaxed);
                ok
            }
        })
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    if let Some(p) = progress {
        p.abort();
    }
    let report = check::report(&opts.network, pods, &probes, &results);
    let (paths_checked, path_problems) = check_paths(plan, pods, &probes, opts).await;
    let throughput = if opts.throughput {
        let (pods, opts) = (pods.to_vec(), opts.clone());
        blocking("the throughput probe", move || {
            rail_throughput(&pods, &opts)
        })
        .await?
    } else {
        Vec::new()
    };
    Ok(CheckOutcome {
        report,
        paths_checked: Some(paths_checked),
        path_problems,
        throughput,
    })
}

/// `f` on the blocking pool (probes that wait on sockets or threads); a
/// panic in it is an error naming `what`.
pub async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CliError::Usage(format!("{what} failed: {e}")))
}

/// One transfer per rail, one after the other (parallel transfers would share
/// the cores and measure each other), between the pods [`check::transfers`]
/// picks.
fn rail_throughput(pods: &[Pod], opts: &CheckOptions) -> Vec<RailThroughput> {
    check::transfers(pods)
        .into_iter()
        .map(|t| {
            let (from, to) = (&pods[t.from], &pods[t.to]);
            let result = crate::throughput::measure(
                &netns_of(&opts.pod_netns, from),
                &netns_of(&opts.pod_netns, to),
                t.dst,
            );
            RailThroughput::of(t, pods, result)
        })
        .collect()
}

impl RailThroughput {
    /// The row of transfer `t` between `pods`, with its rate or why none.
    pub fn of(t: check::Transfer, pods: &[Pod], result: Result<f64, String>) -> RailThroughput {
        RailThroughput {
            rail: t.rail,
            from: pods[t.from].name.clone(),
            to: pods[t.to].name.clone(),
            dst: t.dst,
            mbit_per_s: result.as_ref().ok().copied(),
            error: result.err(),
        }
    }
}

fn netns_of(template: &str, pod: &Pod) -> String {
    template
        .replace("{pod}", &pod.name)
        .replace("{host}", &pod.host)
}

async fn ping(netns: &str, dst: IpAddr) -> bool {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "ping", "-c", "1", "-W", "1", "-q"]);
    if dst.is_ipv6() {
        cmd.arg("-6");
    }
    cmd.arg(dst.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// For one cross-host probe per (pod, rail): the host's forwarding decision for the
/// pod's traffic must use the host's NIC on that rail.
async fn check_paths(
    plan: &Plan,
    pods: &[Pod],
    probes: &[Probe],
    opts: &CheckOptions,
) -> (usize, Vec<PathProblem>) {
    let mut seen = BTreeMap::new();
    for p in probes {
        let (src, dst) = (&pods[p.from], &pods[p.to]);
        if src.host != dst.host {
            seen.entry((p.from, p.rail, p.dst.is_ipv4())).or_insert(p);
        }
    }
    let mut problems = Vec::new();
    for p in seen.values() {
        let pod = &pods[p.from];
        let Some(src) = pod
            .addresses
            .get(&p.rail)
            .and_then(|a| a.iter().find(|a| a.is_ipv4() == p.dst.is_ipv4()))
        else {
            continue;
        };
        let expected = plan
            .hosts
            .get(&pod.host)
            .and_then(|h| h.blocks.iter().find(|b| b.interface == p.rail))
            .map(|b| b.nic.to_string())
            .unwrap_or_default();
        let host_ns = opts.host_netns.replace("{host}", &pod.host);
        let actual = route_dev(&host_ns, *src, p.dst, &expected).await;
        if actual.as_deref() != Some(expected.as_str()) {
            problems.push(PathProblem {
                host: pod.host.clone(),
                pod: pod.name.clone(),
                dst: p.dst,
                expected_dev: expected,
                actual: actual.unwrap_or_else(|| "no route".into()),
            });
        }
    }
    (seen.len(), problems)
}

/// The device the host forwards `src -> dst` through: an input-route lookup as if
/// the packet arrived from the pod (`iif` = the host's interface towards `src`).
/// ipvlan (l3, l3s) pods have no route in the host: their packets come up
/// through the rail NIC itself (`rail_nic`), so that is the `iif` then.
async fn route_dev(host_ns: &str, src: IpAddr, dst: IpAddr, rail_nic: &str) -> Option<String> {
    let towards_pod = match route_get(host_ns, &[&src.to_string()]).await {
        Some(dev) => dev,
        None if !rail_nic.is_empty() => rail_nic.to_string(),
        None => return None,
    };
    route_get(
        host_ns,
        &[
            &dst.to_string(),
            "from",
            &src.to_string(),
            "iif",
            &towards_pod,
        ],
    )
    .await
}

async fn route_get(host_ns: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", host_ns, "-j", "route", "get"])
        .args(args)
        .output()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0)?.get("dev")?.as_str().map(str::to_string)
}
