//! The flags of `railyard-route-daemon` and their translation into a
//! [`DaemonConfig`]; here rather than in the binary so the translation is tested.

use std::path::PathBuf;

use railyard_store::cli::EtcdArgs;

use crate::daemon::DaemonConfig;
use crate::discovery::FilterConfig;
use crate::kernel::{RoutingMode, DEFAULT_RULE_PRIORITY};

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
        Ok(config)
    }
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
