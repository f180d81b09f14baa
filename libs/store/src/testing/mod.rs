//! A throwaway single-member etcd for tests, here and in other crates
//! (`railyard-store = { features = ["testing"] }` as a dev-dependency).
//!
//! Tests that need etcd must fail, not skip, when it is missing: `start` returns an
//! error naming the binary and quoting etcd's own last words.
//!
//! The API is blocking (std processes, a plain HTTP health probe), so it works the same
//! from sync tests, async tests and shared statics.

mod certs;
mod cluster;

pub use certs::TestCerts;
pub use cluster::EtcdCluster;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{EtcdConfig, EtcdStore, StoreError};

/// Where etcd is looked for unless `RAILYARD_ETCD_BIN` says otherwise: the etcd 3.6
/// that `make deps` builds from source (deploy/deps/upstream.list). Debian's
/// `etcd-server` is 3.4, end of life, and no longer what the tests run against.
pub const DEFAULT_ETCD_BIN: &str = "/opt/railyard-upstream/bin/etcd";

/// The etcd binary tests start: `$RAILYARD_ETCD_BIN`, else [`DEFAULT_ETCD_BIN`].
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("RAILYARD_ETCD_BIN")
        .map_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN), PathBuf::from)
}

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const LOG_FILE: &str = "etcd.log";

/// A running etcd in its own temp dir. Killed (and the dir removed) on drop.
#[derive(Debug)]
pub struct EtcdServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// Health is probed here in plain HTTP, even when clients must use TLS.
    metrics_port: u16,
    certs: Option<TestCerts>,
    process: Option<Running>,
}

#[derive(Debug)]
struct Running {
    etcd: Child,
    /// Kills etcd if this test process dies without running `Drop` (SIGKILL, abort,
    /// a static never dropped), so no etcd outlives its test run.
    watchdog: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd ([`etcd_bin`]) on free loopback ports and waits until it serves
    /// requests.
    pub fn start() -> Result<EtcdServer, StoreError> {
        EtcdServer::start_with(&etcd_bin())
    }

    /// Like `start`, with an explicit etcd binary.
    pub fn start_with(bin: &Path) -> Result<EtcdServer, StoreError> {
        EtcdServer::launch_new(bin, false)
    }

    /// Like `start`, but clients must use mutual TLS with certificates made for this
    /// server (needs the `openssl` command); `config()` carries them.
    pub fn start_tls() -> Result<EtcdServer, StoreError> {
        EtcdServer::launch_new(&etcd_bin(), true)
    }

    fn launch_new(bin: &Path, tls: bool) -> Result<EtcdServer, StoreError> {
        if !bin.is_file() {
            return Err(harness_error(
                bin,
                "binary not found: run `make deps` (it builds etcd 3.6 into \
                 /opt/railyard-upstream/bin), or set RAILYARD_ETCD_BIN"
                    .to_string(),
            ));
        }
        let mut last_error = None;
        // Free ports are picked by binding and releasing them, so another process can
        // grab one in between; fresh ports on retry make that harmless.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("railyard-etcd-")
                .tempdir()
                .map_err(|e| harness_error(bin, format!("cannot create a temp dir: {e}")))?;
            let certs = match tls {
                true => Some(TestCerts::generate(&dir.path().join("certs"))?),
                false => None,
            };
            let mut server = EtcdServer {
                bin: bin.to_path_buf(),
                client_port: free_port(bin)?,
                peer_port: free_port(bin)?,
                metrics_port: free_port(bin)?,
                dir,
                certs,
                process: None,
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| harness_error(bin, "did not start".to_string())))
    }

    /// `http://127.0.0.1:PORT` (`https` with `start_tls`), stable across
    /// `stop`/`restart`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The generated certificates of a `start_tls` server.
    pub fn certs(&self) -> Option<&TestCerts> {
        self.certs.as_ref()
    }

    /// A client config for this server (with its client certificate under TLS) and
    /// short timeouts, so tests that stop etcd see `Unavailable` quickly.
    pub fn config(&self) -> EtcdConfig {
        let mut config = EtcdConfig::new([self.endpoint()]);
        config.connect_timeout = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(3);
        if let Some(certs) = &self.certs {
            config.ca = Some(certs.ca.clone());
            config.cert = Some(certs.client_cert.clone());
            config.key = Some(certs.client_key.clone());
        }
        config
    }

    /// Connects an `EtcdStore` to this server.
    pub async fn store(&self) -> Result<EtcdStore, StoreError> {
        EtcdStore::connect(self.config()).await
    }

    /// The directory holding etcd's data and its log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines etcd wrote to its log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join(LOG_FILE), 20)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Some(p) => matches!(p.etcd.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills etcd abruptly (like a crash or a power cut; etcd recovers from its WAL).
    /// Data dir and ports are kept for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            if let Some(mut w) = p.watchdog {
                let _ = w.kill();
                let _ = w.wait();
            }
            let _ = p.etcd.kill();
            let _ = p.etcd.wait();
        }
    }

    /// Stops etcd if running and starts it again on the same data and ports. Clients
    /// keep their endpoint and reconnect by themselves.
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.stop();
        self.launch()
    }

    fn launch(&mut self) -> Result<(), StoreError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(LOG_FILE))
            .map_err(|e| harness_error(&self.bin, format!("cannot open its log file: {e}")))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let data = self.dir.path().join("data");
        let mut command = Command::new(&self.bin);
        command
            .arg("--name=railyard-test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.metrics_port
            ))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=railyard-test={peer}"))
            .arg("--initial-cluster-state=new")
            // Fast election on (re)start, and a 1 s minimum lease TTL that the lease
            // tests rely on (etcd's minimum is 1.5 election timeouts, rounded up).
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--quota-backend-bytes=268435456")
            .arg("--snapshot-count=10000")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn");
        if let Some(certs) = &self.certs {
            command
                .arg(format!("--cert-file={}", certs.server_cert.display()))
                .arg(format!("--key-file={}", certs.server_key.display()))
                .arg(format!("--trusted-ca-file={}", certs.ca.display()))
                .arg("--client-cert-auth=true");
        }
        let etcd = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| harness_error(&self.bin, format!("cannot run it: {e}")))?;
        let watchdog = spawn_watchdog(etcd.id(), self.dir.path());
        self.process = Some(Running { etcd, watchdog });
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), StoreError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(p) = &mut self.process {
                if let Ok(Some(status)) = p.etcd.try_wait() {
                    let message = format!("exited with {status}; log:\n{}", self.log_tail());
                    self.stop();
                    return Err(harness_error(&self.bin, message));
                }
            }
            if healthy(self.metrics_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let message = format!(
                    "not healthy after {READY_TIMEOUT:?} on {}; log:\n{}",
                    self.endpoint(),
                    self.log_tail()
                );
                self.stop();
                return Err(harness_error(&self.bin, message));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn harness_error(bin: &Path, message: String) -> StoreError {
    StoreError::Other {
        context: format!("starting test etcd {}", bin.display()),
        message,
    }
}

/// A port below the ephemeral range, so that no outgoing connection takes it
/// before etcd binds it ([`railyard_test_support::ports`]).
fn free_port(bin: &Path) -> Result<u16, StoreError> {
    railyard_test_support::ports::try_free_ports(1)
        .ok_or_else(|| harness_error(bin, "no free loopback port".into()))
}

/// etcd serves `/health` on its metrics port in plain HTTP; it reports healthy only
/// once the member has a leader and can serve requests.
fn healthy(port: u16) -> bool {
    http_get(port, "/health").is_some_and(|r| r.contains("\"health\":\"true\""))
}

/// `GET path` on a loopback port in plain HTTP; the whole response.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    let timeout = Some(Duration::from_millis(1000));
    conn.set_read_timeout(timeout).ok()?;
    conn.set_write_timeout(timeout).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut response = String::new();
    conn.write_all(request.as_bytes()).ok()?;
    conn.read_to_string(&mut response).ok()?;
    Some(response)
}

/// A shell loop that outlives a killed test process: it kills etcd and removes the
/// temp dir that `Drop` would have removed. It exits by itself once etcd is gone.
fn spawn_watchdog(etcd_pid: u32, dir: &Path) -> Option<Child> {
    let script = r#"
        while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
        if ! kill -0 "$1" 2>/dev/null; then
            kill -9 "$2" 2>/dev/null; sleep 0.5; rm -rf "$3"
        fi"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("railyard-etcd-watchdog")
        .arg(std::process::id().to_string())
        .arg(etcd_pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| tracing::warn!("no watchdog for test etcd (pid {etcd_pid}): {e}"))
        .ok()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
