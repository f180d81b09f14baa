//! A daemon whose state dir is empty while its pods run must not believe it:
//! the etcd mirror's records of this host are adopted (held again, logged
//! loudly), never deleted, and no request is served before that. Records the
//! log can account for (released here, or older than the log's own decision on
//! an address) are the only ones a re-sync deletes.
//!
//! The real allocation database and mirror over the in-memory store.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_allocdb::{AddArgs, AllocDb, Attachment, NetworkConfig, Options};
use railyard_core::ipam::{AttachmentId, NicAllocation, Request, Response};
use railyard_core::{keys, plan, HostInventory, NetworkManifest, Nic};
use railyard_route_daemon::ipam::{run_mirror, serve, IpamContext, IpamMetrics, MirrorConfig};
use railyard_store::{MemStore, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

const HOST: &str = "h0";

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

fn config() -> NetworkConfig {
    let manifest: NetworkManifest = serde_yaml::from_str(
        "metadata: {name: rails}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
    )
    .unwrap();
    let net = manifest.validate().unwrap();
    let host = HostInventory {
        name: HOST.into(),
        nics: nics(),
    };
    NetworkConfig::from_plan(&net, &plan(&net, &[host], None, 0, 600), HOST)
}

fn id(c: &str) -> AttachmentId {
    AttachmentId {
        network: "rails".into(),
        container_id: c.into(),
        ifname: "net1".into(),
    }
}

fn addrs(nics: &[NicAllocation]) -> BTreeSet<IpAddr> {
    nics.iter()
        .flat_map(|n| n.addresses.iter().map(|a| a.addr()))
        .collect()
}

/// Starts the mirror of `db`; returns its "synced" flag and its stop switch.
fn mirror(store: &MemStore, db: &Arc<AllocDb>) -> (watch::Receiver<bool>, watch::Sender<bool>) {
    let (synced_tx, synced) = watch::channel(false);
    let (stop, shutdown) = watch::channel(false);
    let cfg = MirrorConfig {
        host: HOST.into(),
        interval: Duration::from_millis(20),
    };
    let store: Arc<dyn Store> = Arc::new(store.clone());
    tokio::spawn(run_mirror(store, Arc::clone(db), cfg, synced_tx, shutdown));
    (synced, stop)
}

async fn records(store: &MemStore) -> BTreeSet<String> {
    let prefix = keys::allocations_of_host("rails", HOST);
    store
        .range(&prefix)
        .await
        .unwrap()
        .kvs
        .iter()
        .filter_map(|kv| kv.decode_json::<Attachment>().ok())
        .map(|a| a.id.container_id)
        .collect()
}

async fn wait_records(store: &MemStore, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    loop {
        let have = records(store).await;
        if have == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "etcd holds {have:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_state_dir_recovers_the_running_pods_from_etcd() {
    let store = MemStore::default();
    let first = tempfile::tempdir().unwrap();
    let db = Arc::new(AllocDb::open(first.path(), Options::default()).unwrap());
    db.set_network(config()).await.unwrap();
    let mut held = BTreeSet::new();
    for c in ["pod-a", "pod-b", "pod-c"] {
        let got = db.add(&AddArgs::new(id(c)), &nics(), &[]).await.unwrap();
        held.extend(addrs(&got));
    }
    let (_, stop) = mirror(&store, &db);
    wait_records(&store, &["pod-a", "pod-b", "pod-c"]).await;
    let _ = stop.send(true);
    drop(db);

    // The daemon restarts with an empty --state-dir; its pods still run.
    let fresh = tempfile::tempdir().unwrap();
    let db = Arc::new(AllocDb::open(fresh.path(), Options::default()).unwrap());
    assert!(db.opened_empty());
    db.set_network(config()).await.unwrap();
    let (mut synced, _stop) = mirror(&store, &db);
    tokio::time::timeout(Duration::from_secs(10), synced.wait_for(|s| *s))
        .await
        .expect("the mirror re-synced")
        .unwrap();
    // Nothing erased, everything held again.
    assert_eq!(
        records(&store).await,
        ["pod-a", "pod-b", "pod-c"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let recovered: BTreeSet<IpAddr> = db
        .attachments(None)
        .await
        .unwrap()
        .iter()
        .flat_map(|a| addrs(&a.nics))
        .collect();
    assert_eq!(recovered, held);
    // A new pod gets addresses no running pod holds.
    let new = db
        .add(&AddArgs::new(id("pod-new")), &nics(), &[])
        .await
        .unwrap();
    for a in addrs(&new) {
        assert!(
            !held.contains(&a),
            "{a} handed out again while a pod holds it"
        );
    }
    // The recovered attachments are released as usual; the mirror deletes them.
    db.del(&id("pod-a")).await.unwrap();
    wait_records(&store, &["pod-b", "pod-c", "pod-new"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_deletes_only_records_it_can_account_for() {
    let store = MemStore::default();
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(AllocDb::open(dir.path(), Options::default()).unwrap());
    db.set_network(config()).await.unwrap();
    let a = db
        .add(&AddArgs::new(id("live")), &nics(), &[])
        .await
        .unwrap();
    db.add(&AddArgs::new(id("gone")), &nics(), &[])
        .await
        .unwrap();
    // Released before etcd was reachable: its record may exist, and may go.
    db.del(&id("gone")).await.unwrap();
    let put = |c: &str, nics: Vec<NicAllocation>| {
        let att = Attachment {
            id: id(c),
            pod: Default::default(),
            nics,
        };
        let key = keys::allocation("rails", HOST, c, "net1");
        (key, serde_json::to_vec(&att).unwrap())
    };
    // `gone` as an older mirror wrote it; `stale` claims live's addresses (older
    // than the log's decision); `unknown` is held by nobody here.
    let mut unknown_nics = a.clone();
    for n in &mut unknown_nics {
        for addr in &mut n.addresses {
            let next = match addr.addr() {
                IpAddr::V4(v) => IpAddr::V4((u32::from(v) + 100).into()),
                IpAddr::V6(v) => IpAddr::V6((u128::from(v) + 100).into()),
            };
            *addr = ipnet::IpNet::new(next, addr.prefix_len()).unwrap();
        }
    }
    for (k, v) in [
        put("gone", a.clone()),
        put("stale", a.clone()),
        put("unknown", unknown_nics.clone()),
    ] {
        store.put(&k, v, None).await.unwrap();
    }
    let (mut synced, _stop) = mirror(&store, &db);
    tokio::time::timeout(Duration::from_secs(10), synced.wait_for(|s| *s))
        .await
        .expect("re-synced")
        .unwrap();
    wait_records(&store, &["live", "unknown"]).await;
    let unknown = db.check(&id("unknown")).await.expect("adopted as held");
    assert_eq!(addrs(&unknown.nics), addrs(&unknown_nics));
    assert!(db.check(&id("stale")).await.is_err());
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

#[tokio::test]
async fn an_empty_log_serves_nothing_until_etcd_was_asked() {
    let dir = tempfile::tempdir().unwrap();
    let db = AllocDb::open(dir.path().join("db"), Options::default()).unwrap();
    db.set_network(config()).await.unwrap();
    let (_nics_tx, nic_rx) = watch::channel(nics());
    let (_classes_tx, class_rx) = watch::channel(Vec::new());
    let (trusted_tx, trusted) = watch::channel(false);
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = Arc::new(IpamContext {
        db: Arc::new(db),
        nics: nic_rx,
        classes: class_rx,
        metrics: Arc::new(IpamMetrics::new(&mut registry)),
        allowed_uid: nix::unistd::geteuid().as_raw(),
        trusted,
        pods: None,
    });
    let socket = dir.path().join("ipam.sock");
    let (_stop, rx) = watch::channel(false);
    let s = socket.clone();
    tokio::spawn(async move { serve(&s, ctx, rx).await });
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let add = Request::Add {
        attachment: id("early"),
        pod: Default::default(),
        selection: Default::default(),
        master: None,
    };
    let status = Request::Status {
        network: "rails".into(),
    };
    match call(&socket, &add).await {
        Response::Error(e) => {
            assert_eq!(e.code, 11, "{}", e.message);
            assert!(e.message.contains("recovered from etcd"), "{}", e.message);
        }
        r => panic!("ADD before recovery answered {r:?}"),
    }
    match call(&socket, &status).await {
        Response::Error(e) => assert_eq!(e.code, 50, "{}", e.message),
        r => panic!("STATUS before recovery answered {r:?}"),
    }
    trusted_tx.send_replace(true);
    assert_eq!(call(&socket, &status).await, Response::Done);
    assert!(matches!(call(&socket, &add).await, Response::Added { .. }));
}
