//! CNI 1.1 as Kubernetes runtimes and Multus call it: through libcni 1.3 (the
//! `railyard-cni-runner` of `make deps`, deploy/deps/cni-runner), against
//! `railyard-cni`/`railyard-ipam` and a real route-daemon of the local cluster.
//! libcni adds what a hand-rolled runner would not: the result cache it feeds
//! back as `prevResult` to CHECK and DEL, version negotiation with every plugin,
//! and the GC and STATUS verbs of CNI 1.1 (the valid-attachments list on GC).
//!
//! Needs root (network namespaces), `make deps` and `cargo build --bins`; fails,
//! never skips, without them. Management ids 240-249 belong to this file.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use railyard_e2e::cluster::cmd::{ip_in, netns_add, netns_del};
use railyard_e2e::cluster::etcd::free_port_pair;
use railyard_e2e::cluster::pods::{netconf, wait_ready};
use railyard_e2e::kube::upstream;
use railyard_e2e::{bins, Cluster, ClusterSpec};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(30);

/// A cluster of one host with two rails, the reference plugins of `make deps`
/// (CNI 1.1: Debian's ptp speaks up to 1.0.0), torn down on drop.
struct TestCluster(Option<Cluster>);

impl TestCluster {
    fn up(name: &str, mgmt_id: u8) -> TestCluster {
        assert!(
            (240..=249).contains(&mgmt_id),
            "k8s_libcni owns management ids 240-249"
        );
        assert!(
            nix::unistd::geteuid().is_root(),
            "the libcni tests need root (network namespaces, links, routes)"
        );
        let bin_dir = bins::for_tests().unwrap_or_else(|e| panic!("{e}"));
        let mut s = ClusterSpec::new(PathBuf::from("/tmp/railyard-e2e").join(name), bin_dir);
        s.prefix = format!("{name}-");
        s.mgmt_id = mgmt_id;
        s.etcd_port = free_port_pair().expect("two free loopback ports for etcd");
        s.hosts = 1;
        s.rails = 2;
        s.pods = 0;
        s.lease_ttl = 3;
        s.cni_dir = upstream::dir();
        if let Some(mut stale) = Cluster::open(&s.state_dir).expect("read old state") {
            stale.down();
        }
        let dir = s.state_dir.clone();
        match Cluster::up(s, &mut |l| eprintln!("[up] {l}")) {
            Ok(c) => TestCluster(Some(c)),
            Err(e) => {
                if let Ok(Some(mut partial)) = Cluster::open(&dir) {
                    eprintln!("{}", partial.log_tails(30));
                    partial.down();
                }
                panic!("cluster did not come up: {e}");
            }
        }
    }

    fn get(&mut self) -> &mut Cluster {
        self.0.as_mut().expect("cluster")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if std::thread::panicking() {
                eprintln!("{}", c.log_tails(40));
            }
            c.down();
        }
    }
}

/// A pod network namespace, removed on drop.
struct Pod(String);

impl Pod {
    fn new(name: String) -> Pod {
        netns_del(&name).expect("remove a stale pod netns");
        netns_add(&name).expect("create a pod netns");
        Pod(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    /// Addresses on the pod's railyard interfaces (`net1-<i>`).
    fn addresses(&self) -> BTreeSet<IpAddr> {
        let text = ip_in(&self.0, &["-j", "addr"]).expect("ip -j addr in the pod");
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
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = netns_del(&self.0);
    }
}

/// The runtime's view: a conflist at CNI 1.1.0 holding the cluster's
/// `railyard-cni` config, libcni's cache dir, the runner.
struct Runtime {
    runner: PathBuf,
    conf: PathBuf,
    cache: PathBuf,
    spec: ClusterSpec,
}

impl Runtime {
    fn new(spec: &ClusterSpec) -> Runtime {
        let [runner] = upstream::require(["railyard-cni-runner"]).unwrap_or_else(|e| panic!("{e}"));
        let mut plugin = netconf(spec, 0);
        let name = plugin["name"].clone();
        if let Some(p) = plugin.as_object_mut() {
            p.remove("name");
            p.remove("cniVersion");
        }
        let list = json!({"cniVersion": "1.1.0", "name": name, "plugins": [plugin]});
        let dir = spec.state_dir.join("libcni");
        std::fs::create_dir_all(&dir).expect("libcni dir");
        let conf = dir.join("railyard.conflist");
        std::fs::write(&conf, list.to_string()).expect("write the conflist");
        Runtime {
            runner,
            conf,
            cache: dir.join("cache"),
            spec: spec.clone(),
        }
    }

    /// Runs `command` in host 0's namespace as a runtime there would; Ok(stdout
    /// JSON) or Err((CNI code, reply)).
    fn run(&self, command: &str, extra: &[&str]) -> Result<Value, (u64, String)> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.spec.host(0)])
            .arg(&self.runner)
            .arg(command)
            .arg(format!("--conf={}", self.conf.display()))
            .arg(format!("--cache-dir={}", self.cache.display()))
            .args(extra)
            .env("CNI_PATH", self.spec.cni_path())
            .output()
            .expect("run railyard-cni-runner");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        if out.status.success() {
            Ok(json)
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err((
                json["code"].as_u64().unwrap_or(0),
                format!("{stdout} {stderr}"),
            ))
        }
    }

    fn attach(&self, command: &str, cid: &str, pod: &Pod) -> Result<Value, (u64, String)> {
        self.run(
            command,
            &[
                &format!("--container-id={cid}"),
                &format!("--netns={}", pod.path()),
                "--ifname=net1",
            ],
        )
    }

    /// Whether the daemon holds `cid`, asked with `railyard-ipam` CHECK on its
    /// socket (code 3: it does not), independent of libcni's cache.
    fn daemon_holds(&self, cid: &str, pod: &Pod) -> bool {
        let conf = netconf(&self.spec, 0).to_string();
        let out = Command::new("sh")
            .arg("-c")
            .arg("printf '%s' \"$CONF\" | ip netns exec \"$HOST\" \"$IPAM\"")
            .env("CONF", conf)
            .env("HOST", self.spec.host(0))
            .env("IPAM", self.spec.bin_dir.join("railyard-ipam"))
            .env("CNI_COMMAND", "CHECK")
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", pod.path())
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", self.spec.cni_path())
            .output()
            .expect("run railyard-ipam");
        if out.status.success() {
            return true;
        }
        let reply: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(reply["code"], 3, "IPAM CHECK of {cid}: {reply}");
        false
    }
}

fn result_ips(result: &Value) -> BTreeSet<IpAddr> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .collect()
}

#[test]
fn add_check_del_gc_and_status_through_libcni() {
    let mut cluster = TestCluster::up("k8s-libcni", 240);
    let spec = cluster.get().spec().clone();
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready for pods");
    let rt = Runtime::new(&spec);
    let pods: Vec<(String, Pod)> = (0..3)
        .map(|k| {
            (
                format!("libcni-{k}"),
                Pod::new(format!("{}pod-{k}", spec.prefix)),
            )
        })
        .collect();

    // STATUS with the daemon up: ready.
    rt.run("status", &[])
        .expect("STATUS with the daemon running");

    // ADD: one address per rail, on the pod's interfaces, as in the result.
    for (cid, pod) in &pods {
        let result = rt
            .attach("add", cid, pod)
            .unwrap_or_else(|e| panic!("ADD {cid}: {e:?}"));
        assert_eq!(result["cniVersion"], "1.1.0", "{result}");
        let ips = result_ips(&result);
        assert_eq!(ips.len(), 2, "{cid}: one address per rail: {result}");
        assert_eq!(pod.addresses(), ips, "{cid}: the pod's net1-* addresses");
        // CHECK: libcni sends the cached result as prevResult.
        rt.attach("check", cid, pod)
            .unwrap_or_else(|e| panic!("CHECK {cid}: {e:?}"));
        assert!(rt.daemon_holds(cid, pod));
    }

    // DEL: interfaces and addresses go; a second DEL is fine (idempotent).
    let (cid2, pod2) = &pods[2];
    rt.attach("del", cid2, pod2).expect("DEL");
    assert!(pod2.addresses().is_empty(), "interfaces left after DEL");
    assert!(!rt.daemon_holds(cid2, pod2));
    rt.attach("del", cid2, pod2)
        .expect("a repeated DEL succeeds");
    rt.attach("add", cid2, pod2).expect("ADD again");

    // GC keeping only pod 0's attachment releases exactly the others.
    let (cid0, pod0) = &pods[0];
    let kept = pod0.addresses();
    rt.run("gc", &[&format!("--valid={cid0}/net1")])
        .unwrap_or_else(|e| panic!("GC: {e:?}"));
    assert!(
        rt.daemon_holds(cid0, pod0),
        "GC released a valid attachment"
    );
    assert_eq!(pod0.addresses(), kept);
    rt.attach("check", cid0, pod0)
        .expect("CHECK of the kept attachment after GC");
    for (cid, pod) in &pods[1..] {
        assert!(
            !rt.daemon_holds(cid, pod),
            "GC kept {cid}, not in the valid list"
        );
        assert!(
            pod.addresses().is_empty(),
            "{cid}: interfaces left after GC"
        );
    }

    // STATUS while the daemon is down: 50, the network is not ready.
    cluster.get().stop_daemon(0);
    match rt.run("status", &[]) {
        Err((50, _)) => {}
        other => panic!("STATUS with the daemon down: want code 50, got {other:?}"),
    }
    cluster.get().start_daemon(0).expect("restart the daemon");
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready again");
    rt.run("status", &[])
        .expect("STATUS once the daemon is back");
    rt.attach("del", cid0, pod0).expect("DEL");
    assert!(!rt.daemon_holds(cid0, pod0));
    assert!(Path::new(&rt.conf).exists());
}
