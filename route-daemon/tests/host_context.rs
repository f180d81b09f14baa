//! One context per daemon process (needs root: the daemon runs in a namespace of
//! its own). The whole daemon (registration, routes, IPAM with its mirror and
//! plan feed) runs on the one store a counting connector hands out; its etcd
//! endpoint leads nowhere, so a part that opened a connection of its own would
//! never get anything, and what each part did in the store proves it went
//! through the shared one.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use railyard_core::ipam::{AttachmentId, Request, Response};
use railyard_core::{keys, route_table_for, HostInventory, NetworkManifest, Nic, Planner};
use railyard_route_daemon::daemon::{self, Connect, DaemonConfig, OnError};
use railyard_route_daemon::ipam::IpamConfig;
use railyard_route_daemon::metrics::Metrics;
use railyard_store::{Backoff, EtcdConfig, MemStore, Store, StoreError};
use railyard_test_support::run_in_netns;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

const NET: &str = "rails";

/// Unreachable until `reachable` is set; counts attempts and connections.
struct Counting {
    store: MemStore,
    reachable: AtomicBool,
    attempts: AtomicUsize,
    connections: AtomicUsize,
}

#[async_trait]
impl Connect for Counting {
    async fn connect(
        &self,
        mut backoff: Backoff,
        shutdown: &mut watch::Receiver<bool>,
        on_error: OnError<'_>,
    ) -> Result<Option<Arc<dyn Store>>, StoreError> {
        loop {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.reachable.load(Ordering::SeqCst) {
                self.connections.fetch_add(1, Ordering::SeqCst);
                return Ok(Some(Arc::new(self.store.clone())));
            }
            let e = StoreError::Unavailable {
                endpoint: "test".into(),
                reason: "not yet".into(),
            };
            let wait = backoff.next_delay();
            if !on_error(&e, wait) {
                return Err(e);
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Ok(None),
            }
        }
    }
}

fn inventory(name: &str, n: u32) -> HostInventory {
    HostInventory {
        name: name.to_owned(),
        nics: (0..2)
            .map(|k| Nic {
                name: format!("rail{k}"),
                addresses: vec![format!("10.0.{}.{}/24", k + 1, n + 1).parse().unwrap()],
                up: true,
                ..Nic::default()
            })
            .collect(),
    }
}

/// The spec and a plan of h0 (this daemon) and h1, as the planner writes them.
async fn write_network(store: &MemStore) {
    let json = format!(
        r#"{{"metadata":{{"name":"{NET}"}},"spec":{{"subnet":"192.168.0.0/16","ipam":{{"hostBlock":6,"interfaceBlock":2}}}}}}"#
    );
    let m: NetworkManifest = serde_json::from_str(&json).unwrap();
    store
        .put(&keys::network(NET), json.into_bytes(), None)
        .await
        .unwrap();
    let mut planner = Planner::new(&m.validate().unwrap(), None);
    let invs = [inventory("h0", 0), inventory("h1", 1)];
    planner.register_rails(&invs);
    for inv in &invs {
        planner.upsert_host(inv);
    }
    let mut meta = planner.meta();
    meta.spec = Some(m.spec);
    meta.spec_revision = 1;
    store
        .put(
            &keys::plan_meta(NET),
            serde_json::to_vec(&meta).unwrap(),
            None,
        )
        .await
        .unwrap();
    for (name, plan) in planner.hosts() {
        store
            .put(
                &keys::plan_host(NET, name),
                serde_json::to_vec(plan).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
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

fn add(container: &str) -> Request {
    Request::Add {
        attachment: AttachmentId {
            network: NET.into(),
            container_id: container.into(),
            ifname: "net1".into(),
        },
        pod: Default::default(),
        selection: Default::default(),
        master: None,
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_registration_routes_and_ipam() {
    let ns = common::netns();
    // Rails rail0 and rail1; their peers' `veth` prefix keeps them out of discovery.
    for k in 0..2 {
        let addr = format!("10.0.{}.1/24", k + 1);
        common::veth(&ns, &format!("rail{k}"), &format!("veth-p{k}"), &[&addr]);
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipam.sock");
    let store = MemStore::new();
    let connector = Arc::new(Counting {
        store: store.clone(),
        reachable: AtomicBool::new(false),
        attempts: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
    });
    // Nothing listens there: only the connector's store can be reached.
    let etcd = EtcdConfig::new(["http://127.0.0.1:1"]);
    let mut cfg = DaemonConfig::new("h0", etcd);
    cfg.lease_ttl_secs = 2;
    cfg.ipam = Some(IpamConfig {
        socket: socket.clone(),
        state_dir: dir.path().join("state"),
        allowed_uid: nix::unistd::geteuid().as_raw(),
    });
    let (stop, shutdown) = watch::channel(false);
    let path = ns.path();
    let c: Arc<dyn Connect> = connector.clone();
    let daemon = std::thread::spawn(move || {
        run_in_netns(&path, true, move || {
            daemon::run_on(cfg, c, Arc::new(Metrics::default()), shutdown)
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    });

    // The socket comes up while the store is unreachable; an empty log serves
    // nothing until the mirror asked etcd.
    eventually("the IPAM socket", || async { socket.exists() }).await;
    match call(
        &socket,
        &Request::Status {
            network: NET.into(),
        },
    )
    .await
    {
        Response::Error(e) => assert_eq!(e.code, 50, "{}", e.message),
        r => panic!("STATUS before etcd answered {r:?}"),
    }
    eventually("a retried connection attempt", || async {
        connector.attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(connector.connections.load(Ordering::SeqCst), 0);

    connector.reachable.store(true, Ordering::SeqCst);
    write_network(&store).await;

    // Registration, through the shared store and the shared discovery source.
    eventually("h0 registered with its two rails", || async {
        let Ok(Some(kv)) = store.get(&keys::host("h0")).await else {
            return false;
        };
        let inv: HostInventory = kv.decode_json().unwrap();
        inv.nics.iter().map(|n| n.name.as_str()).collect::<Vec<_>>() == ["rail0", "rail1"]
    })
    .await;
    // Routes, from the plan watch.
    let table = route_table_for(NET);
    eventually("routes to h1 on both rails", || async {
        // The table exists only once its first route does: until then `ip`
        // fails ("FIB table does not exist"), which here means "not yet".
        let table = table.to_string();
        let out = ns
            .ip(&["route", "show", "table", &table])
            .unwrap_or_default();
        out.contains("192.168.1.0/24 via 10.0.1.2 dev rail0")
            && out.contains("192.168.65.0/24 via 10.0.2.2 dev rail1")
    })
    .await;
    // IPAM: trusted once the mirror re-synced through the shared store, and
    // allocating from the blocks the same plan watch fed it.
    let start = Instant::now();
    let added = loop {
        // Retried: untrusted (11) until the mirror re-synced, then no block
        // (the plan not fed yet) until the plan watch delivered it.
        if let Response::Added { nics } = call(&socket, &add("pod-a")).await {
            break nics;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no ADD served from h0's blocks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let addrs: Vec<String> = added
        .iter()
        .flat_map(|n| n.addresses.iter().map(|a| a.addr().to_string()))
        .collect();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    for block in ["192.168.0.", "192.168.64."] {
        assert!(addrs.iter().any(|a| a.starts_with(block)), "{addrs:?}");
    }
    eventually("the allocation mirrored", || async {
        let prefix = keys::allocations_of_host(NET, "h0");
        store.range(&prefix).await.is_ok_and(|r| r.kvs.len() == 1)
    })
    .await;

    assert_eq!(
        connector.connections.load(Ordering::SeqCst),
        1,
        "one store connection per process"
    );
    let _ = stop.send(true);
    tokio::task::spawn_blocking(move || daemon.join())
        .await
        .unwrap()
        .expect("daemon thread")
        .expect("daemon stopped cleanly");
}

/// The etcd client is built in one place at most: the context's connector,
/// through `railyard_store::connect_until`. A second connection anywhere in the
/// daemon (`EtcdStore::connect`, another call of the store's connect helpers or
/// of `EtcdArgs`'s) would be a second connection.
#[test]
fn the_daemon_builds_its_etcd_client_in_one_place() {
    const CONNECTS: [&str; 5] = [
        "EtcdStore::connect",
        "connect_until(",
        "connect_with_backoff(",
        ".connect_with_retry(",
        "etcd.connect(",
    ];
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for pattern in CONNECTS {
                    for _ in text.matches(pattern) {
                        found.push(format!("{}: {pattern}", path.display()));
                    }
                }
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("daemon/context.rs: connect_until("),
        "{found:?}"
    );
}
