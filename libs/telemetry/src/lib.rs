//! What every railyard service does the same way: structured logs to stderr, a
//! Prometheus scrape endpoint, stopping on SIGTERM/SIGINT and naming itself
//! after the host. One copy, so the planner and the route-daemon log, expose
//! metrics and stop identically.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info};

/// The planner's metrics address unless the operator picks another: loopback,
/// because the metrics name hosts, networks and pods' load, and a node's
/// 0.0.0.0 reaches every network it is on. A scraper elsewhere needs an explicit
/// `--metrics-addr` (the Kubernetes manifests set one).
pub const PLANNER_METRICS_ADDR: &str = "127.0.0.1:9464";
/// The route-daemon's, for the same reason.
pub const ROUTE_DAEMON_METRICS_ADDR: &str = "127.0.0.1:9465";

/// A client must send its request head within this long, or is dropped: a
/// connection that sends nothing would otherwise hold a task forever.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;

/// Parses `--metrics-addr`: an address like `127.0.0.1:9465`, or `off` (None).
pub fn parse_metrics_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    match s.trim() {
        "off" => Ok(None),
        a => a.parse().map(Some).map_err(|_| {
            format!("--metrics-addr: {s:?} is not an address like 127.0.0.1:9465 (or \"off\")")
        }),
    }
}

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

/// The stop signal of a service: false until SIGTERM or SIGINT arrives, then
/// true. Both handlers are installed before this returns, so a signal sent
/// right after start is never lost (nor kills the process unhandled). Needs a
/// tokio runtime.
pub fn shutdown_on_signals() -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
        }
        let _ = stop.send(true);
    });
    Ok(shutdown)
}

/// Resolves once `shutdown` is true or its sender is gone (nobody can stop us
/// any more, so stop now). Holds no borrow of the value across awaits, which
/// keeps the futures that select on it `Send`.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The kernel's host name (`/proc/sys/kernel/hostname`), the usual Kubernetes
/// node name and a service's default identity; `None` when it cannot be read.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
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
/// A scrape is one short request: its head, one response, close. That is all a
/// Prometheus server sends, and it keeps an HTTP stack out of the daemons. A
/// client that does not finish its head within [`HEADER_TIMEOUT`] is dropped,
/// and at most a few connections are served at once.
pub async fn serve<M: Exposition>(addr: SocketAddr, metrics: Arc<M>) -> std::io::Result<()> {
    serve_with_timeout(addr, metrics, HEADER_TIMEOUT).await
}

/// [`serve`] with another head timeout (tests).
pub async fn serve_with_timeout<M: Exposition>(
    addr: SocketAddr,
    metrics: Arc<M>,
    header_timeout: Duration,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "serving metrics");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return Ok(());
        };
        let (mut conn, peer) = listener.accept().await?;
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(header_timeout, read_head(&mut conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "metrics request unreadable");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "metrics request head not sent in time; dropped");
                    return;
                }
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

/// Reads until the blank line that ends a request head (or `MAX_HEAD` bytes, or
/// the client closing its side). The body, if any, is ignored.
async fn read_head(conn: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while head.len() < MAX_HEAD {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_is_the_kernels_trimmed() {
        let name = hostname().expect("/proc/sys/kernel/hostname is readable");
        assert!(!name.is_empty() && name.trim() == name, "{name:?}");
    }

    #[tokio::test]
    async fn stopped_waits_for_true_or_a_gone_sender() {
        let (stop, mut shutdown) = watch::channel(false);
        let waiting = tokio::spawn(async move { stopped(&mut shutdown).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        stop.send(true).expect("receiver alive");
        waiting.await.expect("resolves");
        let (stop, mut shutdown) = watch::channel(false);
        drop(stop);
        stopped(&mut shutdown).await;
    }
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
        let addr = ([127, 0, 0, 1], railyard_test_support::free_port()).into();
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

    #[tokio::test]
    async fn a_client_that_never_sends_its_head_is_dropped() {
        let timeout = std::time::Duration::from_millis(200);
        let addr = ([127, 0, 0, 1], railyard_test_support::free_port()).into();
        let server = tokio::spawn(serve_with_timeout(
            addr,
            Arc::new(One(Registry::default())),
            timeout,
        ));
        let mut conn = loop {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        // Half a request line, then silence: the server must hang up on its own.
        conn.write_all(b"GET /met").await.expect("partial request");
        let mut reply = Vec::new();
        let read = tokio::time::timeout(timeout * 10, conn.read_to_end(&mut reply)).await;
        server.abort();
        let n = read
            .expect("the server closed the idle connection")
            .expect("read");
        assert_eq!(n, 0, "no response to an unfinished request");
    }

    #[test]
    fn metrics_addr_defaults_to_loopback_and_off_disables() {
        for a in [PLANNER_METRICS_ADDR, ROUTE_DAEMON_METRICS_ADDR] {
            let addr = parse_metrics_addr(a).expect("valid").expect("on");
            assert!(addr.ip().is_loopback(), "{a}");
        }
        assert_eq!(parse_metrics_addr("off"), Ok(None));
        let e = parse_metrics_addr("nowhere").unwrap_err();
        assert!(e.contains("--metrics-addr") && e.contains("nowhere"), "{e}");
    }
}
