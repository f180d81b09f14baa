//! Attaching pods the way a container runtime does: a network namespace per pod,
//! then `railyard-cni` executed in the host's namespace with the CNI environment
//! and the network config on stdin. No kubelet, no Multus: what is measured is
//! railyard plus the reference plugins.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cmd::{self, netns_add, netns_del};
use super::spec::{ClusterSpec, Delegate};
use super::state::PodRecord;
use crate::error::{Error, Result};

/// The network config a runtime would find in its CNI config directory.
pub fn netconf(spec: &ClusterSpec, host: usize) -> serde_json::Value {
    let delegate = match spec.delegate {
        Delegate::Ptp => serde_json::json!({"type": "ptp"}),
        Delegate::Macvlan => serde_json::json!({"type": "macvlan", "mode": "bridge"}),
        Delegate::Ipvlan => {
            serde_json::json!({"type": "ipvlan", "mode": spec.ipvlan_mode.as_str()})
        }
        Delegate::HostDevice => {
            serde_json::json!({"type": "host-device", "spareDevices": super::spec::SPARE_TEMPLATE})
        }
    };
    let mut conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": spec.network,
        "type": "railyard-cni",
        "ipam": {
            "type": "railyard-ipam",
            "socket": spec.socket(host),
        },
        "delegate": delegate,
        "stateDir": spec.host_cni_state(host),
        "inProcessDelegates": spec.in_process_delegates,
    });
    // What the controller's NAD carries for `spec.ipam.external`; each host
    // keeps its own host-local records, as separate machines do.
    if let Some(external) = &spec.external_ipam {
        let mut external = external.clone();
        if external["type"] == "host-local" && external.get("dataDir").is_none() {
            external["dataDir"] = spec.external_ipam_dir(host).display().to_string().into();
        }
        conf["ipam"]["external"] = external;
    }
    conf
}

/// A CNI plugin's failure: its error code (0 when it gave none) and text.
#[derive(Debug, Clone)]
pub struct CniFailure {
    pub code: u64,
    pub detail: String,
}

/// Runs `railyard-cni` in host `host`'s namespace as a runtime would, once.
pub fn exec_cni(
    spec: &ClusterSpec,
    host: usize,
    env: &[(&str, String)],
    conf: &serde_json::Value,
) -> std::result::Result<String, CniFailure> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &spec.host(host)])
        .arg(spec.bin_dir.join("railyard-cni"))
        .env("CNI_PATH", spec.cni_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let failed = |detail: String| CniFailure { code: 0, detail };
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot run railyard-cni: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| failed(format!("cannot write the config: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("railyard-cni: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    // The CNI error object is on stdout; stderr may add the plugin's log lines.
    let code = serde_json::from_str::<serde_json::Value>(&stdout)
        .ok()
        .and_then(|v| v["code"].as_u64())
        .unwrap_or(0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(CniFailure {
        code,
        detail: format!("{} {}", stdout.trim(), stderr.trim())
            .trim()
            .to_owned(),
    })
}

/// CNI "try again later": the daemon is not ready for this network yet.
pub const TRY_AGAIN_LATER: u64 = 11;
/// How long an ADD that is told to try again later keeps trying, as a kubelet
/// would keep retrying the pod sandbox.
const RETRY_FOR: Duration = Duration::from_secs(15);

fn cni(spec: &ClusterSpec, host: usize, pod: &str, command: &'static str) -> Result<String> {
    cni_with(spec, host, pod, command, None)
}

/// [`cni`] with a `runtimeConfig` (what Multus fills from the pod's
/// network selection element: `ips`, `mac`).
fn cni_with(
    spec: &ClusterSpec,
    host: usize,
    pod: &str,
    command: &'static str,
    runtime_config: Option<&serde_json::Value>,
) -> Result<String> {
    let env = pod_env(pod, command);
    let mut conf = netconf(spec, host);
    if let Some(rc) = runtime_config {
        conf["runtimeConfig"] = rc.clone();
    }
    let start = Instant::now();
    loop {
        match exec_cni(spec, host, &env, &conf) {
            Ok(out) => return Ok(out),
            Err(f) if f.code == TRY_AGAIN_LATER && start.elapsed() < RETRY_FOR => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(f) => {
                return Err(Error::Cni {
                    command,
                    pod: pod.to_owned(),
                    host: spec.host(host),
                    detail: f.detail,
                })
            }
        }
    }
}

/// The CNI environment of `command` for pod `pod` (its namespace
/// `/run/netns/<pod>`, container ID the pod's name, interface `net1`).
pub fn pod_env(pod: &str, command: &str) -> [(&'static str, String); 5] {
    [
        ("CNI_COMMAND", command.to_owned()),
        ("CNI_CONTAINERID", pod.to_owned()),
        ("CNI_NETNS", format!("/run/netns/{pod}")),
        ("CNI_IFNAME", "net1".to_owned()),
        (
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}"),
        ),
    ]
}

/// Waits until CNI STATUS on host `i` says the network is ready (the daemon
/// knows the host's blocks), as a container runtime checks before it sends
/// pods to a node.
pub fn wait_ready(spec: &ClusterSpec, i: usize, timeout: Duration) -> Result<()> {
    let mut conf = netconf(spec, i);
    // STATUS exists from CNI 1.1.0; railyard-cni speaks it.
    conf["cniVersion"] = "1.1.0".into();
    let env = [("CNI_COMMAND", "STATUS".to_owned())];
    let start = Instant::now();
    loop {
        match exec_cni(spec, i, &env, &conf) {
            Ok(_) => return Ok(()),
            Err(f) if start.elapsed() > timeout => {
                return Err(Error::Timeout {
                    what: format!("CNI STATUS on {}", spec.host(i)),
                    secs: timeout.as_secs_f64(),
                    detail: f.detail,
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Creates pod `k` of host `i` and runs CNI ADD. On a failed ADD the namespace
/// is removed again, so a failure leaves nothing behind.
pub fn attach(spec: &ClusterSpec, i: usize, k: usize) -> Result<PodRecord> {
    attach_with(spec, i, k, None)
}

/// [`attach`] with a `runtimeConfig` for the ADD (static `ips`, say).
pub fn attach_with(
    spec: &ClusterSpec,
    i: usize,
    k: usize,
    runtime_config: Option<&serde_json::Value>,
) -> Result<PodRecord> {
    attach_named(spec, i, &spec.pod(i, k), runtime_config)
}

/// [`attach_with`] for a pod of any name on host `i` (a StatefulSet pod
/// recreated on another host keeps its name).
pub fn attach_named(
    spec: &ClusterSpec,
    i: usize,
    name: &str,
    runtime_config: Option<&serde_json::Value>,
) -> Result<PodRecord> {
    let name = name.to_owned();
    netns_add(&name)?;
    let out = match cni_with(spec, i, &name, "ADD", runtime_config) {
        Ok(out) => out,
        Err(e) => {
            let _ = netns_del(&name);
            return Err(e);
        }
    };
    let result: serde_json::Value = serde_json::from_str(&out).map_err(|e| Error::Cni {
        command: "ADD",
        pod: name.clone(),
        host: spec.host(i),
        detail: format!("result is not JSON ({e}): {out}"),
    })?;
    Ok(PodRecord {
        name,
        host: spec.host(i),
        host_index: i,
        addresses: result_addresses(&result),
    })
}

/// The addresses of a CNI result's `ips`, in its order.
pub fn result_addresses(result: &serde_json::Value) -> Vec<IpAddr> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.parse::<ipnet::IpNet>().ok())
        .map(|n| n.addr())
        .collect()
}

/// CNI DEL (the addresses go back to the host's blocks), then the namespace.
pub fn detach(spec: &ClusterSpec, i: usize, pod: &str) -> Result<()> {
    cni(spec, i, pod, "DEL")?;
    netns_del(pod)
}

/// `ping` from inside `pod` to `dst`, once, one second at most.
pub fn ping(pod: &str, dst: IpAddr) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", pod, "ping", "-c", "1", "-W", "1", "-q"]);
    if dst.is_ipv6() {
        cmd.arg("-6");
    }
    cmd.arg(dst.to_string());
    cmd::run(&mut cmd, None).map(|_| ())
}
