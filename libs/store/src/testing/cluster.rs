//! A throwaway three-member etcd on loopback ports, for tests of what a real
//! control plane does to its clients: a member killed, restarted on its data,
//! or hung (stopped with SIGSTOP: its sockets accept, nothing answers).
//!
//! Partitions need separate links, so they live in the local cluster harness
//! (`tests/src/cluster/etcd_members.rs`), which runs members in namespaces.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{etcd_bin, free_port, harness_error, healthy, spawn_watchdog, tail, Running};
use crate::{EtcdConfig, EtcdStore, StoreError};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Members of one etcd cluster, each in a directory of its own under one temp
/// dir. Killed (and the dir removed) on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    process: Option<Running>,
}

impl EtcdCluster {
    /// Starts `size` members ([`etcd_bin`]) and waits until every one is healthy.
    pub fn start(size: usize) -> Result<EtcdCluster, StoreError> {
        let bin = etcd_bin();
        if !bin.is_file() {
            return Err(harness_error(
                &bin,
                "binary not found: run `make deps` (it builds etcd 3.6 into \
                 /opt/railyard-upstream/bin), or set RAILYARD_ETCD_BIN"
                    .to_string(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("railyard-etcd-cluster-")
            .tempdir()
            .map_err(|e| harness_error(&bin, format!("cannot create a temp dir: {e}")))?;
        let mut members = Vec::new();
        for _ in 0..size {
            members.push(Member {
                client_port: free_port(&bin)?,
                peer_port: free_port(&bin)?,
                metrics_port: free_port(&bin)?,
                process: None,
            });
        }
        let mut cluster = EtcdCluster { bin, dir, members };
        for m in 0..size {
            cluster.launch(m)?;
        }
        for m in 0..size {
            cluster.wait_healthy(m)?;
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `m`'s client URL.
    pub fn endpoint(&self, m: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[m].client_port)
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|m| self.endpoint(m)).collect()
    }

    /// A client config with every endpoint, in `order` (member indexes), and
    /// the short timeouts of [`super::EtcdServer::config`].
    pub fn config(&self, order: &[usize]) -> EtcdConfig {
        let mut config = EtcdConfig::new(order.iter().map(|&m| self.endpoint(m)));
        config.connect_timeout = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(2);
        config
    }

    /// Connects a store to every member, in member order.
    pub async fn store(&self) -> Result<EtcdStore, StoreError> {
        let order: Vec<usize> = (0..self.members.len()).collect();
        EtcdStore::connect(self.config(&order)).await
    }

    /// The member that says it leads, if one does (during an election none).
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&m| {
            super::http_get(self.members[m].metrics_port, "/metrics")
                .is_some_and(|b| b.lines().any(|l| l == "etcd_server_is_leader 1"))
        })
    }

    /// SIGKILL to member `m`; its data and ports stay for [`EtcdCluster::restart`].
    pub fn kill(&mut self, m: usize) {
        if let Some(mut p) = self.members[m].process.take() {
            if let Some(mut w) = p.watchdog {
                let _ = w.kill();
                let _ = w.wait();
            }
            let _ = p.etcd.kill();
            let _ = p.etcd.wait();
        }
    }

    /// Starts member `m` again on its data and waits until it is healthy.
    pub fn restart(&mut self, m: usize) -> Result<(), StoreError> {
        self.kill(m);
        self.launch(m)?;
        self.wait_healthy(m)
    }

    /// SIGSTOP to member `m`: its listening sockets still accept connections
    /// (the kernel does that), but no request is answered, as with a member
    /// stuck on a dead disk. [`EtcdCluster::resume`] undoes it.
    pub fn pause(&mut self, m: usize) -> Result<(), StoreError> {
        self.signal(m, "-STOP")
    }

    pub fn resume(&mut self, m: usize) -> Result<(), StoreError> {
        self.signal(m, "-CONT")
    }

    fn signal(&self, m: usize, signal: &str) -> Result<(), StoreError> {
        let pid = match &self.members[m].process {
            Some(p) => p.etcd.id(),
            None => {
                return Err(harness_error(
                    &self.bin,
                    format!("member {m} is not running"),
                ))
            }
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .map_err(|e| harness_error(&self.bin, format!("cannot run kill: {e}")))?;
        match status.success() {
            true => Ok(()),
            false => Err(harness_error(
                &self.bin,
                format!("kill {signal} {pid}: {status}"),
            )),
        }
    }

    fn name(m: usize) -> String {
        format!("m{m}")
    }

    fn peer_url(&self, m: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[m].peer_port)
    }

    fn launch(&mut self, m: usize) -> Result<(), StoreError> {
        let member_dir = self.dir.path().join(EtcdCluster::name(m));
        std::fs::create_dir_all(&member_dir)
            .map_err(|e| harness_error(&self.bin, format!("cannot create a member dir: {e}")))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(member_dir.join("etcd.log"))
            .map_err(|e| harness_error(&self.bin, format!("cannot open its log file: {e}")))?;
        let cluster: Vec<String> = (0..self.members.len())
            .map(|k| format!("{}={}", EtcdCluster::name(k), self.peer_url(k)))
            .collect();
        let client = self.endpoint(m);
        let peer = self.peer_url(m);
        let etcd = Command::new(&self.bin)
            .arg(format!("--name={}", EtcdCluster::name(m)))
            .arg(format!("--data-dir={}", member_dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.members[m].metrics_port
            ))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", cluster.join(",")))
            .arg("--initial-cluster-state=new")
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| harness_error(&self.bin, format!("cannot run it: {e}")))?;
        let watchdog = spawn_watchdog(etcd.id(), self.dir.path());
        self.members[m].process = Some(Running { etcd, watchdog });
        Ok(())
    }

    /// Waits until member `m` reports healthy (it has a leader and serves).
    pub fn wait_healthy(&mut self, m: usize) -> Result<(), StoreError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(p) = &mut self.members[m].process {
                if let Ok(Some(status)) = p.etcd.try_wait() {
                    let message = format!(
                        "member {m} exited with {status}; log:\n{}",
                        self.log_tail(m)
                    );
                    return Err(harness_error(&self.bin, message));
                }
            }
            if healthy(self.members[m].metrics_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let message = format!(
                    "member {m} not healthy after {READY_TIMEOUT:?}; log:\n{}",
                    self.log_tail(m)
                );
                return Err(harness_error(&self.bin, message));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines member `m` logged, for failure messages.
    pub fn log_tail(&self, m: usize) -> String {
        let path: &Path = &self.dir.path().join(EtcdCluster::name(m)).join("etcd.log");
        tail(path, 20)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in 0..self.members.len() {
            // SIGKILL ends a stopped (paused) member too.
            self.kill(m);
        }
    }
}
