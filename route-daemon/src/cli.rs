//! The flags of `railyard-route-daemon` and their translation into a
//! [`DaemonConfig`]; here rather than in the binary so the translation is tested.

use std::path::PathBuf;
use std::time::Duration;

use railyard_store::cli::{parse_duration, EtcdArgs};

use crate::daemon::DaemonConfig;
use crate::discovery::FilterConfig;
use crate::kernel::{RoutingMode, DEFAULT_RULE_PRIORITY};
use crate::sweep::{LeakSweep, Pods};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "railyard-route-daemon",
    version,
    about = "railyard's per-host agent: registers this host's rail NICs and keeps its routes equal to the plan"
)]
pub struct Args {
    /// This host's name in the plans; defaults to the kernel's host name.
    #[arg(long, env = "RAILYARD_NODE_NAME")]
    pub node_name: Option<String>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// TTL of the registration lease in seconds: a dead daemon's host is seen
    /// departed after about this long.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..))]
    pub lease_ttl: i64,
    /// Where routes go: each network's own table reached through a
    /// `from <subnet>` rule, or the main table.
    #[arg(long, value_enum, default_value_t = Routing::OwnTable)]
    pub routing: Routing,
    /// Priority of the `from <subnet>` rules (own-table mode).
    #[arg(long, default_value_t = DEFAULT_RULE_PRIORITY)]
    pub rule_priority: u32,
    /// Only NICs whose name matches one of these globs are rails (comma separated
    /// or repeated).
    #[arg(long, value_delimiter = ',')]
    pub include: Vec<String>,
    /// NICs whose name matches one of these globs are never rails.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Register this host's entry of the file (YAML or JSON) instead of the
    /// discovered NICs.
    #[arg(long, value_name = "FILE")]
    pub static_inventory: Option<PathBuf>,
    /// Address of the Prometheus endpoint; "off" disables it. Loopback unless
    /// set: a scraper on another host needs an explicit address.
    #[arg(long, default_value = railyard_telemetry::ROUTE_DAEMON_METRICS_ADDR)]
    pub metrics_addr: String,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// The IPAM socket the railyard-ipam plugin connects to (root only); "off"
    /// runs routes only.
    #[arg(long, default_value = railyard_core::ipam::DEFAULT_SOCKET)]
    pub ipam_socket: String,
    /// Where the durable allocation log lives.
    #[arg(long, default_value = "/var/lib/railyard")]
    pub state_dir: PathBuf,
    /// Release the allocations of pods gone from the Kubernetes API (the
    /// leak sweep, for runtimes that never send CNI GC). `auto` turns it on
    /// inside a cluster (KUBERNETES_SERVICE_HOST set, the pod's service
    /// account) or with --kubeconfig; `--kubernetes` alone means `on`.
    #[arg(long, value_enum, default_value = "auto", num_args = 0..=1, default_missing_value = "on")]
    pub kubernetes: KubernetesMode,
    /// The leak sweep's cluster configuration instead of the in-cluster one.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// How long a pod must be seen gone, and its attachment unused by any
    /// ADD, before the sweep releases its addresses (e.g. 15m).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub leak_grace: Duration,
    /// How often the leak sweep lists this node's pods (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub leak_sweep_every: Duration,
    /// The configuration file of the BIRD beside the daemon (its `-c`), which
    /// the daemon rewrites with this host's announcements for routed
    /// networks (docs/design/routed-rails.md). Unset: no BGP.
    #[arg(long, value_name = "FILE", requires = "bird_socket")]
    pub bird_config: Option<PathBuf>,
    /// That BIRD's control socket (its `-s`), for `birdc configure`.
    #[arg(long, value_name = "PATH", requires = "bird_config")]
    pub bird_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KubernetesMode {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Routing {
    OwnTable,
    Main,
}

impl Args {
    /// The daemon's configuration; `hostname` is asked only without --node-name.
    pub fn config(&self, hostname: impl FnOnce() -> String) -> Result<DaemonConfig, String> {
        let node_name = self.node_name.clone().unwrap_or_else(hostname);
        let etcd = self.etcd.config();
        let metrics_addr = railyard_telemetry::parse_metrics_addr(&self.metrics_addr)?;
        let mut config = DaemonConfig::new(node_name, etcd);
        config.lease_ttl_secs = self.lease_ttl;
        config.routing = match self.routing {
            Routing::OwnTable => RoutingMode::OwnTable,
            Routing::Main => RoutingMode::MainTable,
        };
        config.rule_priority = self.rule_priority;
        config.filter = FilterConfig {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            ..FilterConfig::default()
        };
        config.static_inventory.clone_from(&self.static_inventory);
        config.metrics_addr = metrics_addr;
        config.ipam = (self.ipam_socket != "off").then(|| crate::ipam::IpamConfig {
            socket: PathBuf::from(&self.ipam_socket),
            state_dir: self.state_dir.clone(),
            allowed_uid: nix::unistd::geteuid().as_raw(),
        });
        config.leak_sweep = self.leak_sweep(in_cluster())?;
        config.bird = self.bird_config.clone().zip(self.bird_socket.clone());
        Ok(config)
    }

    /// The leak sweep's settings; `in_cluster` is whether the daemon runs in
    /// a pod (what `auto` goes by).
    pub fn leak_sweep(&self, in_cluster: bool) -> Result<Option<LeakSweep>, String> {
        let on = match self.kubernetes {
            KubernetesMode::Off => false,
            KubernetesMode::On => true,
            KubernetesMode::Auto => in_cluster || self.kubeconfig.is_some(),
        };
        if !on {
            return Ok(None);
        }
        if self.ipam_socket == "off" {
            return Err(
                "--kubernetes: the leak sweep releases IPAM allocations; it needs --ipam-socket"
                    .into(),
            );
        }
        if self.leak_sweep_every.is_zero() {
            return Err("--leak-sweep-every must be more than 0s".into());
        }
        let pods = match &self.kubeconfig {
            Some(path) => Pods::Kubeconfig(path.clone()),
            None => Pods::InCluster,
        };
        Ok(Some(LeakSweep {
            pods,
            grace: self.leak_grace,
            every: self.leak_sweep_every,
        }))
    }
}

/// Whether this process runs in a Kubernetes pod.
fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// The kernel's host name, the usual Kubernetes node name.
/// "localhost" when the kernel's cannot be read.
pub fn hostname() -> String {
    railyard_telemetry::hostname().unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("railyard-route-daemon").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = parse(&[])
            .expect("no flags needed")
            .config(|| "node-7".into())
            .expect("config");
        assert_eq!(c.node_name, "node-7");
        assert_eq!(c.lease_ttl_secs, 10);
        assert_eq!(c.routing, RoutingMode::OwnTable);
        assert_eq!(
            c.metrics_addr,
            Some("127.0.0.1:9465".parse().expect("addr"))
        );
        assert_eq!(c.etcd.endpoints, ["http://127.0.0.1:2379"]);
    }

    #[test]
    fn flags_reach_the_config() {
        let a = parse(&[
            "--node-name=h1",
            "--etcd-endpoints=http://a:2379,http://b:2379",
            "--lease-ttl=3",
            "--routing=main",
            "--include=ens*,eth[1-3]",
            "--exclude=ens9",
            "--static-inventory=/etc/railyard/hosts.yaml",
            "--metrics-addr=off",
        ])
        .expect("valid flags");
        let c = a
            .config(|| unreachable!("--node-name given"))
            .expect("config");
        assert_eq!(c.node_name, "h1");
        assert_eq!(c.etcd.endpoints.len(), 2);
        assert_eq!(c.lease_ttl_secs, 3);
        assert_eq!(c.routing, RoutingMode::MainTable);
        assert_eq!(c.filter.include, ["ens*", "eth[1-3]"]);
        assert_eq!(c.filter.exclude, ["ens9"]);
        assert!(c.static_inventory.is_some());
        assert_eq!(c.metrics_addr, None);
    }

    #[test]
    fn bird_flags_come_together() {
        let c = parse(&[
            "--bird-config=/etc/bird/railyard.conf",
            "--bird-socket=/run/bird/bird.ctl",
        ])
        .expect("both given")
        .config(|| "h".into())
        .expect("config");
        assert_eq!(
            c.bird,
            Some((
                "/etc/bird/railyard.conf".into(),
                "/run/bird/bird.ctl".into()
            ))
        );
        assert!(parse(&["--bird-config=/etc/bird/railyard.conf"]).is_err());
        assert!(parse(&["--bird-socket=/run/bird/bird.ctl"]).is_err());
        let none = parse(&[])
            .expect("valid")
            .config(|| "h".into())
            .expect("config");
        assert_eq!(none.bird, None);
    }

    #[test]
    fn the_leak_sweep_is_off_unless_configured() {
        let sweep = |args: &[&str], in_cluster: bool| {
            parse(args)
                .expect("valid flags")
                .leak_sweep(in_cluster)
                .expect("settings")
        };
        assert!(sweep(&[], false).is_none(), "off outside a cluster");
        assert!(sweep(&["--kubernetes=off"], true).is_none());
        let s = sweep(&[], true).expect("on inside a cluster");
        assert!(matches!(s.pods, Pods::InCluster));
        assert_eq!(s.grace, Duration::from_secs(900));
        assert_eq!(s.every, Duration::from_secs(60));
        let s = sweep(
            &[
                "--kubeconfig=/etc/k.conf",
                "--leak-grace=2m",
                "--leak-sweep-every=10s",
            ],
            false,
        )
        .expect("on with a kubeconfig");
        assert!(matches!(s.pods, Pods::Kubeconfig(ref p) if p.as_os_str() == "/etc/k.conf"));
        assert_eq!(s.grace, Duration::from_secs(120));
        assert_eq!(s.every, Duration::from_secs(10));
        assert!(sweep(&["--kubernetes"], false).is_some());
        let err = parse(&["--kubernetes", "--ipam-socket=off"])
            .expect("parses")
            .leak_sweep(false)
            .expect_err("no IPAM, nothing to sweep");
        assert!(err.contains("--ipam-socket"), "{err}");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let err = parse(&["--metrics-addr=nowhere"])
            .expect("parses")
            .config(|| "h".into())
            .expect_err("bad address");
        assert!(err.contains("nowhere"), "{err}");
        assert!(parse(&["--routing=sideways"]).is_err());
        assert!(parse(&["--lease-ttl=0"]).is_err());
        assert!(parse(&["--etcd-cert=/c.pem"]).is_err(), "cert needs key");
    }
}
