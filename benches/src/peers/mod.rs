//! IPAM peers side by side (issue 20): railyard, host-local and Whereabouts, each
//! run the way a container runtime runs a CNI IPAM plugin: one process per call,
//! environment plus stdin, the same address space and the same number of
//! runtimes calling at once. `railyard-ipam-bench` drives it; the smoke test
//! `benches/tests/ipam_peers.rs` runs a small round for correctness only.
//!
//! A round is: `pods` ADDs spread over `concurrency` runtime threads, a check
//! that no address was handed out twice, the same pods' DELs, then a check of
//! the IPAM's own store that nothing is left allocated. The multi-rail round
//! gives each pod `rails` addresses: railyard in one call, the peers in one call
//! per rail (one NetworkAttachmentDefinition per rail, as their users must).

pub mod kube;
pub mod railyard;
pub mod report;
pub mod run;
pub mod svg;

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where `make deps` links the upstream binaries.
pub fn upstream_bin(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::var_os("RAILYARD_UPSTREAM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/railyard-upstream/bin"));
    let bin = dir.join(name);
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: run `make deps` (deploy/deps/upstream.list pins it)",
            bin.display()
        ))
    }
}

/// One of our own binaries, looked up next to the running executable, then in
/// the workspace's target/release and target/debug.
pub fn own_bin(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut dirs = vec![];
    for dir in exe.ancestors().skip(1).take(3) {
        dirs.push(dir.to_path_buf());
        dirs.push(dir.join("release"));
        dirs.push(dir.join("debug"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|b| b.is_file())
        .ok_or_else(|| {
            format!("{name} is missing: `cargo build --release --bins` (or `cargo build --bins`)")
        })
}

/// How one IPAM is called: its binary and the network config for rail `rail`.
pub trait Ipam: Sync {
    fn name(&self) -> &str;
    fn binary(&self) -> &Path;
    /// Calls per pod in a round of `rails` addresses per pod.
    fn calls_per_pod(&self, rails: usize) -> usize;
    /// The config of call `call` of a pod in a round of `rails` per pod.
    fn config(&self, rails: usize, call: usize) -> String;
    /// What its store still holds after every DEL (empty when correct).
    fn leftovers(&self, rails: usize) -> Result<Vec<String>, String>;
}

/// The result of one round of one IPAM at one concurrency.
#[derive(Clone, Debug)]
pub struct Round {
    pub ipam: String,
    pub rails: usize,
    pub concurrency: usize,
    pub pods: usize,
    /// Per pod: the whole ADD (all its calls).
    pub add: Vec<Duration>,
    pub del: Vec<Duration>,
    /// Wall time of the ADD phase.
    pub add_wall: Duration,
    pub addresses: usize,
    pub duplicates: Vec<String>,
    pub leftovers: Vec<String>,
    pub failures: Vec<String>,
}

impl Round {
    pub fn pods_per_sec(&self) -> f64 {
        self.pods as f64 / self.add_wall.as_secs_f64()
    }
    pub fn correct(&self) -> bool {
        self.duplicates.is_empty() && self.leftovers.is_empty() && self.failures.is_empty()
    }
}

/// Quantile `q` of `samples` (nearest rank).
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut s = samples.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// Runs `pods` pods through `ipam`: ADDs on `concurrency` threads, the
/// duplicate check, DELs on as many threads, the store check.
pub fn round(
    ipam: &dyn Ipam,
    netns: &Netns,
    rails: usize,
    concurrency: usize,
    pods: usize,
    tag: &str,
) -> Round {
    let calls = ipam.calls_per_pod(rails);
    let configs: Vec<String> = (0..calls).map(|c| ipam.config(rails, c)).collect();
    let cid = |pod: usize| format!("{tag}-{}-r{rails}-c{concurrency}-{pod:05}", ipam.name());
    let failures = Mutex::new(Vec::new());
    let addresses = Mutex::new(Vec::new());

    let run_phase = |command: &str| -> (Vec<Duration>, Duration) {
        let next = AtomicUsize::new(0);
        let lat = Mutex::new(Vec::with_capacity(pods));
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..concurrency.min(pods).max(1) {
                s.spawn(|| loop {
                    let pod = next.fetch_add(1, Ordering::Relaxed);
                    if pod >= pods {
                        break;
                    }
                    let t = Instant::now();
                    for (call, config) in configs.iter().enumerate() {
                        match exec(ipam.binary(), &netns.path, command, &cid(pod), pod, config) {
                            Ok(out) if command == "ADD" => {
                                let ips = result_ips(&out);
                                if ips.len() != rails / calls {
                                    failures.lock().unwrap().push(format!(
                                        "ADD pod {pod} call {call}: {} addresses, not {}: {out}",
                                        ips.len(),
                                        rails / calls
                                    ));
                                }
                                addresses.lock().unwrap().extend(ips);
                            }
                            Ok(_) => {}
                            Err(e) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{command} pod {pod} call {call}: {e}")),
                        }
                    }
                    lat.lock().unwrap().push(t.elapsed());
                });
            }
        });
        (lat.into_inner().unwrap(), start.elapsed())
    };

    let (add, add_wall) = run_phase("ADD");
    let addresses = std::mem::take(&mut *addresses.lock().unwrap());
    let mut seen = HashSet::new();
    let duplicates: Vec<String> = addresses
        .iter()
        .filter(|a| !seen.insert(**a))
        .map(|a| a.to_string())
        .collect();
    let (del, _) = run_phase("DEL");
    let leftovers = ipam
        .leftovers(rails)
        .unwrap_or_else(|e| vec![format!("store unreadable: {e}")]);
    Round {
        ipam: ipam.name().to_string(),
        rails,
        concurrency,
        pods,
        add,
        del,
        add_wall,
        addresses: addresses.len(),
        duplicates,
        leftovers,
        failures: failures.into_inner().unwrap(),
    }
}

/// One CNI call as a runtime makes it. Returns stdout, or why it failed.
fn exec(
    bin: &Path,
    netns: &Path,
    command: &str,
    cid: &str,
    pod: usize,
    config: &str,
) -> Result<String, String> {
    let mut child = Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", bin.parent().unwrap_or(Path::new("/")))
        // What kubelet's runtimes pass: IgnoreUnknown first, so host-local
        // accepts the K8S_ keys it does not know.
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{pod};K8S_POD_INFRA_CONTAINER_ID={cid}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{} does not start: {e}", bin.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(config.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} exited {}: {} {}",
            bin.display(),
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The pod's network namespace: one that exists (railyard-ipam's ADD refuses
/// one that does not) and is not the plugin's own (host-local 1.10 refuses
/// that). Held by a `sleep` in a new namespace, killed on drop; needs root.
#[derive(Debug)]
pub struct Netns {
    pub path: PathBuf,
    holder: std::process::Child,
}

impl Netns {
    pub fn new() -> Result<Netns, String> {
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "86400"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("unshare --net (util-linux; needs root): {e}"))?;
        let ns = Netns {
            path: PathBuf::from(format!("/proc/{}/ns/net", holder.id())),
            holder,
        };
        let ours = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        let start = Instant::now();
        // Until unshare has moved into its namespace and exec'd sleep.
        while std::fs::read_link(&ns.path).ok().as_ref() == Some(&ours) || !ns.path.exists() {
            if start.elapsed() > Duration::from_secs(5) {
                return Err("unshare --net did not make a namespace in 5 s (root needed)".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The addresses of a CNI result (`ips[].address`, any version from 0.3.0).
fn result_ips(out: &str) -> Vec<IpAddr> {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_default();
    v["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect()
}

/// host-local: a file per address under `dataDir/<network>/`, a lock per network.
#[derive(Debug)]
pub struct HostLocal {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
}

impl HostLocal {
    fn network(rail: usize) -> String {
        format!("rail{rail}")
    }
}

impl Ipam for HostLocal {
    fn name(&self) -> &str {
        "host-local"
    }
    fn binary(&self) -> &Path {
        &self.bin
    }
    fn calls_per_pod(&self, rails: usize) -> usize {
        rails
    }
    fn config(&self, _rails: usize, call: usize) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"{}","type":"macvlan","master":"eth{call}","ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{}"}}]]}}}}"#,
            Self::network(call),
            self.data_dir.display(),
            rail_subnet(call)
        )
    }
    fn leftovers(&self, rails: usize) -> Result<Vec<String>, String> {
        let mut left = vec![];
        for rail in 0..rails {
            let dir = self.data_dir.join(Self::network(rail));
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name != "lock" && !name.starts_with("last_reserved_ip") {
                    left.push(format!("{}/{name}", dir.display()));
                }
            }
        }
        Ok(left)
    }
}

/// The same address space for every IPAM: a /16 per rail, as railyard's plan
/// gives each host (`railyard::PLAN`).
pub fn rail_subnet(rail: usize) -> String {
    format!("10.{}.0.0/16", 128 + rail * 16)
}
