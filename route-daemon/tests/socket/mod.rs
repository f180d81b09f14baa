//! One IPAM server on a real unix socket over a real allocation database, for
//! the protocol tests (`ipam_server.rs`, `ipam_annotations.rs`,
//! `ipam_choose.rs`): host `h0` with NICs eth0 and eth1, one network planned
//! on it, and optionally the in-memory Kubernetes API (`MemoryPods`, which
//! passes the same conformance suite as the kube-rs source).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use railyard_allocdb::{AllocDb, NetworkConfig, Options};
use railyard_core::ipam::{AttachmentId, PodRef, Request, Response, Selection};
use railyard_core::{plan, HostInventory, NetworkManifest, Nic};
use railyard_route_daemon::ipam::{serve, IpamContext, IpamMetrics};
use railyard_route_daemon::sweep::{MemoryPods, PodSource};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

pub const NODE: &str = "h0";

/// eth0 and eth1, on rails 0 and 1 (10.0.k.1/24).
pub fn nics() -> Vec<Nic> {
    (0..2)
        .map(|k| Nic {
            name: format!("eth{k}"),
            addresses: vec![format!("10.0.{k}.1/24").parse().unwrap()],
            up: true,
            ..Nic::default()
        })
        .collect()
}

pub fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// What the daemon is started with.
pub struct Setup<'a> {
    pub network: &'a str,
    /// The MultiNicNetwork `spec` below `metadata`, as YAML lines.
    pub spec: &'a str,
    /// Peers must run as this uid.
    pub uid: u32,
    /// With the in-memory API.
    pub api: bool,
}

pub struct Daemon {
    pub socket: PathBuf,
    pub network: String,
    pub api: Option<Arc<MemoryPods>>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

pub async fn start(setup: Setup<'_>) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let manifest: NetworkManifest = serde_yaml::from_str(&format!(
        "metadata: {{name: {}}}\nspec:\n{}",
        setup.network, setup.spec
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
    let api = setup.api.then(|| {
        let api = Arc::new(MemoryPods::new());
        api.add_node(NODE);
        api
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = Arc::new(IpamContext {
        db: Arc::new(db),
        nics: watch::channel(nics()).1,
        classes: watch::channel(Vec::new()).1,
        metrics: Arc::new(IpamMetrics::new(&mut registry)),
        allowed_uid: setup.uid,
        trusted: watch::channel(true).1,
        pods: api.clone().map(|a| a as Arc<dyn PodSource>),
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
        network: setup.network.to_string(),
        api,
        _stop: stop,
        _dir: dir,
    }
}

impl Daemon {
    /// One request, one answer, as railyard-ipam sends it.
    pub async fn call(&self, req: &Request) -> Response {
        let mut s = UnixStream::connect(&self.socket).await.unwrap();
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        s.write_all(&line).await.unwrap();
        let mut out = String::new();
        BufReader::new(s).read_line(&mut out).await.unwrap();
        serde_json::from_str(&out).unwrap()
    }

    /// A pod in the API (namespace `default`, bound to h0) with
    /// `annotations`, controlled by a StatefulSet when `sts`.
    pub fn pod(&self, name: &str, annotations: &[(&str, &str)], sts: bool) {
        let api = self.api.as_ref().expect("started with the API");
        api.create(NODE, "default", name);
        let map: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        api.describe("default", name, map, sts.then_some("StatefulSet"));
    }

    /// The attachment of container `cid` on `net1`.
    pub fn id(&self, cid: &str) -> AttachmentId {
        AttachmentId {
            network: self.network.clone(),
            container_id: cid.into(),
            ifname: "net1".into(),
        }
    }

    /// ADD of container `cid` for pod `default/<pod>`.
    pub async fn add(&self, cid: &str, pod: &str) -> Response {
        self.call(&Request::Add {
            attachment: self.id(cid),
            pod: pod_ref(pod),
            selection: Selection::default(),
            master: None,
        })
        .await
    }
}

pub fn pod_ref(name: &str) -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: name.into(),
        ..PodRef::default()
    }
}
