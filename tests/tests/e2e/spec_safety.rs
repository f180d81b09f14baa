//! Spec changes the planner refuses change nothing anywhere: a renumbering
//! without --force, a network overlapping a live one, a network over the range
//! of a deleted network whose pods still hold addresses. Judged from the
//! outside: `railyard` exit codes, every host's policy rules and routes, pings.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use railyard_core::{keys, route_table_for};
use railyard_e2e::cluster::cmd::ip_in;
use railyard_e2e::cluster::topology::kernel_routes;
use railyard_e2e::Cluster;
use railyard_store::{EtcdConfig, EtcdStore, Store};
use serde_json::Value;

use crate::common::{spec, TestCluster, CONVERGE};

/// What the kernels of every host hold for the test's network: its routes and
/// every railyard policy rule (`from <subnet> lookup <table>`).
type Kernels = Vec<(BTreeSet<(String, String, String)>, BTreeSet<String>)>;

fn kernels(c: &Cluster) -> Kernels {
    let table = route_table_for(&c.spec().network);
    (0..c.spec().hosts)
        .map(|i| (kernel_routes(c.spec(), i, table), rules(c, i)))
        .collect()
}

/// Host `i`'s policy rules tagged with railyard's protocol, both families.
fn rules(c: &Cluster, i: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for family in ["-4", "-6"] {
        let text = ip_in(&c.spec().host(i), &[family, "rule", "show"]).expect("ip rule");
        out.extend(
            text.lines()
                .filter(|l| l.contains("proto 167") || l.contains("proto railyard"))
                .map(|l| l.trim().to_owned()),
        );
    }
    out
}

fn railyard(c: &Cluster, args: &[&str]) -> Output {
    Command::new(c.spec().bin_dir.join("railyard"))
        .args(args)
        .arg("--etcd-endpoints")
        .arg(c.spec().local_endpoint())
        .output()
        .expect("railyard runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The cluster's manifest with `edit` applied to its spec, in a file.
fn manifest(c: &Cluster, file: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut m = c.spec().manifest();
    edit(&mut m["spec"]);
    let path = c.spec().state_dir.join(file);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).expect("write manifest");
    path.display().to_string()
}

/// Raw etcd access, for what no railyard command does (a write the CLI would
/// refuse, as the Kubernetes controller or etcdctl could make it).
struct Etcd {
    rt: tokio::runtime::Runtime,
    store: EtcdStore,
}

impl Etcd {
    fn new(c: &Cluster) -> Etcd {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cfg = EtcdConfig::new([c.spec().local_endpoint()]);
        let store = rt.block_on(EtcdStore::connect(cfg)).expect("etcd");
        Etcd { rt, store }
    }

    fn put_json(&self, key: &str, v: &Value) {
        self.rt
            .block_on(self.store.put(key, serde_json::to_vec(v).unwrap(), None))
            .expect("put");
    }

    fn get_json(&self, key: &str) -> Option<Value> {
        let kv = self.rt.block_on(self.store.get(key)).expect("get")?;
        serde_json::from_slice(&kv.value).ok()
    }

    fn count(&self, prefix: &str) -> usize {
        self.rt
            .block_on(self.store.range(prefix))
            .expect("range")
            .kvs
            .len()
    }
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < CONVERGE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Long enough for a planner and every daemon to act on a change (they act
/// within tens of milliseconds), to show that they did not.
fn settle() {
    std::thread::sleep(Duration::from_secs(3));
}

#[test]
fn a_refused_renumbering_changes_no_host_and_a_forced_one_is_applied() {
    let mut c = TestCluster::up(spec("e2e-renum", 210));
    let net = c.spec().network.clone();
    let host_block = c.spec().host_block();
    let before = kernels(&c);
    assert!(
        before
            .iter()
            .all(|(routes, rules)| !routes.is_empty() && !rules.is_empty()),
        "{before:?}"
    );

    // A wider subnet moves every block: renumbering, refused while pods hold
    // addresses, and its rule must not appear on any host.
    let wider = manifest(&c, "wider.json", |s| s["subnet"] = "192.168.0.0/15".into());
    let out = railyard(&c, &["apply", "-f", &wider]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("refused by the planner"),
        "{}",
        text(&out)
    );
    // hostBlock - 1: every index still fits, every block moves.
    let smaller = manifest(&c, "smaller.json", |s| {
        s["ipam"]["hostBlock"] = (host_block - 1).into()
    });
    let out = railyard(&c, &["apply", "-f", &smaller]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("renumber"), "{}", text(&out));
    settle();
    assert_eq!(kernels(&c), before, "a refused change changed a host");
    for i in 0..c.spec().hosts {
        let r = rules(&c, i);
        assert!(!r.iter().any(|l| l.contains("192.168.0.0/15")), "{r:?}");
    }
    c.assert_mesh();
    let etcd = Etcd::new(&c);
    let status = etcd.get_json(&keys::status(&net)).expect("status");
    assert_eq!(status["condition"], "Invalid");
    assert!(
        status["observedRevision"].as_i64() > status["appliedRevision"].as_i64(),
        "{status}"
    );
    let meta = etcd.get_json(&keys::plan_meta(&net)).expect("meta");
    assert_eq!(meta["spec"]["subnet"], "192.168.0.0/16", "{meta}");
    // A new pod gets addresses of the accepted plan's blocks: the allocator
    // follows the accepted spec too.
    let plan = c.observer().unwrap().plan(&net).unwrap().expect("plan");
    let blocks: Vec<ipnet::IpNet> = plan.hosts[&c.spec().host(0)]
        .blocks
        .iter()
        .map(|b| b.cidr)
        .collect();
    let next = c.spec().pods;
    let fresh = c.attach_pods(&[(0, next)], 1).expect("a new pod");
    for a in &fresh[0].addresses {
        assert!(
            blocks.iter().any(|b| b.contains(a)),
            "{a} outside {blocks:?}"
        );
    }
    c.assert_mesh();

    // Forced: applied, and every host follows the new plan.
    let out = railyard(&c, &["apply", "-f", &smaller, "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("configured"), "{}", text(&out));
    let all: Vec<usize> = (0..c.spec().hosts).collect();
    let plan = c
        .wait_converged(&all, CONVERGE)
        .expect("hosts follow the forced change");
    let prefix = plan.hosts.values().next().unwrap().blocks[0]
        .cidr
        .prefix_len();
    assert_eq!(prefix, 23, "hostBlock {} gives /23 blocks", host_block - 1);
}

#[test]
fn an_overlapping_network_gets_nothing_and_a_deleted_networks_range_waits_for_its_pods() {
    let mut c = TestCluster::up(spec("e2e-overlap", 211));
    let net = c.spec().network.clone();
    let etcd = Etcd::new(&c);
    let before = kernels(&c);

    // Through the CLI: refused before anything is written.
    let other_file = manifest(&c, "other.json", |s| {
        s["subnet"] = "192.168.128.0/17".into()
    });
    let renamed = std::fs::read_to_string(&other_file)
        .unwrap()
        .replace(&format!("\"name\": \"{net}\""), "\"name\": \"other\"");
    std::fs::write(&other_file, renamed).unwrap();
    let out = railyard(&c, &["apply", "-f", &other_file]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(etcd.get_json(&keys::network("other")).is_none());

    // Written anyway (raw etcd, as another writer could): the planner refuses it.
    let mut other = c.spec().manifest();
    other["metadata"]["name"] = "other".into();
    other["spec"]["subnet"] = "192.168.128.0/17".into();
    other["spec"]["ipam"]["hostBlock"] = 4.into();
    etcd.put_json(&keys::network("other"), &other);
    let status = wait_until("other's status", || etcd.get_json(&keys::status("other")));
    assert_eq!(status["condition"], "Invalid", "{status}");
    let err = status["lastError"].as_str().unwrap_or_default().to_owned();
    assert!(
        err.contains(&format!("network {net}")) && err.contains("network other"),
        "{err}"
    );
    settle();
    assert_eq!(
        etcd.count(&keys::plan_prefix("other")),
        0,
        "no plan for other"
    );
    assert_eq!(kernels(&c), before, "nothing changed on any host");
    for i in 0..c.spec().hosts {
        let r = rules(&c, i);
        assert!(!r.iter().any(|l| l.contains("192.168.128.0/17")), "{r:?}");
    }
    c.assert_mesh();

    // Deleting the live network while its pods hold addresses: refused...
    let pods = c.state.pods.len();
    let out = railyard(&c, &["delete", "network", &net]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{pods} live allocation")),
        "{}",
        text(&out)
    );
    // ... unless forced: routes and rules go, the range stays reserved.
    let out = railyard(&c, &["delete", "network", &net, "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until("routes and rules gone", || {
        kernels(&c)
            .iter()
            .all(|(routes, rules)| routes.is_empty() && rules.is_empty())
            .then_some(())
    });
    assert!(etcd.get_json(&keys::tombstone(&net)).is_some());
    settle();
    let status = etcd.get_json(&keys::status("other")).expect("status");
    assert_eq!(status["condition"], "Invalid", "{status}");
    assert!(
        status["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("deleted network"),
        "{status}"
    );
    assert_eq!(etcd.count(&keys::plan_prefix("other")), 0);

    // The pods go: the range frees and other is accepted and enforced.
    let failures = c.detach_pods(None, 4).expect("detach");
    assert!(failures.is_empty(), "{failures:?}");
    wait_until("the tombstone cleared", || {
        etcd.get_json(&keys::tombstone(&net))
            .is_none()
            .then_some(())
    });
    let status = wait_until("other accepted", || {
        etcd.get_json(&keys::status("other"))
            .filter(|s| s["condition"] == "Ready")
    });
    assert_eq!(status["hostsPlanned"], c.spec().hosts, "{status}");
    wait_until("other's rule on every host", || {
        (0..c.spec().hosts)
            .all(|i| rules(&c, i).iter().any(|l| l.contains("192.168.128.0/17")))
            .then_some(())
    });
}
