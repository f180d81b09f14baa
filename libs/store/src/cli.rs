//! The etcd connection flags every railyard binary takes (`--etcd-endpoints`,
//! `--etcd-ca`, `--etcd-cert`, `--etcd-key`, or their `RAILYARD_ETCD_*`
//! variables), so the CLI, the planner and the route-daemon spell them alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::{connect_with_backoff, Backoff, EtcdConfig, EtcdStore, Store, StoreError};

#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// etcd client URLs, comma separated.
    #[arg(
        long = "etcd-endpoints",
        env = "RAILYARD_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// CA bundle (PEM) to verify etcd's certificate.
    #[arg(long = "etcd-ca", env = "RAILYARD_ETCD_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long = "etcd-cert", env = "RAILYARD_ETCD_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long = "etcd-key", env = "RAILYARD_ETCD_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Bound on each etcd call, after which the client tries another member.
    /// A write in flight when etcd's leader is lost fails only then (etcd drops
    /// it without an answer), so this is most of what a leader loss costs.
    #[arg(
        long = "etcd-request-timeout",
        env = "RAILYARD_ETCD_REQUEST_TIMEOUT",
        value_parser = parse_duration,
        default_value = "5s"
    )]
    pub request_timeout: Duration,
}

impl EtcdArgs {
    pub fn config(&self) -> EtcdConfig {
        let mut c = EtcdConfig::new(self.endpoints.clone());
        c.ca.clone_from(&self.ca);
        c.cert.clone_from(&self.cert);
        c.key.clone_from(&self.key);
        c.request_timeout = self.request_timeout;
        c
    }

    /// One attempt: for the CLI, which should fail fast with a clear message.
    pub async fn connect(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(EtcdStore::connect(self.config()).await?))
    }

    /// Retries until etcd answers: a service started before etcd waits for it.
    /// `None` once `shutdown` is true (or its sender is gone) before that.
    pub async fn connect_with_retry(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Arc<dyn Store>> {
        connect_with_backoff(&self.config(), Backoff::connect(), shutdown).await
    }
}

/// Parses the duration syntax every railyard flag takes: `90`, `90s`, `10m`,
/// `2h`, `500ms`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 2h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        etcd: EtcdArgs,
    }

    #[test]
    fn the_request_timeout_reaches_the_config() {
        let default = Cli::parse_from(["x"]).etcd.config();
        assert_eq!(default.request_timeout, Duration::from_secs(5));
        let args = [
            "x",
            "--etcd-endpoints=http://a:2379,http://b:2379",
            "--etcd-request-timeout=1500ms",
        ];
        let config = Cli::parse_from(args).etcd.config();
        assert_eq!(config.endpoints.len(), 2);
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
    }
}
