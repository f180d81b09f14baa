//! Prometheus metrics of the planner, and the small HTTP endpoint that serves them.
//! A hand-rolled responder instead of a web framework: it answers one GET, and
//! pulling in an HTTP stack for that would double the binary's dependency tree.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, info};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkLabel {
    pub network: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub plan_computations: Counter,
    pub plan_write_seconds: Histogram,
    pub plan_transactions: Counter,
    pub hosts_planned: Family<NetworkLabel, Gauge>,
    pub hosts_unplanned: Family<NetworkLabel, Gauge>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("railyard_planner");
        let m = Metrics {
            plan_computations: Counter::default(),
            plan_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            plan_transactions: Counter::default(),
            hosts_planned: Family::default(),
            hosts_unplanned: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "plan_computations",
            "Batches of changes applied to the plan",
            m.plan_computations.clone(),
        );
        registry.register(
            "plan_write_seconds",
            "Time to write one batch of plan changes to etcd",
            m.plan_write_seconds.clone(),
        );
        registry.register(
            "plan_transactions",
            "etcd transactions used to write plans",
            m.plan_transactions.clone(),
        );
        registry.register(
            "hosts_planned",
            "Hosts with an index in the network's plan",
            m.hosts_planned.clone(),
        );
        registry.register(
            "hosts_unplanned",
            "Registered hosts left out of the network's plan",
            m.hosts_unplanned.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the planner leader",
            m.leader.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` (any path, in fact) on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "serving metrics");
    loop {
        let (mut conn, peer) = listener.accept().await?;
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            // One read is enough for a scrape request; the body is ignored.
            if conn.read(&mut buf).await.is_err() {
                return;
            }
            let body = metrics.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            if let Err(e) = async {
                conn.write_all(head.as_bytes()).await?;
                conn.write_all(body.as_bytes()).await?;
                conn.shutdown().await
            }
            .await
            {
                debug!(%peer, error = %e, "metrics scrape failed");
            }
        });
    }
}
