//! railyard-ipam against host-local (the reference IPAM of containernetworking-
//! plugins), side by side in one run, and durable allocations per second through
//! the daemon's socket.
//!
//!     make release && cargo bench -p railyard-benches --bench ipam
//!
//! Both plugins are executed as a container runtime executes them (a process per
//! call, environment plus stdin) with the same config shape; the railyard daemon
//! side (socket server + durable allocation log) runs in this process.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_allocdb::{AllocDb, NetworkConfig, Options};
use railyard_core::ipam::{AttachmentId, PodRef, Request, Response, Selection};
use railyard_core::{plan, HostInventory, NetworkManifest, Nic};
use railyard_route_daemon::ipam::{serve, IpamContext, IpamMetrics};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

const CALLS: usize = 300;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = rt.block_on(start_daemon(dir.path()));
    let ipam_bin = release_bin("railyard-ipam");
    let host_local = PathBuf::from("/usr/lib/cni/host-local");
    assert!(
        host_local.exists(),
        "install containernetworking-plugins for /usr/lib/cni/host-local"
    );

    let ours = format!(
        r#"{{"cniVersion":"1.0.0","name":"rails","type":"macvlan","master":"eth0","ipam":{{"type":"railyard-ipam","socket":"{}"}}}}"#,
        socket.display()
    );
    let data_dir = dir.path().join("host-local");
    let theirs = format!(
        r#"{{"cniVersion":"1.0.0","name":"rails","type":"macvlan","master":"eth0","ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"192.168.0.0/24"}}]]}}}}"#,
        data_dir.display()
    );
    println!(
        "railyard-ipam is {} linked (`make cni-plugins` links it statically)",
        if is_static(&ipam_bin) {
            "statically"
        } else {
            "DYNAMICALLY"
        }
    );
    // Interleave the two plugins so machine noise hits both alike. VERSION does
    // no work: it is what starting the process costs each plugin.
    let (mut ours_add, mut ours_del, mut theirs_add, mut theirs_del) =
        (vec![], vec![], vec![], vec![]);
    let (mut ours_version, mut theirs_version) = (vec![], vec![]);
    for i in 0..CALLS {
        let cid = format!("bench{i:05}");
        ours_add.push(exec(&ipam_bin, "ADD", &cid, &ours));
        theirs_add.push(exec(&host_local, "ADD", &cid, &theirs));
        ours_del.push(exec(&ipam_bin, "DEL", &cid, &ours));
        theirs_del.push(exec(&host_local, "DEL", &cid, &theirs));
        ours_version.push(exec(&ipam_bin, "VERSION", &cid, &ours));
        theirs_version.push(exec(&host_local, "VERSION", &cid, &theirs));
    }
    println!("ipam latency, {CALLS} calls each, one process per call (p50 / p99):");
    report("railyard-ipam ADD", &mut ours_add);
    report("host-local    ADD", &mut theirs_add);
    report("railyard-ipam DEL", &mut ours_del);
    report("host-local    DEL", &mut theirs_del);
    report(
        "railyard-ipam VERSION (process start only)",
        &mut ours_version,
    );
    report(
        "host-local    VERSION (process start only)",
        &mut theirs_version,
    );
    println!(
        "ratio ADD p50 railyard/host-local: {:.2}",
        p(&ours_add, 0.5).as_secs_f64() / p(&theirs_add, 0.5).as_secs_f64()
    );

    for clients in [1usize, 8, 64] {
        let (n, took) = rt.block_on(throughput(&socket, clients, Duration::from_secs(3)));
        println!(
            "durable allocations through the socket, {clients:>2} clients: {:>7.0}/s ({n} ADDs of 2 NICs in {:.1} s)",
            n as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
    }
}

fn release_bin(name: &str) -> PathBuf {
    // target/release/deps/ipam-xxxx -> target/release/<name>
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release --bins` first",
        bin.display()
    );
    bin
}

/// Whether `bin` has no ELF interpreter: a dynamically linked executable names
/// its loader (`/lib64/ld-linux-x86-64.so.2`) near the start of the file.
fn is_static(bin: &Path) -> bool {
    let head = std::fs::read(bin)
        .map(|b| b[..b.len().min(4096)].to_vec())
        .unwrap_or_default();
    !head.windows(7).any(|w| w == b"ld-linu")
}

fn exec(bin: &Path, command: &str, cid: &str, config: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cid)
        // A namespace that exists (the plugin's own): ADD refuses one that does not.
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugin starts");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(config.as_bytes());
    }
    let out = child.wait_with_output().expect("plugin runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{} {command} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout)
    );
    took
}

fn p(samples: &[Duration], q: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn report(what: &str, samples: &mut [Duration]) {
    println!(
        "  {what}: {:>6.2} ms / {:>6.2} ms",
        p(samples, 0.5).as_secs_f64() * 1e3,
        p(samples, 0.99).as_secs_f64() * 1e3
    );
}

fn nics() -> Vec<Nic> {
    (0..2)
        .map(|k| Nic {
            name: format!("eth{k}"),
            addresses: vec![format!("10.0.{k}.1/24").parse().expect("addr")],
            up: true,
            ..Nic::default()
        })
        .collect()
}

/// The daemon side: a durable allocation log on a /16-per-host plan (room for the
/// throughput run) and the socket server.
async fn start_daemon(dir: &Path) -> PathBuf {
    let manifest: NetworkManifest = serde_json::from_str(
        r#"{"metadata":{"name":"rails"},"spec":{"subnet":"10.128.0.0/9","ipam":"{\"hostBlock\": 4, \"interfaceBlock\": 1}"}}"#,
    )
    .expect("manifest");
    let net = manifest.validate().expect("valid");
    let host = HostInventory {
        name: "h0".into(),
        nics: nics(),
    };
    let p = plan(&net, &[host], None, 0, 600);
    let db = AllocDb::open(dir.join("db"), Options::default()).expect("allocdb");
    db.set_network(NetworkConfig::from_plan(&net, &p, "h0"))
        .await
        .expect("network");
    let (_nt, nic_rx) = watch::channel(nics());
    let (_ct, class_rx) = watch::channel(Vec::new());
    // A fresh log with no etcd behind it: the bench's daemon trusts it, as
    // one whose re-sync with etcd has completed would.
    let (_tt, trusted) = watch::channel(true);
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
    let socket = dir.join("ipam.sock");
    let (stop, rx) = watch::channel(false);
    std::mem::forget(stop); // serve for the whole run
    let s = socket.clone();
    tokio::spawn(async move { serve(&s, ctx, rx).await });
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    socket
}

/// Most ADDs per run: the runs share one host block per rail (65,536 tracked
/// addresses), and nothing is released in between.
const MAX_ADDS_PER_RUN: usize = 20_000;

/// `clients` connections each issuing ADDs back to back for `for_how_long`, or
/// until `MAX_ADDS_PER_RUN` have been made.
async fn throughput(socket: &Path, clients: usize, for_how_long: Duration) -> (usize, Duration) {
    let start = Instant::now();
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let socket = socket.to_path_buf();
            let issued = Arc::clone(&issued);
            tokio::spawn(async move {
                let stream = UnixStream::connect(&socket).await.expect("connect");
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                let mut seen = HashSet::new();
                let mut n = 0;
                let mut line = String::new();
                while start.elapsed() < for_how_long
                    && issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < MAX_ADDS_PER_RUN
                {
                    let req = Request::Add {
                        attachment: AttachmentId {
                            network: "rails".into(),
                            container_id: format!("tp-{clients}-{c}-{n}"),
                            ifname: "net1".into(),
                        },
                        pod: PodRef::default(),
                        selection: Selection::default(),
                        master: None,
                    };
                    let mut buf = serde_json::to_vec(&req).expect("json");
                    buf.push(b'\n');
                    w.write_all(&buf).await.expect("write");
                    line.clear();
                    r.read_line(&mut line).await.expect("read");
                    match serde_json::from_str::<Response>(&line) {
                        Ok(Response::Added { nics }) => {
                            for a in nics.iter().flat_map(|n| &n.addresses) {
                                assert!(seen.insert(a.addr()), "duplicate {a}");
                            }
                        }
                        other => panic!("ADD failed: {other:?}"),
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client");
    }
    (total, start.elapsed())
}
