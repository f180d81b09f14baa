//! etcd for a local cluster: one member on the loopback (for the planners and the
//! CLI) and on the management bridge (for the daemons), data in the state dir so
//! a stop and start keeps everything, like a real etcd restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::spec::ClusterSpec;
use crate::error::{Error, Result};

/// The etcd 3.6 `make deps` builds (deploy/deps/upstream.list), unless
/// `RAILYARD_ETCD_BIN` names another.
pub const ETCD_BIN: &str = "/opt/railyard-upstream/bin/etcd";

/// What to tell a user whose etcd binary is missing.
pub const MISSING_HINT: &str =
    "run `make deps` (it builds etcd 3.6 into /opt/railyard-upstream/bin) or set RAILYARD_ETCD_BIN";

/// The etcd binary a cluster starts.
pub fn bin() -> String {
    std::env::var("RAILYARD_ETCD_BIN").unwrap_or_else(|_| ETCD_BIN.to_owned())
}

pub fn argv(spec: &ClusterSpec) -> Vec<String> {
    let bin = bin();
    let peer = format!("http://127.0.0.1:{}", spec.etcd_port + 1);
    vec![
        bin,
        "--name=railyard-local".into(),
        format!("--data-dir={}", spec.state_dir.join("etcd").display()),
        format!(
            "--listen-client-urls={},{}",
            spec.local_endpoint(),
            spec.mgmt_endpoint()
        ),
        format!("--advertise-client-urls={}", spec.mgmt_endpoint()),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=railyard-local={peer}"),
        "--initial-cluster-state=new".into(),
        // Fast leader election after a restart: the outage tests time it.
        "--heartbeat-interval=50".into(),
        "--election-timeout=500".into(),
        "--logger=zap".into(),
        "--log-outputs=stderr".into(),
        "--log-level=warn".into(),
    ]
}

/// Waits until etcd answers `/health` on the loopback port.
pub fn wait_healthy(spec: &ClusterSpec, timeout: Duration, log: &std::path::Path) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], spec.etcd_port));
    let start = Instant::now();
    loop {
        if healthy(addr) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("etcd on {addr}"),
                secs: timeout.as_secs_f64(),
                detail: format!("log {}:\n{}", log.display(), super::process::tail(log, 15)),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// A port pair (client, client + 1) nobody listens on, for tests that run
/// clusters side by side: below the ephemeral range, so that no test's
/// outgoing connection takes the peer port before etcd binds it
/// ([`railyard_test_support::ports`]).
pub fn free_port_pair() -> Option<u16> {
    railyard_test_support::ports::try_free_ports(2)
}
