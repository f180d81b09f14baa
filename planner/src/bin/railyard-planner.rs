//! `railyard-planner`: the planner service. Flags and wiring only; see `service.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use railyard_k8s::{self as k8s, ControllerConfig};
use railyard_planner::metrics::Metrics;
use railyard_planner::service::{self, ServiceConfig};
use railyard_store::cli::{parse_duration, EtcdArgs};
use tracing::error;

#[derive(Parser)]
#[command(
    name = "railyard-planner",
    version,
    about = "railyard's planner service"
)]
struct Args {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Name shown as leader; defaults to the host name.
    #[arg(long, env = "RAILYARD_IDENTITY")]
    identity: Option<String>,
    /// Leadership lease TTL in seconds: a dead leader is replaced within about this long.
    #[arg(long, default_value_t = 10)]
    lease_ttl: i64,
    /// How long a departed host keeps its index (e.g. 600s, 10m).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    grace: Duration,
    /// How long a rail NIC may be missing from its host's registration (address
    /// removed, link flapping) before the host's block on that rail is withdrawn
    /// and peers drop their routes to it (e.g. 30s; 0s withdraws at once).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    nic_grace: Duration,
    /// Address of the Prometheus endpoint; "off" disables it. Loopback unless set.
    #[arg(long, default_value = railyard_telemetry::PLANNER_METRICS_ADDR)]
    metrics_addr: String,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Run the Kubernetes controller (MultiNicNetwork -> etcd spec, NADs, status)
    /// while this replica leads. `auto` runs it inside a cluster
    /// (KUBERNETES_SERVICE_HOST set); `--kubernetes` alone means `on`.
    #[arg(long, value_enum, default_value = "auto", num_args = 0..=1, default_missing_value = "on")]
    kubernetes: KubernetesMode,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KubernetesMode {
    Auto,
    On,
    Off,
}

impl KubernetesMode {
    fn enabled(self) -> bool {
        match self {
            KubernetesMode::On => true,
            KubernetesMode::Off => false,
            KubernetesMode::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    railyard_telemetry::init_logging(args.log_json);
    let metrics = Arc::new(Metrics::default());
    if args.metrics_addr != "off" {
        match args.metrics_addr.parse::<SocketAddr>() {
            Ok(addr) => {
                let m = Arc::clone(&metrics);
                tokio::spawn(async move {
                    if let Err(e) = railyard_telemetry::serve(addr, m).await {
                        error!(%addr, error = %e, "metrics endpoint failed");
                    }
                });
            }
            Err(_) => {
                eprintln!(
                    "error: --metrics-addr: {:?} is not an address like 127.0.0.1:9464 (or \"off\")",
                    args.metrics_addr
                );
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let stop_rx = match railyard_telemetry::shutdown_on_signals() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("error: cannot handle SIGTERM/SIGINT: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let identity = args
        .identity
        .or_else(railyard_telemetry::hostname)
        .unwrap_or_else(|| "railyard-planner".into());
    // The client first: a missing kubeconfig should fail before waiting on etcd.
    let kube_client = if args.kubernetes.enabled() {
        match kube::Client::try_default().await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!(
                    "error: --kubernetes: no usable cluster config (in-cluster or KUBECONFIG): {e}"
                );
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // Waiting for etcd must not make the process deaf to SIGTERM/SIGINT.
    let Some(store) = args.etcd.connect_with_retry(&mut stop_rx.clone()).await else {
        return std::process::ExitCode::SUCCESS;
    };
    if let Some(client) = kube_client {
        let cfg = ControllerConfig {
            identity: identity.clone(),
            ..ControllerConfig::default()
        };
        tokio::spawn(k8s::run(client, Arc::clone(&store), cfg, stop_rx.clone()));
    }
    let cfg = ServiceConfig {
        identity,
        lease_ttl_secs: args.lease_ttl,
        grace: args.grace,
        nic_grace: args.nic_grace,
        ..ServiceConfig::default()
    };
    match service::run(store, cfg, metrics, stop_rx).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "planner stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
