//! The `railyard` command line: subcommands and flags (clap). `main.rs` parses
//! them and hands them to [`crate::run`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use railyard_store::cli::EtcdArgs;

use crate::offline::TableChoice;

#[derive(Parser, Debug)]
#[command(
    name = "railyard",
    version,
    about = "Plan and inspect multi-NIC rail networks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compute the plan offline from a network file and a host inventory.
    Plan {
        /// MultiNicNetwork manifest(s), YAML or JSON; several documents allowed.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Hosts and their NICs (a list of {name, nics: [{name, addresses}]}).
        #[arg(long)]
        inventory: PathBuf,
        /// Print this host's desired routes instead of the plan.
        #[arg(long, value_name = "HOST")]
        routes: Option<String>,
        /// Route table: per-network (default), main, or a number.
        #[arg(long, default_value = "per-network")]
        table: TableChoice,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// Store network specs in etcd and wait for the planner's verdict.
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Accept a change that renumbers hosts holding pod addresses.
        #[arg(long)]
        force: bool,
        /// How long to wait for the planner to accept or refuse each network
        /// (e.g. 5s, 500ms); after it the network is reported as pending.
        #[arg(long, default_value = "5s", value_parser = railyard_store::cli::parse_duration)]
        wait: std::time::Duration,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Delete a network (its plan and status go with it). Refused while pods
    /// hold addresses in it, unless --force.
    Delete {
        #[arg(value_parser = ["network"])]
        kind: String,
        name: String,
        /// Delete even though pods hold addresses (their range stays reserved).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List networks, hosts, the plan, the planner leader, or the pods'
    /// allocations.
    Get {
        what: What,
        /// With `plan`: only this network.
        name: Option<String>,
        /// With `allocations`: only this network.
        #[arg(long)]
        network: Option<String>,
        /// With `allocations`: only this host.
        #[arg(long)]
        host: Option<String>,
        /// With `allocations`: only this pod, `NAMESPACE/NAME` (or a name in any namespace).
        #[arg(long)]
        pod: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Which pod, interface, host and rail hold an address, or that nobody
    /// does, and whose block it lies in.
    Who {
        address: std::net::IpAddr,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Everything known of one host: NICs, blocks, expected routes, allocations.
    Describe {
        #[arg(value_parser = ["host"])]
        kind: String,
        name: String,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Connection check: every pod pings every other pod on every rail (pods and
    /// hosts are network namespaces, as in deploy/local). Exits non-zero on any failure.
    Check {
        /// The network to check.
        network: String,
        /// Probe only this many peers per pod (default: all).
        #[arg(long)]
        peers: Option<usize>,
        /// A pod's network namespace; {pod} and {host} are replaced.
        #[arg(long, default_value = "{pod}")]
        pod_netns: String,
        /// A host's network namespace; {host} is replaced.
        #[arg(long, default_value = "{host}")]
        host_netns: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Find the pods through the Kubernetes API (Multus's network-status
        /// annotation) instead of etcd's allocation records; the client
        /// configuration is KUBECONFIG, ~/.kube/config or the in-cluster one.
        #[arg(long)]
        kubernetes: bool,
        /// Also measure a short TCP transfer (at most 256 MiB or 0.5 s) per rail
        /// between two pods, preferably on different hosts, in Mbit/s.
        #[arg(long)]
        throughput: bool,
        /// With --kubernetes: only pods of this namespace (default: all).
        #[arg(long, requires = "kubernetes")]
        namespace: Option<String>,
        /// With --kubernetes: check from inside the cluster. The pods are the
        /// check agents matched by this label selector (the DaemonSet of
        /// deploy/kubernetes/check.yaml), and they make the probes.
        #[arg(long, requires = "kubernetes", value_name = "SELECTOR")]
        agents: Option<String>,
        /// The agents' TCP port.
        #[arg(long, default_value_t = crate::agent::DEFAULT_PORT)]
        agent_port: u16,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Serve the probes of an in-cluster `railyard check --agents` (run by the
    /// DaemonSet of deploy/kubernetes/check.yaml, in a pod on the network).
    CheckAgent {
        /// TCP port, on every address of the pod.
        #[arg(long, default_value_t = crate::agent::DEFAULT_PORT)]
        port: u16,
    },
    /// The hostBlock trade-off of a network: hosts versus pods per host per rail.
    Capacity {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum What {
    Networks,
    Hosts,
    Plan,
    Leader,
    Allocations,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
    Table,
}
