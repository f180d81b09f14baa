//! Running the CNI plugins against one host's daemon as a runtime does, and
//! reading the daemon's side back (IPAM CHECK on its socket, the etcd mirror),
//! for the tests of `ipam_rails_owed` and `ipam_disk_full`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use railyard_e2e::cluster::cmd::{ip_in, netns_add, netns_del};
use railyard_e2e::cluster::pods::netconf;
use railyard_e2e::ClusterSpec;
use serde_json::Value;

use crate::common::{TestCluster, CONVERGE};

/// CNI "try again later".
pub const TRY_AGAIN_LATER: u64 = 11;
/// CNI "not available": what STATUS answers for a network that is not ready.
pub const NOT_READY: u64 = 50;
/// railyard's "the NICs asked for cannot be given" (`codes::NO_NIC`).
pub const NO_NIC: u64 = 100;

/// A pod namespace made by a test, removed when it is dropped (the cluster's
/// teardown only knows the pods it attached itself).
pub struct Pod {
    pub name: String,
}

impl Pod {
    pub fn new(name: String) -> Pod {
        // A killed earlier run may have left it.
        netns_del(&name).expect("remove a stale pod netns");
        netns_add(&name).expect("create a pod netns");
        Pod { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The addresses on the pod's railyard interfaces (`net1-<i>`).
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        let text = ip_in(&self.name, &["-j", "addr"]).expect("ip -j addr in the pod");
        let links: Value = serde_json::from_str(&text).expect("ip -j prints JSON");
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("net1-")))
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] != "link")
            .filter_map(|a| a["local"].as_str()?.parse().ok())
            .collect()
    }

    /// The pod's interfaces other than loopback.
    pub fn links(&self) -> Vec<String> {
        let text = ip_in(&self.name, &["-j", "link"]).expect("ip -j link in the pod");
        let links: Value = serde_json::from_str(&text).expect("ip -j prints JSON");
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| *n != "lo")
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = netns_del(&self.name);
    }
}

/// One plugin run: stdout as JSON, or the CNI error code and the whole reply.
pub type Outcome = Result<Value, (u64, String)>;

/// Runs `plugin` (`railyard-cni` or `railyard-ipam`) for host `host` as a
/// runtime does: in the host's namespace, the CNI variables in the
/// environment (none but the command for STATUS), the network config with
/// `extra` merged in on stdin.
pub fn run(
    spec: &ClusterSpec,
    host: usize,
    plugin: &str,
    command: &str,
    cid: &str,
    netns: &str,
    extra: Option<&Value>,
) -> Outcome {
    let mut conf = netconf(spec, host);
    if command == "STATUS" {
        conf["cniVersion"] = "1.1.0".into();
    }
    if let (Some(Value::Object(extra)), Some(conf)) = (extra, conf.as_object_mut()) {
        conf.extend(extra.clone());
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &spec.host(host)])
        .arg(spec.bin_dir.join(plugin))
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", spec.cni_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if command != "STATUS" {
        cmd.env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "net1")
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={cid}"),
            );
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {plugin}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .expect("write the config");
    }
    let out = child.wait_with_output().expect("wait for the plugin");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    if out.status.success() {
        return Ok(json);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err((
        json["code"].as_u64().unwrap_or(0),
        format!("{} {}", stdout.trim(), stderr.trim()),
    ))
}

/// `railyard-cni` ADD of a pod of its own on host `host`.
pub fn cni_add(spec: &ClusterSpec, host: usize, pod: &Pod, extra: Option<&Value>) -> Outcome {
    run(
        spec,
        host,
        "railyard-cni",
        "ADD",
        &pod.name,
        &pod.path(),
        extra,
    )
}

/// `railyard-cni`'s state and lock files of container `cid` (none once an
/// ADD failed and cleaned up, or a DEL finished).
pub fn cni_files(spec: &ClusterSpec, cid: &str) -> Vec<String> {
    std::fs::read_dir(spec.cni_state())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{cid}@")))
                .collect()
        })
        .unwrap_or_default()
}

/// The addresses of a CNI result's `ips`.
pub fn result_addresses(result: &Value) -> BTreeSet<IpAddr> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.parse::<ipnet::IpNet>().ok())
        .map(|a| a.addr())
        .collect()
}

/// Whether host `host`'s daemon holds `cid`, asked directly (IPAM CHECK: code
/// 3 is no). Any other failure fails the test.
pub fn daemon_holds(spec: &ClusterSpec, host: usize, cid: &str) -> bool {
    // CHECK needs an existing netns; the host's own is one.
    let netns = format!("/run/netns/{}", spec.host(host));
    match run(spec, host, "railyard-ipam", "CHECK", cid, &netns, None) {
        Ok(_) => true,
        Err((3, _)) => false,
        Err((code, msg)) => panic!("IPAM CHECK of {cid} failed with {code}: {msg}"),
    }
}

/// The etcd mirror of the network: container ID to addresses, asserting no
/// address is held by two attachments.
pub fn mirrored(c: &mut TestCluster) -> BTreeMap<String, BTreeSet<IpAddr>> {
    let network = c.spec().network.clone();
    let records = c
        .observer()
        .expect("observer")
        .allocations(&network)
        .unwrap_or_default();
    let mut owner = BTreeMap::<IpAddr, String>::new();
    let mut held = BTreeMap::<String, BTreeSet<IpAddr>>::new();
    for r in &records {
        for a in r.addresses() {
            if let Some(other) = owner.insert(a, r.id.container_id.clone()) {
                panic!("{a} is held by {other} and {}", r.id.container_id);
            }
            held.entry(r.id.container_id.clone()).or_default().insert(a);
        }
    }
    held
}

/// Waits until the mirror satisfies `done`, returning it.
pub fn wait_mirror(
    c: &mut TestCluster,
    what: &str,
    timeout: Duration,
    done: impl Fn(&BTreeMap<String, BTreeSet<IpAddr>>) -> bool,
) -> BTreeMap<String, BTreeSet<IpAddr>> {
    let start = Instant::now();
    loop {
        let now = mirrored(c);
        if done(&now) {
            return now;
        }
        assert!(
            start.elapsed() < timeout,
            "etcd's mirror never held {what} within {timeout:?}; it holds {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `cond` holds of host `host`'s registration in etcd (what its
/// daemon last discovered), or fails naming `what`.
pub fn wait_registration(
    c: &mut TestCluster,
    host: usize,
    what: &str,
    cond: impl Fn(&railyard_core::HostInventory) -> bool,
) {
    let name = c.spec().host(host);
    let start = Instant::now();
    loop {
        let reg = c.observer().expect("observer").registration(&name);
        if let Ok(Some(inv)) = &reg {
            if cond(inv) {
                return;
            }
        }
        assert!(
            start.elapsed() < CONVERGE,
            "{name}'s daemon never registered {what}: {reg:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
