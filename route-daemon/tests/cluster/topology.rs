//! A three-host rail cluster in network namespaces: a "fabric" namespace with one
//! bridge per rail, three host namespaces each with a veth NIC on both rails
//! (10.10.1.0/24 + fd10:1::/64, 10.10.2.0/24 + fd10:2::/64), a real etcd, the
//! planner service in-process, and a route-daemon per host running inside its
//! namespace on its own thread and runtime.
//!
//! The daemons' etcd clients are connected here, in the test's runtime and the
//! root namespace: etcd listens on the root namespace's loopback, which the
//! host namespaces cannot reach. Everything is torn down on drop, also when a
//! test fails.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use railyard_core::{desired_routes, keys, route_table_for, Plan, PlanMeta};
use railyard_route_daemon::daemon::{self, DaemonConfig};
use railyard_route_daemon::metrics::Metrics;
use railyard_store::testing::EtcdServer;
use railyard_store::{LeaseId, Store};
use railyard_test_support::{run_in_netns, NamedNetns};
use tokio::sync::watch;

use crate::common::{ip, netns};

pub const NET: &str = "rails";
pub const SUBNET: &str = "192.168.0.0/16,fd00:ab::/48";
pub const HOSTS: usize = 3;

/// A route as `ip -j route` shows it and as the plan wants it.
pub type Seen = BTreeSet<(String, String, String)>;

pub struct Daemon {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    pub metrics: Arc<Metrics>,
}

impl Daemon {
    fn halt(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("route-daemon failed: {e}"),
                Err(_) => panic!("route-daemon thread panicked"),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.halt();
        } else {
            let _ = self.stop.send(true);
        }
    }
}

pub struct Host {
    pub name: String,
    pub ns: NamedNetns,
    pub daemon: Option<Daemon>,
}

pub struct Cluster {
    pub etcd: EtcdServer,
    pub store: Arc<dyn Store>,
    /// The real `railyard-planner`, on the loopback etcd; killed on drop.
    planner: std::process::Child,
    // Declared (and so dropped) before the namespaces they run in.
    pub hosts: Vec<Host>,
    // Held for its drop: the fabric namespace goes last.
    _fabric: NamedNetns,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.planner.kill();
        let _ = self.planner.wait();
        for h in &mut self.hosts {
            h.daemon = None;
        }
    }
}

impl Cluster {
    /// Builds the namespaces, starts etcd, the planner (with `grace`) and one
    /// daemon per host. No network is applied yet.
    pub async fn start(grace: Duration) -> Cluster {
        let etcd = EtcdServer::start().unwrap_or_else(|e| panic!("a real etcd must start: {e}"));
        let store: Arc<dyn Store> = Arc::new(etcd.store().await.expect("connect to the test etcd"));
        let fabric = netns();
        for rail in 0..2 {
            ip(
                &fabric,
                &format!("link add br{rail} type bridge mcast_snooping 0"),
            );
            ip(&fabric, &format!("link set br{rail} up"));
        }
        let hosts = (0..HOSTS).map(|i| host(&fabric, i)).collect();
        let planner = std::process::Command::new(planner_binary())
            .arg(format!("--etcd-endpoints={}", etcd.endpoint()))
            .args([
                "--identity=test-planner",
                "--lease-ttl=2",
                "--metrics-addr=off",
            ])
            .args([
                "--kubernetes=off",
                &format!("--grace={}ms", grace.as_millis()),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start railyard-planner: {e}"));
        let mut c = Cluster {
            etcd,
            store,
            planner,
            hosts,
            _fabric: fabric,
        };
        for i in 0..HOSTS {
            c.start_daemon(i).await;
        }
        c
    }

    pub async fn start_daemon(&mut self, i: usize) {
        let store: Arc<dyn Store> = Arc::new(
            self.etcd
                .store()
                .await
                .expect("connect a daemon's etcd client"),
        );
        let h = &mut self.hosts[i];
        let mut cfg = DaemonConfig::new(h.name.clone(), self.etcd.config());
        cfg.lease_ttl_secs = 2;
        let metrics = Arc::new(Metrics::default());
        let (stop, shutdown) = watch::channel(false);
        let path = h.ns.path();
        let m = Arc::clone(&metrics);
        let thread = std::thread::spawn(move || {
            run_in_netns(&path, true, move || {
                daemon::run_with(cfg, store, m, shutdown)
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        });
        h.daemon = Some(Daemon {
            stop,
            thread: Some(thread),
            metrics,
        });
    }

    /// Stops host `i`'s daemon (SIGTERM-like: routes and registration stay).
    pub fn stop_daemon(&mut self, i: usize) {
        if let Some(mut d) = self.hosts[i].daemon.take() {
            tokio::task::block_in_place(|| d.halt());
        }
    }

    pub async fn apply(&self, name: &str, subnet: &str) {
        let json = format!(
            r#"{{"metadata":{{"name":"{name}"}},"spec":{{"subnet":"{subnet}","ipam":{{"hostBlock":6,"interfaceBlock":2}}}}}}"#
        );
        self.store
            .put(&keys::network(name), json.into_bytes(), None)
            .await
            .expect("apply network");
    }

    pub async fn registration_lease(&self, i: usize) -> Option<LeaseId> {
        let kv = self
            .store
            .get(&keys::host(&self.hosts[i].name))
            .await
            .ok()??;
        kv.lease
    }

    /// The plan as stored: meta plus host keys.
    pub async fn plan(&self, net: &str) -> Option<Plan> {
        let range = self.store.range(&keys::plan_prefix(net)).await.ok()?;
        let mut meta = None;
        let mut hosts = Vec::new();
        for kv in &range.kvs {
            if kv.key == keys::plan_meta(net) {
                meta = kv.decode_json::<PlanMeta>().ok();
            } else {
                hosts.push((
                    keys::last_segment(&kv.key).to_owned(),
                    kv.decode_json().ok()?,
                ));
            }
        }
        Some(Plan::assemble(meta?, hosts))
    }

    /// Our routes (protocol 167) in `table` of host `i`, both families.
    pub fn kernel_routes(&self, i: usize, table: u32) -> Seen {
        let mut out = Seen::new();
        for family in ["-4", "-6"] {
            let text = self.hosts[i]
                .ns
                .ip(&[family, "-j", "route", "show", "table", &table.to_string()])
                // A table never used does not exist yet.
                .unwrap_or_else(|_| "[]".into());
            let routes: Vec<serde_json::Value> = serde_json::from_str(&text).expect("ip -j");
            for r in routes {
                if r["protocol"] == "167" || r["protocol"] == "railyard" {
                    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                    out.insert((s("dst"), s("gateway"), s("dev")));
                }
            }
        }
        out
    }

    /// What host `i` should hold for `net` according to the stored plan.
    pub fn wanted(plan: &Plan, host: &str, table: u32) -> Seen {
        desired_routes(plan, host, table)
            .into_iter()
            .map(|r| (r.dst.to_string(), r.gateway.to_string(), r.dev.to_string()))
            .collect()
    }

    /// Waits until the plan of `net` has `planned` live hosts and every host in
    /// `hosts` holds exactly the routes the plan gives it.
    pub async fn converge(&self, net: &str, planned: usize, hosts: &[usize], timeout: Duration) {
        let table = route_table_for(net);
        let start = Instant::now();
        loop {
            let why = match self.plan(net).await {
                None => "no plan yet".to_owned(),
                Some(plan) => {
                    let live = plan
                        .hosts
                        .values()
                        .filter(|h| h.departed_at.is_none())
                        .count();
                    let off: Vec<String> = hosts
                        .iter()
                        .filter_map(|&i| {
                            let want = Self::wanted(&plan, &self.hosts[i].name, table);
                            let have = self.kernel_routes(i, table);
                            (want != have).then(|| {
                                format!("{}: want {want:?}, have {have:?}", self.hosts[i].name)
                            })
                        })
                        .collect();
                    if live == planned && off.is_empty() {
                        return;
                    }
                    format!("{live} live hosts planned (want {planned}); {off:?}")
                }
            };
            assert!(
                start.elapsed() < timeout,
                "not converged after {timeout:?}: {why}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Host `i`'s block on `rail` in the family of `v6`.
    pub fn block(plan: &Plan, host: &str, rail: u32, v6: bool) -> IpNet {
        plan.hosts[host]
            .blocks
            .iter()
            .find(|b| b.interface == rail && b.cidr.addr().is_ipv6() == v6)
            .map(|b| b.cidr)
            .unwrap_or_else(|| panic!("{host} has no block on rail {rail} (v6: {v6})"))
    }
}

/// Host `i`: NIC `rail<j>` on rail j at 10.10.(j+1).(11+i)/24 and fd10:(j+1)::(11+i)/64.
fn host(fabric: &NamedNetns, i: usize) -> Host {
    let ns = netns();
    for j in 0..2 {
        let peer = format!("h{i}r{j}");
        ip(
            &ns,
            &format!(
                "link add rail{j} type veth peer name {peer} netns {}",
                fabric.name()
            ),
        );
        ip(fabric, &format!("link set {peer} master br{j} up"));
        ip(
            &ns,
            &format!("addr add 10.10.{}.{}/24 dev rail{j}", j + 1, 11 + i),
        );
        ip(
            &ns,
            &format!("addr add fd10:{}::{}/64 dev rail{j} nodad", j + 1, 11 + i),
        );
        ip(&ns, &format!("link set rail{j} up"));
    }
    Host {
        name: format!("h{i}"),
        ns,
        daemon: None,
    }
}

/// The `n`th address of `net`.
pub fn nth(net: IpNet, n: u8) -> IpAddr {
    match net {
        IpNet::V4(v4) => IpAddr::V4((u32::from(v4.network()) + u32::from(n)).into()),
        IpNet::V6(v6) => IpAddr::V6((u128::from(v6.network()) + u128::from(n)).into()),
    }
}

/// The planner binary next to this test's executable (`target/<profile>/`):
/// `cargo test --workspace` builds every binary first. A planner in another
/// crate's process, as in production, keeps this crate from depending on it.
fn planner_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|d| d.join("railyard-planner"))
        .expect("target dir");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --bins` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}
