//! What every railyard service does the same way: structured logs to stderr and a
//! Prometheus scrape endpoint. One copy, so the planner and the route-daemon log
//! and expose metrics identically.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, info};

/// Logs to stderr (stdout is for command output), filtered by `RUST_LOG` with
/// `info` as the default; JSON lines for log collectors when `json`.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

/// The OpenMetrics text of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

/// Something with metrics to expose.
pub trait Exposition: Send + Sync + 'static {
    fn render(&self) -> String;
}

/// Serves the metrics on `addr` (any path) until the task is dropped.
///
/// A scrape is one short request: one read, one response, close. That is all a
/// Prometheus server sends, and it keeps an HTTP stack out of the daemons.
pub async fn serve<M: Exposition>(addr: SocketAddr, metrics: Arc<M>) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    struct One(Registry);

    impl Exposition for One {
        fn render(&self) -> String {
            render(&self.0)
        }
    }

    #[tokio::test]
    async fn a_scrape_gets_the_registry_as_openmetrics() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        registry.register("scrapes_seen", "A test counter", c.clone());
        c.inc_by(3);
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        let server = tokio::spawn(serve(addr, Arc::new(One(registry))));
        let mut conn = loop {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("request");
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.expect("response");
        server.abort();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("application/openmetrics-text"), "{reply}");
        assert!(reply.contains("scrapes_seen_total 3"), "{reply}");
        assert!(reply.trim_end().ends_with("# EOF"), "{reply}");
    }
}
