//! `railyard-k8s-demo`: `make demo-k8s`, the local namespace cluster as a
//! Kubernetes user sees it (see `railyard_e2e::k8s_demo` and docs/kubernetes.md,
//! "The Kubernetes demo"). Flags and printing only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use railyard_e2e::cluster::Delegate;
use railyard_e2e::k8s_demo::K8sDemo;
use railyard_e2e::kube::upstream;
use railyard_e2e::{kube, Cluster, ClusterSpec};

const DEFAULT_STATE: &str = "/var/lib/railyard-k8s-demo";

#[derive(Parser)]
#[command(name = "railyard-k8s-demo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The cluster, the control plane and the controller, the MultiNicNetwork,
    /// PODS pods per host attached through Multus (the last of each host with
    /// cni-args picking rail1 only), then the connection check through the API.
    Up {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        #[arg(long, default_value_t = 2)]
        pods: usize,
        /// Multus ADDs run at once (a runtime starts several sandboxes at once).
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Directory of the railyard binaries (default: this binary's directory).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The interface plugin railyard-cni runs per NIC: ptp, or macvlan
        /// (through the route-daemons' gateway shims). ipvlan needs the VM
        /// (`make demo`); this demo runs on the machine's own kernel.
        #[arg(long, value_enum, default_value = "ptp")]
        delegate: Delegate,
    },
    /// Remove everything `up` made.
    Down {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Up {
            state,
            hosts,
            pods,
            parallel,
            bin_dir,
            delegate,
        } => up(&state, hosts, pods, parallel, bin_dir, delegate),
        Command::Down { state } => down(&state),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The local cluster's spec: its own prefix, management subnet and etcd ports,
/// so `make demo` and `make demo-k8s` can run side by side.
fn spec(state: &Path, hosts: usize, bin_dir: PathBuf) -> ClusterSpec {
    let mut s = ClusterSpec::new(state.join("cluster"), bin_dir);
    s.prefix = "k8s-".into();
    s.mgmt_id = 1;
    s.etcd_port = 23794;
    s.hosts = hosts;
    s.rails = 2;
    s.lease_ttl = 3;
    s.cni_dir = upstream::dir();
    s
}

fn up(
    state: &Path,
    hosts: usize,
    pods: usize,
    parallel: usize,
    bin_dir: Option<PathBuf>,
    delegate: Delegate,
) -> anyhow::Result<()> {
    if delegate == Delegate::Ipvlan {
        anyhow::bail!("--delegate ipvlan: this kernel-bound demo runs ptp or macvlan");
    }
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("cannot tell this binary's directory"))?,
    };
    if pods == 0 {
        anyhow::bail!("--pods 0: the check needs pods");
    }
    let mut spec = spec(state, hosts, bin_dir);
    spec.delegate = delegate;
    let mut demo = match K8sDemo::up(spec, state.join("plane"), false, "demo", &mut |l| {
        println!("{l}")
    }) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "up failed; `railyard-k8s-demo down --state {}` removes what was made",
                state.display()
            );
            return Err(e.into());
        }
    };
    let mut wanted = Vec::new();
    for i in 0..hosts {
        for k in 0..pods {
            let networks = if k + 1 == pods && pods > 1 {
                r#"[{"name": "rails", "cni-args": {"masters": ["rail1"]}}]"#
            } else {
                r#"[{"name": "rails"}]"#
            };
            wanted.push((format!("pod-{i}-{k}"), i, networks.to_owned()));
        }
    }
    let (attached, took) = demo.attach_many(&wanted, parallel)?;
    println!(
        "{} pods attached through Multus and railyard-cni in {:.2} s ({:.1} per second, {parallel} at a time)",
        attached.len(),
        took.as_secs_f64(),
        attached.len() as f64 / took.as_secs_f64()
    );
    let status = demo.check_command().status()?;
    println!(
        "\nexport KUBECONFIG={}\nkubectl -n demo get pods -o yaml   # the network-status annotations\n\
         stop: railyard-k8s-demo down --state {}",
        demo.plane.state.admin_kubeconfig().display(),
        state.display()
    );
    if !status.success() {
        anyhow::bail!("the connection check failed");
    }
    Ok(())
}

fn down(state: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    match Cluster::open(&state.join("cluster"))? {
        Some(mut c) => problems.extend(c.down()),
        None => println!("no cluster recorded in {}", state.join("cluster").display()),
    }
    if !kube::down(&state.join("plane"))? {
        println!(
            "no control plane recorded in {}",
            state.join("plane").display()
        );
    }
    if !problems.is_empty() {
        anyhow::bail!("could not remove everything: {}", problems.join("; "));
    }
    // Only if empty, as the cluster's own `down` does.
    let _ = std::fs::remove_dir(state.join("plane"));
    let _ = std::fs::remove_dir(state);
    println!("removed");
    Ok(())
}
