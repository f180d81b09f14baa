//! The IPAM socket server with the real allocation database: the protocol over a
//! real unix socket, as the `railyard-ipam` plugin speaks it.

use std::collections::HashSet;
use std::sync::Arc;

use railyard_allocdb::{AllocDb, NetworkConfig, Options};
use railyard_core::ipam::{AttachmentId, PodRef, Request, Response, Selection};
use railyard_core::{plan, HostInventory, NetworkManifest, Nic};
use railyard_route_daemon::ipam::{serve, IpamContext, IpamMetrics};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

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

async fn start(dir: &std::path::Path, uid: u32) -> (std::path::PathBuf, watch::Sender<bool>) {
    let manifest: NetworkManifest = serde_yaml::from_str(
        "metadata: {name: rails}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
    )
    .unwrap();
    let net = manifest.validate().unwrap();
    let host = HostInventory {
        name: "h0".into(),
        nics: nics(),
    };
    let p = plan(&net, &[host], None, 0, 600);
    let db = AllocDb::open(dir.join("db"), Options::default()).unwrap();
    db.set_network(NetworkConfig::from_plan(&net, &p, "h0"))
        .await
        .unwrap();
    let (_, nic_rx) = watch::channel(nics());
    let (_, class_rx) = watch::channel(Vec::new());
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = Arc::new(IpamContext {
        db: Arc::new(db),
        nics: nic_rx,
        classes: class_rx,
        metrics: Arc::new(IpamMetrics::new(&mut registry)),
        allowed_uid: uid,
        trusted: watch::channel(true).1,
        pods: None,
    });
    let socket = dir.join("ipam.sock");
    let (stop, rx) = watch::channel(false);
    let s = socket.clone();
    tokio::spawn(async move { serve(&s, ctx, rx).await });
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (socket, stop)
}

async fn call(socket: &std::path::Path, req: &Request) -> Response {
    let mut s = UnixStream::connect(socket).await.unwrap();
    let mut line = serde_json::to_vec(req).unwrap();
    line.push(b'\n');
    s.write_all(&line).await.unwrap();
    let mut out = String::new();
    BufReader::new(s).read_line(&mut out).await.unwrap();
    serde_json::from_str(&out).unwrap()
}

fn add(cid: &str) -> Request {
    Request::Add {
        attachment: AttachmentId {
            network: "rails".into(),
            container_id: cid.into(),
            ifname: "net1".into(),
        },
        pod: PodRef {
            namespace: "default".into(),
            name: cid.into(),
            uid: String::new(),
            controller: None,
        },
        selection: Selection::default(),
        master: None,
    }
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_adds_get_distinct_addresses_on_every_rail() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _stop) = start(dir.path(), me()).await;
    let calls = (0..200).map(|i| {
        let socket = socket.clone();
        async move { call(&socket, &add(&format!("c{i:03}"))).await }
    });
    let mut seen = HashSet::new();
    for r in futures::future::join_all(calls).await {
        let Response::Added { nics } = r else {
            panic!("ADD failed: {r:?}")
        };
        assert_eq!(nics.len(), 2, "one address per rail");
        for n in nics {
            for a in n.addresses {
                assert!(seen.insert(a.addr()), "{a} handed out twice");
            }
        }
    }
    assert_eq!(seen.len(), 400);
    // A repeated ADD returns the same addresses.
    let (Response::Added { nics: a }, Response::Added { nics: b }) = (
        call(&socket, &add("c007")).await,
        call(&socket, &add("c007")).await,
    ) else {
        panic!("repeated ADD failed")
    };
    assert_eq!(a, b);
}

#[tokio::test]
async fn malformed_requests_and_foreign_peers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _stop) = start(dir.path(), me()).await;
    let mut s = UnixStream::connect(&socket).await.unwrap();
    s.write_all(b"{not json\n").await.unwrap();
    let mut out = String::new();
    BufReader::new(s).read_line(&mut out).await.unwrap();
    let r: Response = serde_json::from_str(&out).unwrap();
    assert!(
        matches!(r, Response::Error(ref e) if e.code == 102 && e.message.contains("malformed")),
        "{r:?}"
    );

    let dir2 = tempfile::tempdir().unwrap();
    let (socket2, _stop2) = start(dir2.path(), me() + 1).await;
    let r = call(&socket2, &add("x")).await;
    assert!(
        matches!(r, Response::Error(ref e) if e.message.contains("not allowed")),
        "{r:?}"
    );
    let mode = std::fs::metadata(&socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap();
    assert_eq!(mode & 0o777, 0o600, "the socket is root only");
}
