//! The shared control plane, planner and planner etcd, and the helpers every
//! test uses (waiting, conditions, host registrations).

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use railyard_e2e::kube::{identity, ControlPlane, Kubectl, PlaneOptions, Planner};
use railyard_store::testing::EtcdServer;
use railyard_store::{EtcdStore, Store};
use serde_json::Value;

pub struct Env {
    pub plane: ControlPlane,
    pub kubectl: Kubectl,
    /// The planner's etcd (not the API server's).
    _etcd: EtcdServer,
    pub store: EtcdStore,
    pub rt: tokio::runtime::Runtime,
    pub planner: Mutex<Planner>,
    _dir: tempfile::TempDir,
}

static ENV: OnceLock<Result<Env, String>> = OnceLock::new();

/// The shared environment, started by the first test that asks. A failed start
/// fails every test with the same message.
pub fn env() -> &'static Env {
    match ENV.get_or_init(|| start("k8s-shared").map_err(|e| format!("{e:#}"))) {
        Ok(env) => env,
        Err(e) => panic!("the Kubernetes test environment did not start: {e}"),
    }
}

/// A control plane with the shipped CRDs and RBAC, a planner etcd and the
/// planner as the controller's ServiceAccount.
pub fn start(name: &str) -> anyhow::Result<Env> {
    start_with_rbac(name, None)
}

/// Like [`start`], with `rbac_yaml` applied instead of deploy/kubernetes/rbac.yaml.
pub fn start_with_rbac(name: &str, rbac_yaml: Option<&str>) -> anyhow::Result<Env> {
    let bins = railyard_e2e::bins::for_tests()?;
    let dir = process_dir(name)?;
    let manifests = identity::manifests_dir();
    let started = Instant::now();
    let plane = ControlPlane::up(&PlaneOptions {
        dir: dir.path().join("plane"),
        crds: Some(manifests.join("crds")),
        tie_to_this_process: true,
    })?;
    let kubeconfig = match rbac_yaml {
        None => identity::install_as_shipped(&plane, &manifests)?,
        Some(text) => identity::install(&plane, &manifests, text, "controller.kubeconfig")?,
    };
    eprintln!(
        "{name}: control plane up in {:.2} s ({:?})",
        started.elapsed().as_secs_f64(),
        plane.timings
    );
    let etcd = EtcdServer::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let store = rt.block_on(etcd.store())?;
    let planner = Planner::start(
        &bins,
        &etcd.endpoint(),
        &kubeconfig,
        name,
        &dir.path().join("planner.log"),
    )?;
    let kubectl = plane.admin()?;
    let env = Env {
        plane,
        kubectl,
        _etcd: etcd,
        store,
        rt,
        planner: Mutex::new(planner),
        _dir: dir,
    };
    env.wait_for_controller(name)?;
    Ok(env)
}

/// A temporary directory `railyard-<name>-<pid>-*`. The shared environment
/// lives in a static and is never dropped, so its directory (the control
/// plane's and the planner's data, tens of MB) outlives the run: the
/// directories of processes that are gone are removed here first, so runs do
/// not pile them up.
fn process_dir(name: &str) -> anyhow::Result<tempfile::TempDir> {
    let tmp = std::env::temp_dir();
    let prefix = format!("railyard-{name}-");
    for entry in std::fs::read_dir(&tmp)?.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .tempdir_in(tmp)?)
}

impl Env {
    /// Returns once the controller answers: a sentinel network it must refuse
    /// (hostBlock 99) has its Invalid condition. Tests apply their networks
    /// right after, and a network applied while the controller's watch was
    /// still starting was, now and then, never reconciled (status null for
    /// the whole test). The sentinel is touched every 5 s until answered, and
    /// a touch that was needed is printed: it means the controller missed an
    /// object created during its start.
    fn wait_for_controller(&self, name: &str) -> anyhow::Result<()> {
        let sentinel = network(
            "t-env-ready",
            "10.254.0.0/16",
            r#"{"type": "multi-nic-ipam", "hostBlock": 99, "interfaceBlock": 2}"#,
            IPVLAN,
            &[],
        );
        let started = Instant::now();
        let mut touches = 0;
        self.kubectl.apply(&sentinel)?;
        loop {
            let answered = self
                .get("mnn", "t-env-ready", None)
                .is_some_and(|o| condition(&o, "Invalid").is_some());
            if answered {
                break;
            }
            let waited = started.elapsed();
            if waited > Duration::from_secs(60) {
                anyhow::bail!(
                    "the controller did not answer a network in 60 s\n{}",
                    self.planner_log_tail(40)
                );
            }
            if waited > Duration::from_secs(5 * (touches + 1)) {
                touches += 1;
                self.kubectl.run(&[
                    "annotate",
                    "--overwrite",
                    "mnn",
                    "t-env-ready",
                    &format!("railyard.dev/test-touch={touches}"),
                ])?;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if touches > 0 {
            eprintln!("{name}: the controller answered the sentinel network only after {touches} touch(es)");
        }
        self.kubectl
            .run(&["delete", "mnn", "t-env-ready", "--wait=false"])?;
        Ok(())
    }

    pub fn planner(&self) -> MutexGuard<'_, Planner> {
        self.planner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The planner's log, for failure messages.
    pub fn planner_log_tail(&self, lines: usize) -> String {
        let log = self.planner().log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `kubectl get KIND NAME [-n NS] -o json`, or None when it does not exist.
    pub fn get(&self, kind: &str, name: &str, namespace: Option<&str>) -> Option<Value> {
        let mut args = vec!["get", kind, name, "--ignore-not-found", "-o", "json"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let text = self.kubectl.run(&args).unwrap_or_else(|e| panic!("{e}"));
        if text.trim().is_empty() {
            None
        } else {
            Some(serde_json::from_str(&text).expect("kubectl -o json"))
        }
    }

    pub fn apply(&self, yaml: &str) {
        self.kubectl
            .apply(yaml)
            .unwrap_or_else(|e| panic!("kubectl apply failed: {e}\n{yaml}"));
    }

    pub fn create_namespaces(&self, names: &[String]) {
        let yaml: String = names
            .iter()
            .map(|n| format!("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n"))
            .collect();
        self.apply(&yaml);
    }

    /// Polls `f` every 100 ms until it returns Some, or panics after `timeout`
    /// with `what`, the last observation and the planner's log.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Result<T, String>,
    ) -> T {
        let start = Instant::now();
        loop {
            match f() {
                Ok(v) => return v,
                Err(last) if start.elapsed() > timeout => panic!(
                    "timed out after {timeout:?} waiting for {what}; last seen: {last}\n\
                     --- planner log ---\n{}\n{}",
                    self.planner_log_tail(40),
                    self.plane.log_tails(10)
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Writes a host registration as a route-daemon would (without its lease:
    /// the test deletes it to make the host leave).
    pub fn register_host(&self, name: &str, nics: &[(&str, &str)]) {
        let nics: Vec<Value> = nics
            .iter()
            .map(|(nic, addr)| serde_json::json!({"name": nic, "addresses": [addr], "mtu": 1500, "up": true}))
            .collect();
        let value = serde_json::json!({"name": name, "nics": nics}).to_string();
        self.rt
            .block_on(self.store.put(
                &format!("/railyard/v1/hosts/{name}"),
                value.into_bytes(),
                None,
            ))
            .expect("write host registration");
    }

    pub fn unregister_host(&self, name: &str) {
        self.rt
            .block_on(self.store.delete(&format!("/railyard/v1/hosts/{name}")))
            .expect("delete host registration");
    }

    /// Writes `value` at `key` as JSON (a record a route-daemon would mirror).
    pub fn etcd_put(&self, key: &str, value: &Value) {
        self.rt
            .block_on(self.store.put(key, value.to_string().into_bytes(), None))
            .expect("etcd put");
    }

    pub fn etcd_delete(&self, key: &str) {
        self.rt
            .block_on(self.store.delete(key))
            .expect("etcd delete");
    }

    pub fn etcd_get(&self, key: &str) -> Option<Value> {
        let kv = self.rt.block_on(self.store.get(key)).expect("etcd get")?;
        Some(serde_json::from_slice(&kv.value).expect("JSON value in etcd"))
    }
}

/// A condition of an object's status: (status, reason, message).
pub fn condition(obj: &Value, kind: &str) -> Option<(String, String, String)> {
    let c = obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((s("status"), s("reason"), s("message")))
}

/// A MultiNicNetwork: `subnet`, `ipam` (JSON), `plugin` (YAML block for
/// spec.plugin, indented 4), target `namespaces`.
pub fn network(
    name: &str,
    subnet: &str,
    ipam: &str,
    plugin: &str,
    namespaces: &[String],
) -> String {
    let ns: String = namespaces.iter().map(|n| format!("  - {n}\n")).collect();
    format!(
        "apiVersion: railyard.dev/v1\nkind: MultiNicNetwork\nmetadata:\n  name: {name}\nspec:\n  \
         subnet: \"{subnet}\"\n  ipam: '{ipam}'\n  plugin:\n{plugin}  attachPolicy:\n    strategy: none\n  \
         namespaces:\n{ns}"
    )
}

pub const IPAM: &str =
    r#"{"type": "multi-nic-ipam", "hostBlock": 6, "interfaceBlock": 2, "vlanMode": "l3"}"#;
pub const IPVLAN: &str = "    cniVersion: \"1.0.0\"\n    type: ipvlan\n    args:\n      mode: l3\n";
pub const TIMEOUT: Duration = Duration::from_secs(30);
