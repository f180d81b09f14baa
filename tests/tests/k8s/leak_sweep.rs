//! The route-daemon's leak sweep against the real API server: its pod source
//! (`KubePods`) passes the conformance suite `MemoryPods` passes, as the
//! route-daemon's ServiceAccount bound by the shipped rbac.yaml; and the sweep
//! loop the daemon runs (`railyard_route_daemon::sweep::run`) over a real
//! allocation log releases the attachment of a pod deleted from the API once
//! the grace has passed, keeps the live pod's and the pod-less one's, and
//! does not sweep an ADD whose pod the API does not list yet. Last, the whole
//! path through a real `railyard-route-daemon` (root: it runs in a network
//! namespace with one rail NIC, the planner's etcd and the API server
//! forwarded in): an ADD on its IPAM socket, mirrored to etcd; the pod deleted
//! from the API; the etcd record gone after the grace, and the release logged
//! with the pod and its address.
//!
//! Pods are API objects only (no kubelet); they are bound with `nodeName` and
//! force-deleted, as the kubelet's confirmation never comes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use railyard_allocdb::{AddArgs, AllocDb, NetworkConfig, Options};
use railyard_core::ipam::{AttachmentId, PodRef};
use railyard_core::{Block, Interface, Nic, Strategy};
use railyard_e2e::kube::identity;
use railyard_route_daemon::ipam::IpamMetrics;
use railyard_route_daemon::sweep::{self, conformance, KubePods, LeakSweep, PodSource, Pods};
use tokio::sync::watch;

use crate::common::{env, Env};

const NS: &str = "leak-sweep";
const NET: &str = "leaknet";

/// The shared plane with the namespace, and a kubeconfig holding a token of
/// the route-daemon's ServiceAccount (rbac.yaml as shipped).
fn setup() -> (&'static Env, PathBuf) {
    let env = env();
    let kubeconfig = prepare(env);
    (env, kubeconfig)
}

/// The namespace in `env`'s plane, and the route-daemon's kubeconfig there.
fn prepare(env: &Env) -> PathBuf {
    env.create_namespaces(&[NS.to_owned()]);
    identity::token_kubeconfig(
        &env.plane,
        identity::NAMESPACE,
        "railyard-route-daemon",
        "route-daemon.kubeconfig",
    )
    .unwrap_or_else(|e| panic!("a token of the route-daemon's ServiceAccount: {e}"))
}

fn add_node(env: &Env, node: &str) {
    env.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n"
    ));
}

fn pod_yaml(node: &str, name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NS}\n{annotations}\
         spec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n"
    )
}

/// Creates the pod (bound to `node`) and returns its UID. Retried for a few
/// seconds: a namespace just made has no `default` ServiceAccount until the
/// controller manager makes it, and admission refuses pods until then.
fn create_pod(env: &Env, node: &str, name: &str, annotations: &str) -> String {
    let yaml = pod_yaml(node, name, annotations);
    let started = Instant::now();
    while let Err(e) = env.kubectl.apply(&yaml) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "create pod {name}: {e}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pod = env
        .get("pod", name, Some(NS))
        .expect("the pod just created");
    pod["metadata"]["uid"].as_str().expect("a UID").to_owned()
}

fn delete_pod(env: &Env, name: &str) {
    env.kubectl
        .run(&[
            "delete",
            "pod",
            name,
            "-n",
            NS,
            "--grace-period=0",
            "--force",
            "--wait=true",
        ])
        .unwrap_or_else(|e| panic!("delete pod {name}: {e}"));
}

struct KubeFixture {
    env: &'static Env,
    pods: KubePods,
}

#[async_trait]
impl conformance::PodFixture for KubeFixture {
    fn source(&self) -> &dyn PodSource {
        &self.pods
    }
    async fn add_node(&self, node: &str) {
        add_node(self.env, node);
    }
    async fn create_pod(&self, node: &str, namespace: &str, name: &str) -> String {
        assert_eq!(namespace, NS);
        create_pod(self.env, node, name, "")
    }
    async fn create_mirror_pod(&self, node: &str, namespace: &str, name: &str, static_uid: &str) {
        assert_eq!(namespace, NS);
        let annotations =
            format!("  annotations:\n    kubernetes.io/config.mirror: \"{static_uid}\"\n");
        create_pod(self.env, node, name, &annotations);
    }
    async fn delete_pod(&self, namespace: &str, name: &str) {
        assert_eq!(namespace, NS);
        delete_pod(self.env, name);
    }
    async fn create_described_pod(
        &self,
        node: &str,
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
        owner_kind: Option<&str>,
    ) -> String {
        assert_eq!(namespace, NS);
        let mut meta = String::new();
        if !annotations.is_empty() {
            meta.push_str("  annotations:\n");
            for (k, v) in annotations {
                meta.push_str(&format!("    {k}: \"{v}\"\n"));
            }
        }
        // An owner need not exist for the API to record the reference.
        if let Some(kind) = owner_kind {
            meta.push_str(&format!(
                "  ownerReferences:\n  - apiVersion: apps/v1\n    kind: {kind}\n    name: owner-of-{name}\n    uid: 0b5e6a4c-3d2f-4e1a-9b8c-7d6e5f4a3b2c\n    controller: true\n"
            ));
        }
        create_pod(self.env, node, name, &meta)
    }
    async fn annotate_namespace(&self, namespace: &str, key: &str, value: &str) {
        self.env
            .kubectl
            .run(&[
                "annotate",
                "namespace",
                namespace,
                &format!("{key}={value}"),
                "--overwrite",
            ])
            .unwrap_or_else(|e| panic!("annotate namespace {namespace}: {e}"));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn kube_pods_pass_the_pod_source_conformance_suite() {
    let (env, kubeconfig) = setup();
    runtime().block_on(async {
        let pods = KubePods::connect(Some(&kubeconfig))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        conformance::run_all(&KubeFixture { env, pods }, "leak-conf", NS).await;
    });
}

/// One rail, a /24 block on `rail0`, and the NIC that holds its nicAddress.
fn network() -> (NetworkConfig, Vec<Nic>) {
    let cfg = NetworkConfig {
        name: NET.into(),
        strategy: Strategy::None,
        policy_target: String::new(),
        excludes: vec![],
        routes: vec![],
        pools: vec![],
        gateway: Default::default(),
        interfaces: vec![Interface {
            index: 0,
            net_address: "10.0.0.0/24".parse().unwrap(),
            cidrs: vec!["192.168.0.0/18".parse().unwrap()],
        }],
        blocks: vec![Block {
            interface: 0,
            nic: "rail0".parse().unwrap(),
            nic_address: "10.0.0.1".parse().unwrap(),
            cidr: "192.168.1.0/24".parse().unwrap(),
        }],
    };
    let nics = vec![Nic {
        name: "rail0".into(),
        addresses: vec!["10.0.0.1/24".parse().unwrap()],
        up: true,
        ..Nic::default()
    }];
    (cfg, nics)
}

fn id(container: &str) -> AttachmentId {
    AttachmentId {
        network: NET.into(),
        container_id: container.into(),
        ifname: "net1".into(),
    }
}

/// An ADD as railyard-ipam sends it, with the pod's CNI_ARGS.
async fn add(db: &AllocDb, nics: &[Nic], container: &str, pod: PodRef) {
    let mut args = AddArgs::new(id(container));
    args.pod = pod;
    db.add(&args, nics, &[]).await.expect("ADD");
}

fn pod_ref(name: &str, uid: &str) -> PodRef {
    PodRef {
        namespace: NS.into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
    }
}

/// Which of `containers` the log still holds.
async fn held(db: &AllocDb) -> Vec<String> {
    let mut v: Vec<String> = db
        .attachments(None)
        .await
        .expect("attachments")
        .iter()
        .map(|a| a.id.container_id.clone())
        .collect();
    v.sort();
    v
}

/// The sweep as the daemon runs it, on a real log, as the route-daemon's
/// ServiceAccount; returns the log, the metrics and the stop switch.
async fn start_sweep(
    kubeconfig: PathBuf,
    node: &str,
    grace: Duration,
    dir: &std::path::Path,
) -> (
    Arc<AllocDb>,
    Vec<Nic>,
    Arc<IpamMetrics>,
    watch::Sender<bool>,
) {
    let db = Arc::new(AllocDb::open(dir, Options::default()).expect("open the log"));
    let (cfg, nics) = network();
    db.set_network(cfg).await.expect("network");
    let metrics = Arc::new(IpamMetrics::new(&mut Registry::default()));
    let sweep = LeakSweep {
        pods: Pods::Kubeconfig(kubeconfig),
        grace,
        every: Duration::from_millis(200),
    };
    let source = sweep.pods.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let (stop, shutdown) = watch::channel(false);
    // Trusted from the start (a log with records): the sweep only reads it.
    let (_, trusted) = watch::channel(true);
    tokio::spawn(sweep::run(
        sweep,
        source,
        node.to_owned(),
        Arc::clone(&db),
        trusted,
        Arc::clone(&metrics),
        shutdown,
    ));
    (db, nics, metrics, stop)
}

#[test]
fn a_deleted_pods_addresses_are_released_after_the_grace_and_a_live_ones_kept() {
    let (env, kubeconfig) = setup();
    let node = "leak-node-1";
    add_node(env, node);
    let live = create_pod(env, node, "live", "");
    let gone = create_pod(env, node, "gone", "");
    let grace = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (db, nics, metrics, stop) = start_sweep(kubeconfig, node, grace, dir.path()).await;
        add(&db, &nics, "c-live", pod_ref("live", &live)).await;
        add(&db, &nics, "c-gone", pod_ref("gone", &gone)).await;
        // Not a Kubernetes pod (no K8S_POD_* in CNI_ARGS): never swept.
        add(&db, &nics, "c-plain", PodRef::default()).await;
        let added = Instant::now();
        delete_pod(env, "gone");
        let deleted = Instant::now();
        loop {
            let h = held(&db).await;
            if !h.contains(&"c-gone".to_owned()) {
                let took = added.elapsed();
                assert!(
                    took >= grace,
                    "released {took:?} after its ADD, before the grace of {grace:?}"
                );
                eprintln!(
                    "released {:.2} s after the delete (grace {grace:?})",
                    deleted.elapsed().as_secs_f64()
                );
                break;
            }
            assert!(
                deleted.elapsed() < grace + Duration::from_secs(10),
                "the deleted pod's attachment was not released: {h:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(metrics.leaks_released.get(), 1);
        // Released as a DEL is: the mirror will delete its etcd record.
        assert!(db.released_unmirrored(&id("c-gone")));
        // Two more graces: the live pod's and the pod-less one's stay.
        tokio::time::sleep(grace * 2).await;
        assert_eq!(held(&db).await, ["c-live", "c-plain"]);
        assert_eq!(metrics.leaks_released.get(), 1);
        let _ = stop.send(true);
    });
}

#[test]
fn an_add_for_a_pod_the_api_does_not_list_yet_is_not_swept() {
    let (env, kubeconfig) = setup();
    let node = "leak-node-2";
    add_node(env, node);
    let grace = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (db, nics, metrics, stop) = start_sweep(kubeconfig, node, grace, dir.path()).await;
        // The sweep is running (several lists of an empty node) when the ADDs
        // come for pods the API does not list on this node yet: "early" shows
        // up two seconds later (a lagging bind, a slow watch), "never" never.
        tokio::time::sleep(Duration::from_millis(600)).await;
        add(&db, &nics, "c-early", pod_ref("early", "")).await;
        add(&db, &nics, "c-never", pod_ref("never", "")).await;
        let added = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            held(&db).await,
            ["c-early", "c-never"],
            "swept within the grace"
        );
        create_pod(env, node, "early", "");
        // "never" goes once the grace is over; "early" stays for good.
        loop {
            let h = held(&db).await;
            if h == ["c-early"] {
                assert!(added.elapsed() >= grace, "released before the grace");
                break;
            }
            assert!(
                h.contains(&"c-early".to_owned()),
                "the early pod's attachment was swept: {h:?}"
            );
            assert!(
                added.elapsed() < grace + Duration::from_secs(10),
                "the attachment of a pod that never came was not released: {h:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(grace * 2).await;
        assert_eq!(held(&db).await, ["c-early"]);
        assert_eq!(metrics.leaks_released.get(), 1);
        let _ = stop.send(true);
    });
}

/// Forwards `127.0.0.1:port` inside `ns` to `127.0.0.1:port` here, for the
/// life of the process: the daemon in its namespace reaches the planner's
/// etcd and the API server (whose certificate names 127.0.0.1) unchanged.
fn forward(ns: &railyard_test_support::NamedNetns, port: u16) {
    railyard_e2e::cluster::forward::port_into(&ns.path(), port)
        .unwrap_or_else(|e| panic!("relay port {port} into the namespace: {e}"));
}

/// The daemon process, killed on drop.
struct Daemon {
    child: std::process::Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- route-daemon log ---\n{}", self.log());
        }
    }
}

/// One request on the IPAM socket, as railyard-ipam sends it.
fn ipam_call(
    socket: &std::path::Path,
    req: &railyard_core::ipam::Request,
) -> std::io::Result<railyard_core::ipam::Response> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(s).read_line(&mut answer)?;
    Ok(serde_json::from_str(&answer)?)
}

#[test]
fn a_real_route_daemon_releases_a_deleted_pods_addresses_and_their_etcd_record() {
    railyard_test_support::require_root("railyard-e2e");
    // A plane and planner of its own: a registered host would be planned in
    // the other tests' networks and change their counts.
    let env = &crate::common::start("k8s-leak-daemon")
        .unwrap_or_else(|e| panic!("the Kubernetes test environment did not start: {e:#}"));
    let kubeconfig = prepare(env);
    let node = "leak-node-3";
    let net = "leaknet3";
    add_node(env, node);
    // The host: a namespace with one rail NIC, the planner's etcd and the API
    // server forwarded into it.
    let ns = railyard_test_support::NamedNetns::private("leak");
    ns.ip_ok(&[
        "link",
        "add",
        "rail0",
        "type",
        "veth",
        "peer",
        "name",
        "veth-peer0",
    ]);
    ns.ip_ok(&["addr", "add", "10.77.0.5/24", "dev", "rail0"]);
    ns.ip_ok(&["link", "set", "veth-peer0", "up"]);
    ns.ip_ok(&["link", "set", "rail0", "up"]);
    let etcd = env
        .planner()
        .record
        .argv
        .iter()
        .find_map(|a| a.strip_prefix("--etcd-endpoints=").map(str::to_owned))
        .expect("the planner's etcd endpoint");
    let etcd_port: u16 = etcd.rsplit(':').next().unwrap().parse().expect("a port");
    forward(&ns, etcd_port);
    forward(&ns, env.plane.state.ports.apiserver);
    env.apply(&crate::common::network(
        net,
        "10.79.0.0/16",
        crate::common::IPAM,
        crate::common::IPVLAN,
        &[NS.to_owned()],
    ));

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipam.sock");
    let log = dir.path().join("route-daemon.log");
    let bins = railyard_e2e::bins::for_tests().unwrap_or_else(|e| panic!("{e}"));
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(bins.join("railyard-route-daemon"))
        .args([
            &format!("--node-name={node}"),
            &format!("--etcd-endpoints={etcd}"),
            "--include=rail*",
            "--lease-ttl=3",
            "--metrics-addr=off",
            &format!("--ipam-socket={}", socket.display()),
            &format!("--state-dir={}", dir.path().join("state").display()),
            &format!("--kubeconfig={}", kubeconfig.display()),
            "--leak-grace=3s",
            "--leak-sweep-every=250ms",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap().try_clone().unwrap())
        .spawn()
        .expect("start the route-daemon");
    let mut daemon = Daemon { child, log };

    let uid = create_pod(env, node, "real", "");
    let add = railyard_core::ipam::Request::Add {
        attachment: id_in(net, "c-real"),
        pod: pod_ref("real", &uid),
        selection: Default::default(),
        master: None,
    };
    // Retried while the daemon starts, registers and gets its block planned.
    let (added, added_at) = env.wait_for(
        "an ADD answered with an address",
        Duration::from_secs(60),
        || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the route-daemon exited ({status}):\n{}", daemon.log());
            }
            // Sent before the daemon could decide the ADD: the release must
            // come at least the grace after this.
            let sent = Instant::now();
            match ipam_call(&socket, &add) {
                Ok(railyard_core::ipam::Response::Added { nics }) => Ok((nics, sent)),
                other => Err(format!("{other:?}\n{}", daemon.log())),
            }
        },
    );
    let record = railyard_core::keys::allocation(net, node, "c-real", "net1");
    env.wait_for("the allocation mirrored to etcd", TIMEOUT_MIRROR, || {
        env.etcd_get(&record)
            .map(|_| ())
            .ok_or_else(|| "no record".to_owned())
    });
    delete_pod(env, "real");
    env.wait_for(
        "the etcd record deleted after the sweep",
        Duration::from_secs(20),
        || match env.etcd_get(&record) {
            None => Ok(()),
            Some(_) => Err("still there".to_owned()),
        },
    );
    assert!(
        added_at.elapsed() >= Duration::from_secs(3),
        "released before the grace"
    );
    let text = daemon.log();
    let address = added[0].addresses[0].addr().to_string();
    assert!(
        text.lines().any(|l| l.contains("leak sweep: released")
            && l.contains(&format!("{NS}/real"))
            && l.contains(&address)),
        "the release is logged with the pod and its address ({address}):\n{text}"
    );
    drop(daemon);
    env.kubectl
        .run(&["delete", "mnn", net, "--wait=false"])
        .expect("delete the network");
}

const TIMEOUT_MIRROR: Duration = Duration::from_secs(10);

fn id_in(network: &str, container: &str) -> AttachmentId {
    AttachmentId {
        network: network.into(),
        container_id: container.into(),
        ifname: "net1".into(),
    }
}
