//! `railyard-local`: a rail cluster in network namespaces on this machine (see
//! deploy/local/README.md). Flags and printing only; the work is in
//! `railyard_e2e::cluster` and `railyard_e2e::bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use railyard_e2e::{bench, Cluster, ClusterSpec, Delegate, Family, IpvlanMode};

const DEFAULT_STATE: &str = "/var/lib/railyard-local";

#[derive(Parser)]
#[command(
    name = "railyard-local",
    version,
    about = "A multi-host rail cluster in network namespaces: etcd, planner, one route-daemon per host, pods via railyard-cni"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the cluster, attach the pods and print `railyard check`'s table.
    Up {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Probe only this many peers per pod in the final check (default: all).
        #[arg(long)]
        peers: Option<usize>,
        /// Skip the final `railyard check`.
        #[arg(long)]
        no_check: bool,
    },
    /// Remove every namespace, link, process and file `up` made.
    Down {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
    /// What runs and what to try.
    Status {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
    /// The scale run: up without pods, attach all pods at once, check, delete
    /// them all, down; prints the timings as a Markdown table.
    Bench {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Peers probed per pod by the check (keeps it linear in the pod count).
        #[arg(long, default_value_t = 4)]
        peers: usize,
        /// Leave the cluster up afterwards (pods deleted).
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Args)]
struct ClusterArgs {
    /// Where the state file, logs, etcd data and allocation logs go.
    #[arg(long, default_value = DEFAULT_STATE)]
    state: PathBuf,
    /// Hosts (default 4; `bench`: 10).
    #[arg(long)]
    hosts: Option<usize>,
    #[arg(long, default_value_t = 2)]
    rails: usize,
    /// Pods per host (default 3; `bench`: 100).
    #[arg(long)]
    pods: Option<usize>,
    /// IPv6 only rails and pods.
    #[arg(long, conflicts_with = "dual_stack")]
    ipv6: bool,
    /// IPv4 and IPv6 on every rail and pod.
    #[arg(long)]
    dual_stack: bool,
    /// The interface plugin railyard-cni runs per NIC. `host-device` moves a
    /// spare link of each rail into each pod: every host gets `--spares`
    /// veths per rail into the rail's bridge (`spare<rail>-<k>`).
    #[arg(long, value_enum, default_value = "ptp")]
    delegate: Delegate,
    /// With `--delegate host-device`: spare links per host and rail (default:
    /// one per pod; fewer shows an ADD failing when a rail has none left).
    #[arg(long)]
    spares: Option<usize>,
    /// With `--delegate ipvlan`: l3 (default), l3s or l2.
    #[arg(long, value_enum, default_value = "l3")]
    ipvlan_mode: IpvlanMode,
    /// railyard-cni makes macvlan and ipvlan interfaces itself, a pod's all
    /// in one batch (`inProcessDelegates`), instead of running the binaries.
    #[arg(long)]
    in_process_delegates: bool,
    /// Rail NICs as VLAN sub-interfaces with this id (needs the 8021q module:
    /// the full-kernel VM on a machine without it).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..4095), conflicts_with = "bond")]
    vlan: Option<u16>,
    /// Rail NICs as bonds of two links each (needs the bonding module).
    #[arg(long)]
    bond: bool,
    /// `l2`: a bridge per rail, one shared subnet (the default). `routed`: a
    /// leaf per rail running BIRD, each host NIC on a /31 of its own to it,
    /// host blocks announced over BGP (docs/design/routed-rails.md).
    #[arg(long, value_parser = ["l2", "routed"], default_value = "l2")]
    fabric: String,
    /// The network's `spec.ipam.gateway`: an offset in each host block
    /// (`-2`: the last usable IPv4 address), or `none` (ipvlan l3 and l3s
    /// only). Default: offset 1.
    #[arg(long, allow_negative_numbers = true, value_parser = gateway_arg)]
    gateway: Option<String>,
    #[arg(long, default_value = "rails")]
    network: String,
    /// etcd's client port (the peer port is the next one).
    #[arg(long, default_value_t = 23790)]
    etcd_port: u16,
    /// etcd members: 1 (on the loopback, `--etcd-port`), or 3 or 5, each in a
    /// namespace of its own on the management bridge (docs/design/etcd-faults.md).
    #[arg(long, default_value_t = 1)]
    etcd_members: usize,
    /// The management subnet is `10.254.<id>.0/24`; change it to run two clusters.
    #[arg(long, default_value_t = 0)]
    mgmt_id: u8,
    /// Prefix of namespace, host and pod names.
    #[arg(long, default_value = "")]
    prefix: String,
    #[arg(long, default_value_t = 1)]
    planners: usize,
    /// The planner's grace period for departed hosts.
    #[arg(long, default_value = "10m")]
    grace: String,
    /// Directory of the railyard binaries (default: this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Directory of the reference CNI plugins.
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_dir: PathBuf,
    /// Pods attached at once.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
}

impl ClusterArgs {
    fn spec(&self, default_hosts: usize, default_pods: usize) -> anyhow::Result<ClusterSpec> {
        let bin_dir = match &self.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()?
                .parent()
                .map(PathBuf::from)
                .ok_or_else(|| anyhow::anyhow!("cannot tell this binary's directory"))?,
        };
        let mut spec = ClusterSpec::new(&self.state, bin_dir);
        spec.hosts = self.hosts.unwrap_or(default_hosts);
        spec.rails = self.rails;
        spec.pods = self.pods.unwrap_or(default_pods);
        spec.family = match (self.ipv6, self.dual_stack) {
            (true, _) => Family::V6,
            (_, true) => Family::Dual,
            _ => Family::V4,
        };
        spec.delegate = self.delegate;
        spec.ipvlan_mode = self.ipvlan_mode;
        if self.in_process_delegates
            && !matches!(self.delegate, Delegate::Macvlan | Delegate::Ipvlan)
        {
            anyhow::bail!("--in-process-delegates: only macvlan and ipvlan are served in process");
        }
        spec.in_process_delegates = self.in_process_delegates;
        if self.spares.is_some() && self.delegate != Delegate::HostDevice {
            anyhow::bail!("--spares: only --delegate host-device uses spare links");
        }
        spec.spares = self.spares;
        spec.vlan = self.vlan;
        spec.bond = self.bond;
        spec.routed = self.fabric == "routed";
        spec.gateway.clone_from(&self.gateway);
        spec.network.clone_from(&self.network);
        spec.etcd_port = self.etcd_port;
        spec.etcd_members = self.etcd_members;
        spec.mgmt_id = self.mgmt_id;
        spec.prefix.clone_from(&self.prefix);
        spec.planners = self.planners;
        spec.grace.clone_from(&self.grace);
        spec.cni_dir.clone_from(&self.cni_dir);
        spec.parallel = self.parallel;
        Ok(spec)
    }
}

/// `--gateway`: `none` or an integer offset, refused before anything is made.
fn gateway_arg(s: &str) -> Result<String, String> {
    if s == "none" || s.parse::<i64>().is_ok() {
        Ok(s.to_owned())
    } else {
        Err("takes an offset (like -2) or none".into())
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set inside the VM, so `up` there never starts another one.
const IN_VM: &str = "RAILYARD_LOCAL_IN_VM";

/// The modules of `wanted` this kernel has neither loaded nor can load.
fn missing_modules(wanted: &[&'static str]) -> Vec<&'static str> {
    wanted
        .iter()
        .copied()
        .filter(|m| {
            !std::path::Path::new("/sys/module").join(m).exists()
                && !std::process::Command::new("modprobe")
                    .args(["-q", m])
                    .status()
                    .is_ok_and(|s| s.success())
        })
        .collect()
}

/// This kernel lacks what the cluster needs: run the same `up` inside the
/// full-kernel VM instead of failing. The cluster lives as long as the VM, so
/// the VM's run ends with the connection check; nothing is left behind here.
fn up_in_vm(missing: &[&str]) -> anyhow::Result<ExitCode> {
    progress(&format!(
        "this kernel lacks {}: running the cluster in the full-kernel VM (railyard-vm); \
         it is removed when the check has run",
        missing.join(", ")
    ));
    let argv: Vec<String> = std::env::args().collect();
    let mut cfg = railyard_e2e::vm::VmConfig {
        echo: true,
        timeout: std::time::Duration::from_secs(1800),
        ..railyard_e2e::vm::VmConfig::default()
    }
    .inherit_env();
    cfg.env.push((IN_VM.to_owned(), "1".to_owned()));
    let out = railyard_e2e::vm::run(&argv, &cfg)?;
    progress(&format!(
        "the VM (kernel {}) ran for {:.0} s",
        out.kernel,
        out.elapsed.as_secs_f64()
    ));
    Ok(ExitCode::from(u8::try_from(out.status).unwrap_or(1)))
}

fn progress(line: &str) {
    eprintln!("railyard-local: {line}");
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up {
            cluster,
            peers,
            no_check,
        } => {
            let spec = cluster.spec(4, 3)?;
            let missing = missing_modules(&spec.kernel_modules());
            if !missing.is_empty() && std::env::var_os(IN_VM).is_none() {
                return up_in_vm(&missing);
            }
            let state = spec.state_dir.clone();
            let c = match Cluster::up(spec, &mut |l| progress(l)) {
                Ok(c) => c,
                Err(e @ railyard_e2e::Error::AlreadyRunning(_)) => return Err(e.into()),
                Err(e) if !state.join("cluster.json").exists() => return Err(e.into()),
                Err(e) => {
                    eprintln!(
                        "railyard-local: up failed; logs are in {}/logs, \
                         `railyard-local down --state {}` removes what was made",
                        state.display(),
                        state.display()
                    );
                    return Err(e.into());
                }
            };
            let mut ok = true;
            if !no_check && c.state.pods.len() >= 2 {
                progress(&format!("railyard check {}", c.spec().network));
                let run = c.check(peers)?;
                print!("{}", run.table);
                if !run.ok {
                    eprintln!("{}", run.stderr.trim_end());
                    ok = false;
                }
            }
            print!("{}", hints(&c));
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Down { state } => {
            let Some(mut c) = Cluster::open(&state)? else {
                progress(&format!("no cluster recorded in {}", state.display()));
                return Ok(ExitCode::SUCCESS);
            };
            let problems = c.down();
            if problems.is_empty() {
                progress("cluster removed");
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    eprintln!("railyard-local: {p}");
                }
                anyhow::bail!(
                    "some things were not removed; the state file is kept, run down again"
                )
            }
        }
        Command::Status { state } => {
            let Some(c) = Cluster::open(&state)? else {
                println!("no cluster recorded in {}", state.display());
                return Ok(ExitCode::SUCCESS);
            };
            print!("{}", status(&c));
            print!("{}", hints(&c));
            let all_up = c.processes().iter().all(|(_, _, alive)| *alive);
            Ok(if all_up {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench {
            cluster,
            peers,
            keep,
        } => {
            let spec = cluster.spec(10, 100)?;
            let report = bench::run(spec, peers, cluster.parallel, keep, &mut |l| progress(l))?;
            print!("{}", report.markdown());
            Ok(
                if report.failures == 0 && report.check_ok && report.cross_failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
    }
}

fn status(c: &Cluster) -> String {
    let s = c.spec();
    let mut out = format!(
        "cluster in {}: {} hosts x {} rails, {} pods attached, network {:?} ({}), delegate {:?}\n",
        s.state_dir.display(),
        c.state.hosts,
        s.rails,
        c.state.pods.len(),
        s.network,
        s.subnet(),
        s.delegate
    );
    for (role, pid, alive) in c.processes() {
        let what = if alive { "running" } else { "NOT RUNNING" };
        out.push_str(&format!("  {role:<16} pid {pid:<8} {what}\n"));
    }
    out
}

fn hints(c: &Cluster) -> String {
    let s = c.spec();
    let railyard = s.bin_dir.join("railyard");
    let ep = s.local_endpoint();
    let mut out = String::from("\nTry:\n");
    out.push_str(&format!("  export RAILYARD_ETCD_ENDPOINTS={ep}\n"));
    out.push_str(&format!(
        "  {} get plan {}\n",
        railyard.display(),
        s.network
    ));
    out.push_str(&format!(
        "  {} describe host {}\n",
        railyard.display(),
        s.host(0)
    ));
    out.push_str(&format!("  {} check {}\n", railyard.display(), s.network));
    out.push_str(&format!(
        "  ip -n {} route show table all proto 167\n",
        s.host(0)
    ));
    if let Some(p) = c.state.pods.first() {
        out.push_str(&format!("  ip netns exec {} ip addr\n", p.name));
    }
    out.push_str(&format!(
        "  logs: {}/logs   remove: railyard-local down --state {}\n",
        s.state_dir.display(),
        s.state_dir.display()
    ));
    out
}
