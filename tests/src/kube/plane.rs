//! [`ControlPlane`]: etcd, kube-apiserver and kube-controller-manager on the
//! loopback, with railyard's CRDs and Multus's NAD CRD installed. Everything it
//! starts is recorded in `<dir>/plane.json` first, so `down` (from another
//! process too) can always stop it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::args::{self, Ports};
use super::kubeconfig::{self, Credentials};
use super::pki::Pki;
use super::{upstream, watchdog, Kubectl, NAD_CRD};
use crate::cluster::process::{self, ProcRecord};
use crate::error::{Error, Result};

const STATE_FILE: &str = "plane.json";
/// Each step's limit; the whole start takes about 10 s on two busy cores.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What `up` was asked for.
#[derive(Debug, Clone)]
pub struct PlaneOptions {
    /// Holds the PKI, etcd's data, the logs and the kubeconfigs.
    pub dir: PathBuf,
    /// railyard's CRDs (`deploy/kubernetes/crds`), installed before the
    /// controller manager starts so its garbage collector watches them from its
    /// first sync (it looks for new resource types only every 30 s).
    pub crds: Option<PathBuf>,
    /// Kill every process when this process dies (tests). A plane started from
    /// the command line must outlive the command instead.
    pub tie_to_this_process: bool,
}

/// The recorded plane: ports and processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaneState {
    pub dir: PathBuf,
    pub ports: Ports,
    pub processes: Vec<ProcRecord>,
}

#[derive(Debug)]
pub struct ControlPlane {
    pub state: PlaneState,
    /// How long each step of `up` took, for the record (`railyard-kube up`
    /// prints it; docs/kubernetes.md quotes it).
    pub timings: Vec<(&'static str, Duration)>,
    children: Vec<Child>,
    watchdogs: Vec<Child>,
    tied: bool,
}

impl PlaneState {
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("pki").join("ca.crt")
    }

    pub fn load(dir: &Path) -> Result<Option<PlaneState>> {
        let path = dir.join(STATE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Refused(format!("{}: unreadable: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read control plane state", path, e)),
        }
    }

    fn save(&self) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Refused(format!("{}: {e}", path.display())))?;
        std::fs::write(&path, text).map_err(|e| Error::io("write control plane state", path, e))
    }
}

impl ControlPlane {
    /// Starts the plane in `opts.dir` and waits until it serves: API server ready,
    /// CRDs established, the garbage collector synced.
    pub fn up(opts: &PlaneOptions) -> Result<ControlPlane> {
        let etcd_bin = upstream::etcd()?;
        let [apiserver_bin, kcm_bin, kubectl_bin] =
            upstream::require(["kube-apiserver", "kube-controller-manager", "kubectl"])?;
        if let Some(old) = PlaneState::load(&opts.dir)? {
            if old.processes.iter().any(process::is_alive) {
                return Err(Error::AlreadyRunning(format!(
                    "a control plane runs in {} (API server {}); `railyard-kube down --state {}` first",
                    opts.dir.display(),
                    old.server(),
                    opts.dir.display()
                )));
            }
        }
        process::private_dir(&opts.dir).map_err(|e| Error::io("create state dir", &opts.dir, e))?;
        let mut plane = ControlPlane {
            state: PlaneState {
                dir: opts.dir.clone(),
                ports: Ports {
                    etcd_client: free_port()?,
                    etcd_peer: free_port()?,
                    apiserver: free_port()?,
                },
                processes: Vec::new(),
            },
            timings: Vec::new(),
            children: Vec::new(),
            watchdogs: Vec::new(),
            tied: opts.tie_to_this_process,
        };
        match plane.start(opts, &etcd_bin, &apiserver_bin, &kcm_bin, &kubectl_bin) {
            Ok(()) => Ok(plane),
            Err(e) => {
                let tails = plane.log_tails(15);
                plane.stop();
                Err(match e {
                    Error::Timeout { what, secs, detail } => Error::Timeout {
                        what,
                        secs,
                        detail: format!("{detail}\n{tails}"),
                    },
                    other => other,
                })
            }
        }
    }

    fn start(
        &mut self,
        opts: &PlaneOptions,
        etcd_bin: &Path,
        apiserver_bin: &Path,
        kcm_bin: &Path,
        kubectl_bin: &Path,
    ) -> Result<()> {
        let dir = opts.dir.clone();
        let t = Instant::now();
        let pki = Pki::generate(&dir.join("pki"))?;
        self.timings.push(("pki", t.elapsed()));

        let t = Instant::now();
        let ports = self.state.ports;
        self.spawn("etcd", args::etcd(etcd_bin, &dir, ports))?;
        let health = SocketAddr::from(([127, 0, 0, 1], ports.etcd_client));
        self.wait("the control plane's etcd", || Ok(etcd_healthy(health)))?;
        self.timings.push(("etcd", t.elapsed()));

        let t = Instant::now();
        self.spawn(
            "kube-apiserver",
            args::apiserver(apiserver_bin, &pki, ports),
        )?;
        let server = self.state.server();
        let admin_config = self.state.admin_kubeconfig();
        kubeconfig::write(
            &admin_config,
            &server,
            &pki.ca,
            "railyard-admin",
            Credentials::Certificate {
                cert: &pki.admin_cert,
                key: &pki.admin_key,
            },
        )?;
        let kubectl = Kubectl::new(kubectl_bin, &admin_config, &dir.join("kubectl-cache"));
        self.wait("kube-apiserver /readyz", || {
            Ok(kubectl.attempt(&["get", "--raw=/readyz"], None)?.ok)
        })?;
        self.timings.push(("kube-apiserver", t.elapsed()));

        let t = Instant::now();
        let nad_crd = dir.join("multus-nad-crd.yaml");
        std::fs::write(&nad_crd, NAD_CRD).map_err(|e| Error::io("write NAD CRD", &nad_crd, e))?;
        let mut apply = vec!["apply".to_owned(), format!("-f={}", nad_crd.display())];
        if let Some(crds) = &opts.crds {
            apply.push(format!("-f={}", crds.display()));
        }
        kubectl.run(&apply.iter().map(String::as_str).collect::<Vec<_>>())?;
        kubectl.run(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ])?;
        self.timings.push(("CRDs", t.elapsed()));

        let t = Instant::now();
        let kcm_config = dir.join("kube-controller-manager.kubeconfig");
        kubeconfig::write(
            &kcm_config,
            &server,
            &pki.ca,
            "system:kube-controller-manager",
            Credentials::Certificate {
                cert: &pki.kcm_cert,
                key: &pki.kcm_key,
            },
        )?;
        self.spawn(
            "kube-controller-manager",
            args::controller_manager(kcm_bin, &pki, &kcm_config),
        )?;
        let log = self.log("kube-controller-manager");
        self.wait(
            "kube-controller-manager's garbage collector to sync",
            || {
                Ok(std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("all resource monitors have synced"))
            },
        )?;
        self.timings.push(("kube-controller-manager", t.elapsed()));
        Ok(())
    }

    /// kubectl as the cluster admin (group `system:masters`).
    pub fn admin(&self) -> Result<Kubectl> {
        let [kubectl] = upstream::require(["kubectl"])?;
        Ok(Kubectl::new(
            &kubectl,
            &self.state.admin_kubeconfig(),
            &self.state.dir.join("kubectl-cache"),
        ))
    }

    pub fn log(&self, role: &str) -> PathBuf {
        self.state.dir.join("logs").join(format!("{role}.log"))
    }

    /// The last lines of every process's log, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        self.state
            .processes
            .iter()
            .map(|p| {
                format!(
                    "--- {} ---\n{}\n",
                    p.log.display(),
                    process::tail(&p.log, lines)
                )
            })
            .collect()
    }

    /// Stops every process (SIGTERM, then SIGKILL), newest first.
    pub fn stop(&mut self) {
        stop_all(&self.state.processes, &mut self.children);
        for mut w in self.watchdogs.drain(..) {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    fn spawn(&mut self, role: &str, argv: Vec<String>) -> Result<()> {
        self.spawn_with(role, argv, &[])
    }

    /// Starts another process as part of the plane (recorded, stopped with it,
    /// logging to `logs/<role>.log`): `railyard-kube up --planner-etcd` runs the
    /// planner this way.
    pub fn spawn_with(
        &mut self,
        role: &str,
        argv: Vec<String>,
        env: &[(&str, String)],
    ) -> Result<()> {
        let (record, child) = process::spawn(role, &argv, env, &self.log(role))?;
        if self.tied {
            self.watchdogs.extend(watchdog::guard(record.pid, None));
        }
        self.state.processes.push(record);
        self.children.push(child);
        self.state.save()
    }

    /// Polls `ready` every 100 ms until it holds; fails early if a process died.
    fn wait(&mut self, what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
        let start = Instant::now();
        loop {
            if ready()? {
                return Ok(());
            }
            for (record, child) in self.state.processes.iter().zip(&mut self.children) {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(Error::Command {
                        command: record.argv.join(" "),
                        output: format!(
                            "exited with {status} while waiting for {what}; log {}:\n{}",
                            record.log.display(),
                            process::tail(&record.log, 25)
                        ),
                    });
                }
            }
            if start.elapsed() > STEP_TIMEOUT {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    secs: STEP_TIMEOUT.as_secs_f64(),
                    detail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.tied {
            self.stop();
        }
    }
}

/// Stops the plane recorded in `dir` (started by another process). Returns
/// whether one was recorded. Removes what `up` made in `dir`, nothing else.
pub fn down(dir: &Path) -> Result<bool> {
    let Some(state) = PlaneState::load(dir)? else {
        return Ok(false);
    };
    stop_all(&state.processes, &mut Vec::new());
    for entry in ["pki", "etcd", "logs", "kubectl-cache"] {
        let path = dir.join(entry);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read state dir", dir, e))? {
        let path = entry
            .map_err(|e| Error::io("read state dir", dir, e))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".kubeconfig") || name.ends_with(".yaml") || name == STATE_FILE {
            std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
    }
    Ok(true)
}

fn stop_all(processes: &[ProcRecord], children: &mut [Child]) {
    for (i, record) in processes.iter().enumerate().rev() {
        process::stop(record, children.get_mut(i), Duration::from_secs(5));
    }
}

/// A port below the ephemeral range ([`railyard_test_support::ports`]).
fn free_port() -> Result<u16> {
    railyard_test_support::ports::try_free_ports(1).ok_or_else(|| {
        Error::io(
            "pick a free port",
            "127.0.0.1",
            std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free loopback port"),
        )
    })
}

fn etcd_healthy(addr: SocketAddr) -> bool {
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
