//! External IPAM's `choose` over the real socket, server and allocation
//! database: the NICs an ADD would give the pod and this host's blocks on
//! them, nothing recorded; and, with the Kubernetes API, a pod whose
//! annotations ask for addresses (Kube-OVN's `ip_address`, a pool) is
//! refused naming why, not silently given dynamic ones by the external IPAM.
//!
//! Simulated: the API server is `MemoryPods` (see `ipam_annotations.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use railyard_allocdb::{AllocDb, NetworkConfig, Options};
use railyard_core::ipam::{codes, AttachmentId, PodRef, Request, Response, Selection};
use railyard_core::{plan, HostInventory, NetworkManifest, Nic};
use railyard_route_daemon::ipam::{serve, IpamContext, IpamMetrics};
use railyard_route_daemon::sweep::{MemoryPods, PodSource};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

const NET: &str = "rails";
const NODE: &str = "h0";

fn nics() -> Vec<Nic> {
    (0..2)
        .map(|k| Nic {
            name: format!("eth{k}"),
            addresses: vec![format!("10.0.{k}.1/24").parse().unwrap()],
            up: true,
            ..Nic::default()
        })
        .collect()
}

struct Daemon {
    socket: std::path::PathBuf,
    api: Arc<MemoryPods>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// A daemon for host h0 on `rails` (two rails, /24 host blocks, an external
/// host-local IPAM and an excluded CIDR) with the in-memory API.
async fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let manifest: NetworkManifest = serde_yaml::from_str(&format!(
        "metadata: {{name: {NET}}}\nspec:\n  subnet: 192.168.0.0/16\n  multiNICIPAM: false\n  ipam: '{{\"hostBlock\": 6, \"interfaceBlock\": 2, \"excludeCIDRs\": [\"192.168.0.0/28\"], \"external\": {{\"type\": \"host-local\"}}}}'\n"
    ))
    .unwrap();
    let net = manifest.validate().unwrap();
    let host = HostInventory {
        name: NODE.into(),
        nics: nics(),
    };
    let p = plan(&net, &[host], None, 0, 600);
    let db = AllocDb::open(dir.path().join("db"), Options::default()).unwrap();
    db.set_network(NetworkConfig::from_plan(&net, &p, NODE))
        .await
        .unwrap();
    let api = Arc::new(MemoryPods::new());
    api.add_node(NODE);
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = Arc::new(IpamContext {
        db: Arc::new(db),
        nics: watch::channel(nics()).1,
        classes: watch::channel(Vec::new()).1,
        metrics: Arc::new(IpamMetrics::new(&mut registry)),
        allowed_uid: nix::unistd::geteuid().as_raw(),
        trusted: watch::channel(true).1,
        pods: Some(Arc::clone(&api) as Arc<dyn PodSource>),
    });
    let socket = dir.path().join("ipam.sock");
    let (stop, rx) = watch::channel(false);
    let s = socket.clone();
    tokio::spawn(async move { serve(&s, ctx, rx).await });
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Daemon {
        socket,
        api,
        _stop: stop,
        _dir: dir,
    }
}

impl Daemon {
    async fn call(&self, req: &Request) -> Response {
        let mut s = UnixStream::connect(&self.socket).await.unwrap();
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        s.write_all(&line).await.unwrap();
        let mut out = String::new();
        BufReader::new(s).read_line(&mut out).await.unwrap();
        serde_json::from_str(&out).unwrap()
    }

    fn pod(&self, name: &str, annotations: &[(&str, &str)]) {
        self.api.create(NODE, "default", name);
        let map: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.api.describe("default", name, map, None);
    }

    async fn choose(&self, cid: &str, pod: &str, selection: Selection) -> Response {
        self.call(&Request::Choose {
            attachment: id(cid),
            pod: PodRef {
                namespace: "default".into(),
                name: pod.into(),
                ..PodRef::default()
            },
            selection,
        })
        .await
    }
}

fn id(cid: &str) -> AttachmentId {
    AttachmentId {
        network: NET.into(),
        container_id: cid.into(),
        ifname: "net1".into(),
    }
}

#[tokio::test]
async fn choose_names_the_blocks_records_nothing_and_refuses_address_annotations() {
    let d = start().await;
    d.pod("plain", &[]);
    match d.choose("c1", "plain", Selection::default()).await {
        Response::Chosen { nics } => {
            let got: Vec<(String, u32, String, Vec<String>)> = nics
                .iter()
                .map(|n| {
                    (
                        n.nic.to_string(),
                        n.interface,
                        n.blocks[0].cidr.to_string(),
                        n.blocks[0]
                            .excludes
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    (
                        "eth0".into(),
                        0,
                        "192.168.0.0/24".into(),
                        vec!["192.168.0.0/28".into()]
                    ),
                    ("eth1".into(), 1, "192.168.64.0/24".into(), vec![]),
                ]
            );
            assert_eq!(
                nics[1].blocks[0].gateway,
                Some("192.168.64.1".parse().unwrap())
            );
        }
        other => panic!("{other:?}"),
    }
    // Nothing recorded: the daemon knows no such attachment.
    match d
        .call(&Request::Check {
            attachment: id("c1"),
        })
        .await
    {
        Response::Error(e) => assert_eq!(e.code, codes::UNKNOWN_CONTAINER, "{}", e.message),
        other => panic!("{other:?}"),
    }
    // The pod's selection narrows it as it narrows an ADD.
    let one = Selection {
        masters: vec!["eth1".into()],
        ..Selection::default()
    };
    assert!(matches!(
        d.choose("c1", "plain", one).await,
        Response::Chosen { nics } if nics.len() == 1 && nics[0].nic.as_str() == "eth1"
    ));

    // Annotations that ask for addresses are railyard-ipam's: refused.
    d.pod(
        "fixed",
        &[(
            "rails.default.kubernetes.io/ip_address",
            "192.168.0.33,192.168.64.33",
        )],
    );
    match d.choose("c2", "fixed", Selection::default()).await {
        Response::Error(e) => {
            assert_eq!(e.code, codes::INVALID_CONFIG, "{}", e.message);
            assert!(
                e.message.contains("static addresses") && e.message.contains("external IPAM"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
}
