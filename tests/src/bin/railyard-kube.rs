//! `railyard-kube`: a local Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager from `make deps`) with railyard's CRDs, Multus's NAD
//! CRD and the controller's ServiceAccount and RBAC installed. Flags and printing
//! only; the work is in `railyard_e2e::kube`. See docs/kubernetes.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use railyard_e2e::kube::{self, identity, ControlPlane, PlaneOptions};

const DEFAULT_STATE: &str = "/var/lib/railyard-kube";

#[derive(Parser)]
#[command(
    name = "railyard-kube",
    version,
    about = "A local Kubernetes control plane for railyard's controller (no kubelet)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the control plane, install the CRDs and the controller's RBAC, write
    /// DIR/admin.kubeconfig and DIR/controller.kubeconfig (the planner's
    /// service-account token).
    Up {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// The manifests to install (namespace.yaml, rbac.yaml, crds/).
        #[arg(long, default_value_os_t = identity::manifests_dir())]
        manifests: PathBuf,
        /// Also run `railyard-planner --kubernetes` against this etcd with the
        /// controller's kubeconfig (stopped by `down`).
        #[arg(long)]
        planner_etcd: Option<String>,
        /// Where railyard-planner is (default: next to this binary).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Stop everything `up` started and remove what it wrote in DIR.
    Down {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Up {
            state,
            manifests,
            planner_etcd,
            bin_dir,
        } => up(state, manifests, planner_etcd, bin_dir),
        Command::Down { state } => match kube::down(&state) {
            Ok(true) => {
                println!("control plane in {} stopped", state.display());
                Ok(())
            }
            Ok(false) => {
                println!("no control plane recorded in {}", state.display());
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn up(
    state: PathBuf,
    manifests: PathBuf,
    planner_etcd: Option<String>,
    bin_dir: Option<PathBuf>,
) -> railyard_e2e::Result<()> {
    let start = Instant::now();
    let options = PlaneOptions {
        dir: state.clone(),
        crds: Some(manifests.join("crds")),
        tie_to_this_process: false,
    };
    let mut plane = ControlPlane::up(&options)?;
    let controller = identity::install_as_shipped(&plane, &manifests)?;
    for (step, took) in &plane.timings {
        println!("{step:<26} {:>6.2} s", took.as_secs_f64());
    }
    println!(
        "{:<26} {:>6.2} s",
        "total (with RBAC, token)",
        start.elapsed().as_secs_f64()
    );
    if let Some(etcd) = planner_etcd {
        let dir = match bin_dir {
            Some(d) => d,
            None => std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(PathBuf::from))
                .unwrap_or_default(),
        };
        let argv = vec![
            dir.join("railyard-planner").display().to_string(),
            "--kubernetes".into(),
            format!("--etcd-endpoints={etcd}"),
            "--metrics-addr=off".into(),
        ];
        plane.spawn_with(
            "railyard-planner",
            argv,
            &[("KUBECONFIG", controller.display().to_string())],
        )?;
        println!(
            "railyard-planner --kubernetes runs (log {})",
            plane.log("railyard-planner").display()
        );
    }
    println!("API server {}", plane.state.server());
    println!(
        "export KUBECONFIG={}",
        plane.state.admin_kubeconfig().display()
    );
    println!(
        "controller: KUBECONFIG={} railyard-planner --kubernetes --etcd-endpoints ...",
        controller.display()
    );
    println!("stop: railyard-kube down --state {}", state.display());
    Ok(())
}
