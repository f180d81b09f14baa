//! The route-daemon's leak sweep against the real API server: its pod source
//! (`KubePods`) passes the conformance suite `MemoryPods` passes, as the
//! route-daemon's ServiceAccount bound by the shipped rbac.yaml; and the sweep
//! loop the daemon runs (`railyard_route_daemon::sweep::run`) over a real
//! allocation log releases the attachment of a pod deleted from the API once
//! the grace has passed, keeps the live pod's and the pod-less one's, and
//! does not sweep an ADD whose pod the API does not list yet.
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
    env.create_namespaces(&[NS.to_owned()]);
    let kubeconfig = identity::token_kubeconfig(
        &env.plane,
        identity::NAMESPACE,
        "railyard-route-daemon",
        "route-daemon.kubeconfig",
    )
    .unwrap_or_else(|e| panic!("a token of the route-daemon's ServiceAccount: {e}"));
    (env, kubeconfig)
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
