//! `kill -9` of the real route-daemon in the middle of a burst of IPAM ADDs.
//!
//! What the daemon promises: an ADD is answered only once its allocation is on
//! disk, so whatever a caller was told survives the kill; an ADD that was written
//! but whose answer was lost is either retried (same addresses, by container ID
//! and interface) or released by GC. Nothing is handed out twice, nothing leaks.
//!
//! `railyard-ipam` is run directly, as a runtime runs an IPAM plugin, so the
//! burst is fast enough (no namespaces, no delegate) for the kill to land in it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use railyard_e2e::cluster::pods::wait_ready;
use railyard_e2e::ClusterSpec;

use crate::common::{spec, TestCluster, CONVERGE};

const BURST: usize = 240;
const WORKERS: usize = 12;
/// The kill comes once this many ADDs have been answered.
const KILL_AFTER: usize = 60;

/// The container of an ADD whose caller hung up before the answer.
const LOST: &str = "lost-reply";

/// Sends an ADD for `cid` straight to host 0's socket, as the plugin would, and
/// closes the connection without reading the answer.
fn add_and_hang_up(spec: &ClusterSpec, cid: &str) {
    let request = railyard_core::ipam::Request::Add {
        attachment: railyard_core::ipam::AttachmentId {
            network: spec.network.clone(),
            container_id: cid.to_owned(),
            ifname: "net1".to_owned(),
        },
        pod: Default::default(),
        selection: Default::default(),
        master: None,
    };
    let mut line = serde_json::to_vec(&request).expect("encode request");
    line.push(b'\n');
    let mut conn = std::os::unix::net::UnixStream::connect(spec.socket(0)).expect("connect");
    conn.write_all(&line).expect("send request");
    drop(conn);
}

/// One plugin run: its addresses, or the CNI error code it failed with.
type Outcome = Result<BTreeSet<IpAddr>, u64>;

fn ipam(spec: &ClusterSpec, command: &str, cid: &str, valid: &[String]) -> Outcome {
    let mut conf = serde_json::json!({
        "cniVersion": "1.1.0",
        "name": spec.network,
        "type": "railyard-cni",
        "ipam": {"type": "railyard-ipam", "socket": spec.socket(0)},
    });
    if command == "GC" {
        conf["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|c| serde_json::json!({"containerID": c, "ifname": "net1"}))
            .collect();
    }
    let mut cmd = Command::new(spec.bin_dir.join("railyard-ipam"));
    cmd.env("CNI_COMMAND", command)
        .env("CNI_PATH", spec.cni_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if command != "GC" {
        cmd.env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", format!("/run/netns/{}", spec.host(0)))
            .env("CNI_IFNAME", "net1")
            .env(
                "CNI_ARGS",
                format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={cid}"),
            );
    }
    let mut child = cmd.spawn().expect("run railyard-ipam");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("write config");
    let out = child.wait_with_output().expect("railyard-ipam");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() {
        return Err(v["code"].as_u64().unwrap_or(0));
    }
    Ok(v["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.parse::<ipnet::IpNet>().ok())
        .map(|a| a.addr())
        .collect())
}

/// What the etcd mirror records for the network (only host 0 allocates in this
/// test): container ID to addresses.
fn held(c: &mut TestCluster) -> BTreeMap<String, BTreeSet<IpAddr>> {
    let network = c.spec().network.clone();
    c.observer()
        .expect("observer")
        .allocations(&network)
        .unwrap_or_default()
        .iter()
        .map(|r| (r.id.container_id.clone(), r.addresses().collect()))
        .collect()
}

/// Waits until the mirror's container IDs satisfy `done`, returning them.
fn wait_held(
    c: &mut TestCluster,
    what: &str,
    done: impl Fn(&BTreeMap<String, BTreeSet<IpAddr>>) -> bool,
) -> BTreeMap<String, BTreeSet<IpAddr>> {
    let start = Instant::now();
    loop {
        let now = held(c);
        if done(&now) {
            return now;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "etcd never held {what}: it has {} attachments: {:?}",
            now.len(),
            now.keys().take(10).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_daemon_killed_during_an_add_burst_duplicates_and_leaks_nothing() {
    let mut s = spec("e2e-ipamkill", 208);
    s.hosts = 2;
    s.pods = 0;
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    let per_pod = spec.rails;
    wait_ready(&spec, 0, CONVERGE).expect("host 0 ready for pods");

    // The burst: WORKERS runtimes adding BURST containers; the daemon is killed
    // once KILL_AFTER ADDs have been answered.
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, Outcome>::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (spec, next, answered, outcomes) = (
                spec.clone(),
                Arc::clone(&next),
                Arc::clone(&answered),
                Arc::clone(&outcomes),
            );
            std::thread::spawn(move || loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= BURST {
                    return;
                }
                let cid = format!("burst-{k:03}");
                let got = ipam(&spec, "ADD", &cid, &[]);
                if got.is_ok() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                outcomes.lock().expect("lock").insert(cid, got);
            })
        })
        .collect();
    let start = Instant::now();
    while answered.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            start.elapsed() < CONVERGE,
            "only {} ADDs answered before the kill",
            answered.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    c.crash_daemon(0);
    for w in workers {
        w.join().expect("worker");
    }
    let outcomes = Arc::try_unwrap(outcomes)
        .expect("workers done")
        .into_inner()
        .expect("lock");
    let ok: BTreeMap<&String, &BTreeSet<IpAddr>> = outcomes
        .iter()
        .filter_map(|(c, o)| o.as_ref().ok().map(|a| (c, a)))
        .collect();
    let failed: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| o.is_err())
        .map(|(c, _)| c)
        .collect();
    println!(
        "{} ADDs answered, {} failed while the daemon was down (codes {:?})",
        ok.len(),
        failed.len(),
        outcomes
            .values()
            .filter_map(|o| o.as_ref().err())
            .collect::<BTreeSet<_>>()
    );
    assert!(ok.len() >= KILL_AFTER, "the burst answered {}", ok.len());
    assert!(
        !failed.is_empty(),
        "the kill landed after the burst: nothing was tested"
    );
    // The daemon being unreachable is "try again later", not a hard failure.
    for (cid, o) in &outcomes {
        if let Err(code) = o {
            assert_eq!(*code, 11, "{cid} failed with code {code}, not 11");
        }
    }

    c.start_daemon(0).expect("restart the daemon");
    wait_ready(&spec, 0, CONVERGE).expect("ready after restart");

    // Everything a caller was told survived: a repeated ADD returns it again.
    let mut seen = BTreeMap::<IpAddr, String>::new();
    for (cid, addrs) in &ok {
        assert_eq!(addrs.len(), per_pod, "{cid} got {addrs:?}");
        let again = ipam(&spec, "ADD", cid, &[]).expect("repeated ADD");
        assert_eq!(&again, *addrs, "{cid} changed addresses across the kill");
        for a in *addrs {
            if let Some(other) = seen.insert(*a, (*cid).clone()) {
                panic!("{a} was given to {other} and {cid}");
            }
        }
    }
    // The runtime retries half of the failed ADDs (whether or not the daemon had
    // written them before it died); the rest it gives up on.
    let (retried, abandoned) = failed.split_at(failed.len() / 2);
    for cid in retried {
        let addrs = ipam(&spec, "ADD", cid, &[]).expect("retried ADD");
        assert_eq!(addrs.len(), per_pod, "{cid} got {addrs:?}");
        for a in &addrs {
            if let Some(other) = seen.insert(*a, (*cid).clone()) {
                panic!("{a} was given to {other} and {cid}");
            }
        }
    }

    // A runtime that gives up on an ADD (its timeout, its own crash) after
    // sending it: the daemon writes the allocation, the answer finds nobody. The
    // kill above may or may not have caught an ADD in that state; this one is
    // certain.
    add_and_hang_up(&spec, LOST);

    // Before GC the log holds every answered and retried ADD, LOST, and any
    // abandoned ADD the daemon wrote just before it died (its answer was lost).
    let valid: BTreeSet<String> = ok
        .keys()
        .map(|c| (*c).clone())
        .chain(retried.iter().map(|c| (*c).clone()))
        .collect();
    let before = wait_held(&mut c, "every answered ADD and the unanswered one", |h| {
        h.contains_key(LOST) && valid.iter().all(|c| h.contains_key(c))
    });
    let orphans: Vec<&String> = before.keys().filter(|c| !valid.contains(*c)).collect();
    for o in &orphans {
        assert!(
            *o == LOST || abandoned.contains(o),
            "{o} is held but was never added"
        );
    }

    // GC with the runtime's list of live attachments: the orphans are released,
    // nothing else.
    let list: Vec<String> = valid.iter().cloned().collect();
    ipam(&spec, "GC", "", &list).expect("GC");
    let after = wait_held(&mut c, "exactly the valid attachments", |h| {
        h.keys().eq(valid.iter())
    });
    for (cid, addrs) in &after {
        let told: BTreeSet<IpAddr> = seen
            .iter()
            .filter(|(_, c)| *c == cid)
            .map(|(a, _)| *a)
            .collect();
        assert_eq!(addrs, &told, "etcd and the plugin disagree on {cid}");
    }
    println!(
        "{} abandoned ADDs, {} of them written before the kill, and {LOST}: released by GC; {} attachments held",
        abandoned.len(),
        orphans.len() - 1,
        after.len()
    );

    // The freed addresses and the rest of the block still work, and nothing
    // collides with what is held.
    for k in 0..20 {
        let cid = format!("after-{k:02}");
        let addrs = ipam(&spec, "ADD", &cid, &[]).expect("ADD after GC");
        for a in &addrs {
            if let Some(other) = seen.insert(*a, cid.clone()) {
                panic!("{a} was given to {other} and {cid}");
            }
        }
    }
}
