//! railyard's side: the daemon's IPAM (the route-daemon's socket server and
//! durable allocation log, the same code) in a process of its own, and
//! `railyard-ipam` calling it. The daemon process is this benchmark's binary
//! re-run as `railyard-ipam-bench serve-daemon DIR`: a full route-daemon needs
//! etcd, a planner and rail NICs, none of which an allocation touches.
//!
//! The store check asks that process, over a second socket, for every
//! attachment its allocation log still holds.

use std::io::{BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_allocdb::{AllocDb, NetworkConfig, Options};
use railyard_core::{plan, HostInventory, NetworkManifest, Nic};
use railyard_route_daemon::ipam::{serve, IpamContext, IpamMetrics};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::Ipam;

/// The network: a /16 per host on each of 8 rails (10.128.0.0/9, 8 rails of a
/// /12, 16 hosts per rail), so host 0 owns `super::rail_subnet(rail)`.
const PLAN: &str = r#"{"metadata":{"name":"rails"},"spec":{"subnet":"10.128.0.0/9","ipam":"{\"hostBlock\": 4, \"interfaceBlock\": 3}"}}"#;
pub const RAILS: usize = 8;

fn nics() -> Vec<Nic> {
    (0..RAILS)
        .map(|k| Nic {
            name: format!("eth{k}"),
            addresses: vec![format!("172.16.{k}.1/24").parse().expect("addr")],
            up: true,
            ..Nic::default()
        })
        .collect()
}

/// The daemon process (`serve-daemon DIR`): serves DIR/ipam.sock and answers
/// DIR/leftovers.sock with one line per attachment still held.
pub fn serve_daemon(dir: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let manifest: NetworkManifest = serde_json::from_str(PLAN).map_err(|e| e.to_string())?;
        let net = manifest.validate().map_err(|e| format!("{e:?}"))?;
        let host = HostInventory {
            name: "h0".into(),
            nics: nics(),
        };
        let p = plan(&net, &[host], None, 0, 600);
        let db = AllocDb::open(dir.join("db"), Options::default()).map_err(|e| e.to_string())?;
        db.set_network(NetworkConfig::from_plan(&net, &p, "h0"))
            .await
            .map_err(|e| e.to_string())?;
        let db = Arc::new(db);
        let (_nt, nics) = watch::channel(nics());
        let (_ct, classes) = watch::channel(Vec::new());
        // A fresh log with no etcd behind it: trusted, as the log of a daemon
        // whose re-sync with etcd has completed.
        let (_tt, trusted) = watch::channel(true);
        let mut registry = prometheus_client::registry::Registry::default();
        let ctx = Arc::new(IpamContext {
            db: Arc::clone(&db),
            nics,
            classes,
            metrics: Arc::new(IpamMetrics::new(&mut registry)),
            allowed_uid: nix::unistd::geteuid().as_raw(),
            trusted,
            pods: None,
        });
        let leftovers = tokio::net::UnixListener::bind(dir.join("leftovers.sock"))
            .map_err(|e| format!("leftovers.sock: {e}"))?;
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = leftovers.accept().await {
                let mut text = String::new();
                for a in db.attachments(None).await.unwrap_or_default() {
                    text.push_str(&format!("{:?}\n", a.id));
                }
                let _ = conn.write_all(text.as_bytes()).await;
            }
        });
        let (_stop, rx) = watch::channel(false);
        serve(&dir.join("ipam.sock"), ctx, rx)
            .await
            .map_err(|e| format!("serve: {e:?}"))
    })
}

/// `railyard-ipam` against the daemon process; killed on drop.
#[derive(Debug)]
pub struct Railyard {
    pub bin: PathBuf,
    dir: PathBuf,
    daemon: Child,
}

impl Railyard {
    /// Starts `bench_bin serve-daemon DIR` and waits (at most 10 s) for its socket.
    pub fn start(bench_bin: &Path, ipam_bin: PathBuf, dir: &Path) -> Result<Railyard, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let daemon = Command::new(bench_bin)
            .arg("serve-daemon")
            .arg(dir)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("{} serve-daemon: {e}", bench_bin.display()))?;
        let me = Railyard {
            bin: ipam_bin,
            dir: dir.to_path_buf(),
            daemon,
        };
        let start = Instant::now();
        while !(me.socket().exists() && dir.join("leftovers.sock").exists()) {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("the railyard daemon did not open its socket in 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(me)
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("ipam.sock")
    }
}

impl Drop for Railyard {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl Ipam for Railyard {
    fn name(&self) -> &str {
        "railyard"
    }
    fn binary(&self) -> &Path {
        &self.bin
    }
    /// One call gives a pod an address on every rail it asks for.
    fn calls_per_pod(&self, _rails: usize) -> usize {
        1
    }
    /// One address: standalone behind one macvlan (`master`: that NIC's
    /// block only). One per rail: no master, the first `rails` NICs.
    fn config(&self, rails: usize, _call: usize) -> String {
        let socket = self.socket();
        if rails == 1 {
            format!(
                r#"{{"cniVersion":"1.0.0","name":"rails","type":"macvlan","master":"eth0","ipam":{{"type":"railyard-ipam","socket":"{}"}}}}"#,
                socket.display()
            )
        } else {
            format!(
                r#"{{"cniVersion":"1.0.0","name":"rails","type":"macvlan","ipam":{{"type":"railyard-ipam","socket":"{}"}},"args":{{"cni":{{"nics":{rails}}}}}}}"#,
                socket.display()
            )
        }
    }
    fn leftovers(&self, _rails: usize) -> Result<Vec<String>, String> {
        let mut conn = UnixStream::connect(self.dir.join("leftovers.sock"))
            .map_err(|e| format!("leftovers.sock: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        BufReader::new(&mut conn)
            .take(1 << 24)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        Ok(text.lines().map(str::to_string).collect())
    }
}
