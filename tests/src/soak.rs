//! The soak: pods added and deleted through the real `railyard-cni` on every
//! host at once, cycle after cycle, while a chaos schedule kills and restarts
//! route-daemons, kills and restarts etcd members and flaps rail NICs. It runs
//! on a local cluster ([`crate::cluster`]) with a three-member etcd, and checks
//! the invariants throughout rather than only at the end, because a duplicate
//! address that is released again a second later leaves no trace afterwards:
//!
//! - every ADD's addresses are held by no other live pod (the daemons'
//!   answers), and one per rail;
//! - an ADD or DEL fails only with "try again later" (code 11), which a
//!   runtime retries (a daemon being restarted, or not ready yet), or, on the
//!   host whose NIC is flapping and only then, with code 100 naming that NIC
//!   (the daemon gives no address on a NIC that lacks the address the plan
//!   routes its block through); a runtime retries that too, and so does the
//!   soak, counting both;
//! - at each checkpoint (workers parked between cycles, no fault active)
//!   every live pod's daemon holds it (IPAM CHECK on its socket: a restarted
//!   daemon lost nothing) and etcd holds exactly the live pods' addresses,
//!   none twice;
//! - after every fault, every host's routes match the plan within a bound;
//! - at the end, after every pod's DEL and a CNI GC with an empty valid list
//!   on every host: each daemon holds nothing (a second GC on its socket
//!   releases nothing) and etcd holds no allocation record.
//!
//! The short run is in `make test` (`tests/tests/soak.rs`); the long one is
//! the benchmark in docs/benchmarks.md ("Soak").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use railyard_core::ipam::{AttachmentId, Request, Response};

use crate::cluster::cmd::{netns_add, netns_del};
use crate::cluster::pods::{self, exec_cni, pod_env, result_addresses, TRY_AGAIN_LATER};
use crate::cluster::{topology, Cluster, Family};
use crate::{ClusterSpec, Error, Result};

/// How long one ADD or DEL keeps retrying code 11 before it counts as failed:
/// longer than a daemon restart plus an etcd election plus a request timeout.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// The bound on each checkpoint's waits (etcd's mirror, the routes).
const SETTLE: Duration = Duration::from_secs(60);
/// railyard's "the NICs asked for cannot be given" (`codes::NO_NIC`).
const NO_NIC: u64 = 100;
/// How long after a flapped NIC got its address back its daemon may still
/// refuse with [`NO_NIC`]: it learns of the address from a netlink event,
/// which a loaded machine (the CI's) may deliver late.
const FLAP_TAIL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// ADD+DEL cycles in all, over every host.
    pub cycles: usize,
    /// Concurrent runtimes, each adding on the hosts in turn.
    pub workers: usize,
    /// Pods each worker keeps attached: a cycle adds one and deletes the
    /// oldest, so `workers * hold` pods are live at any time.
    pub hold: usize,
    /// How long a daemon stays dead, an etcd member down, a NIC without its
    /// address; and the quiet time between two faults.
    pub fault_for: Duration,
}

/// What one kind of fault did over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    DaemonKilled,
    EtcdMemberKilled,
    NicFlapped,
}

impl Fault {
    const ALL: [Fault; 3] = [
        Fault::DaemonKilled,
        Fault::EtcdMemberKilled,
        Fault::NicFlapped,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::DaemonKilled => "route-daemon SIGKILLed and restarted",
            Fault::EtcdMemberKilled => "etcd member SIGKILLed and restarted on its data",
            Fault::NicFlapped => "rail NIC address removed and re-added",
        }
    }
}

/// The run's figures and what broke.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub cycles: usize,
    pub wall: Duration,
    /// Each operation's time to success as the runtime sees it, retries included.
    pub add: Vec<Duration>,
    pub del: Vec<Duration>,
    pub faults: BTreeMap<Fault, usize>,
    /// etcd members killed while they led the raft group.
    pub leaders_killed: usize,
    /// Code-11 answers (retried), by operation.
    pub retried: BTreeMap<&'static str, usize>,
    /// ADDs refused with code 100 on the host whose NIC was flapping (retried).
    pub refused_nic_down: usize,
    /// Invariant checks made and passed (one per ADD's addresses, per
    /// checkpoint's etcd and routes, per host at the end).
    pub checks: usize,
    /// Per fault, by kind: how long every host's routes took to match the
    /// plan once the fault was undone (the NIC's address back, the daemon or
    /// the member restarted).
    pub converge: BTreeMap<Fault, Vec<Duration>>,
    /// The same for the last fault of the run.
    pub final_converge: Duration,
    /// etcd records left once every pod's DEL succeeded, before the GC.
    pub held_before_gc: usize,
    /// Every invariant that did not hold; the run failed if any.
    pub violations: Vec<String>,
}

/// What the workers share: the live pods, the counters, the pause.
struct Shared {
    spec: ClusterSpec,
    config: SoakConfig,
    next: AtomicUsize,
    /// Address to the live pod holding it (ADD answered, DEL not yet sent).
    live: Mutex<BTreeMap<IpAddr, String>>,
    /// Live pod to its host and addresses.
    pods: Mutex<BTreeMap<String, (usize, BTreeSet<IpAddr>)>>,
    pause: AtomicBool,
    parked: AtomicUsize,
    /// The host whose NIC is flapping, and when its refusals stop being
    /// excused (`None` while the address is still gone).
    flap: Mutex<Option<(usize, Option<Instant>)>>,
    report: Mutex<SoakReport>,
}

impl Shared {
    fn record(&self, f: impl FnOnce(&mut SoakReport)) {
        if let Ok(mut r) = self.report.lock() {
            f(&mut r);
        }
    }

    /// Whether a code-100 refusal on `host` is the flapping NIC's.
    fn flapping(&self, host: usize) -> bool {
        self.flap.lock().is_ok_and(|f| {
            matches!(*f, Some((h, until)) if h == host && until.is_none_or(|t| Instant::now() < t))
        })
    }

    fn violation(&self, what: String) {
        eprintln!("[soak] VIOLATION: {what}");
        self.record(|r| r.violations.push(what));
    }
}

/// Runs the soak on `c` (up, with its hosts planned and no pods of its own).
pub fn run(c: &mut Cluster, config: &SoakConfig) -> Result<SoakReport> {
    remove_stale_pods(c.spec());
    let hosts: Vec<usize> = (0..c.spec().hosts).collect();
    c.wait_converged(&hosts, SETTLE)?;
    c.prepare_hosts(&hosts)?;
    let shared = Shared {
        spec: c.spec().clone(),
        config: config.clone(),
        next: AtomicUsize::new(0),
        live: Mutex::new(BTreeMap::new()),
        pods: Mutex::new(BTreeMap::new()),
        pause: AtomicBool::new(false),
        parked: AtomicUsize::new(0),
        flap: Mutex::new(None),
        report: Mutex::new(SoakReport::default()),
    };
    let start = Instant::now();
    let done = AtomicUsize::new(0);
    let chaos = std::thread::scope(|s| {
        for w in 0..config.workers {
            let (shared, done) = (&shared, &done);
            s.spawn(move || {
                worker(shared, w);
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        chaos(c, &shared, &done)
    });
    let mut report = shared.report.into_inner().unwrap_or_default();
    report.wall = start.elapsed();
    report.cycles = shared.next.load(Ordering::SeqCst).min(config.cycles);
    chaos?;
    // The routes once more, after the workers' last DELs.
    converge(c, &hosts, Instant::now(), &mut report)?;
    finish(c, &mut report)?;
    Ok(report)
}

/// Removes the pod namespaces a killed earlier run left (`<prefix>s<w>-<n>`):
/// they are too many and too short-lived to go through the cluster's state
/// file, so its `down` does not know them.
fn remove_stale_pods(spec: &ClusterSpec) {
    let mine = format!("{}s", spec.prefix);
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let worker = name.strip_prefix(&mine).and_then(|r| r.chars().next());
        if worker.is_some_and(|ch| ch.is_ascii_digit()) {
            let _ = netns_del(&name);
        }
    }
}

/// One runtime: ADD a pod on the next host, DEL its oldest pod past `hold`;
/// at the end, DEL what it still holds.
fn worker(shared: &Shared, w: usize) {
    let spec = &shared.spec;
    let mut held: Vec<(usize, String)> = Vec::new();
    loop {
        if shared.pause.load(Ordering::SeqCst) {
            shared.parked.fetch_add(1, Ordering::SeqCst);
            while shared.pause.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            shared.parked.fetch_sub(1, Ordering::SeqCst);
        }
        let n = shared.next.fetch_add(1, Ordering::SeqCst);
        if n >= shared.config.cycles {
            break;
        }
        let host = (n + w) % spec.hosts;
        let pod = format!("{}s{w}-{n}", spec.prefix);
        if add(shared, host, &pod) {
            held.push((host, pod));
        }
        if held.len() > shared.config.hold {
            let (host, pod) = held.remove(0);
            del(shared, host, &pod);
        }
    }
    for (host, pod) in held {
        del(shared, host, &pod);
    }
}

/// Runs `command` for `pod` on `host` until it succeeds or fails with
/// anything but code 11 (or keeps failing with 11 past [`RETRY_FOR`]).
fn cni_retrying(
    shared: &Shared,
    host: usize,
    pod: &str,
    command: &'static str,
) -> std::result::Result<(String, Duration), String> {
    let spec = &shared.spec;
    let conf = pods::netconf(spec, host);
    let env = pod_env(pod, command);
    let start = Instant::now();
    loop {
        match exec_cni(spec, host, &env, &conf) {
            Ok(out) => return Ok((out, start.elapsed())),
            Err(f) if f.code == TRY_AGAIN_LATER && start.elapsed() < RETRY_FOR => {
                shared.record(|r| *r.retried.entry(command).or_default() += 1);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(f) if f.code == NO_NIC && command == "ADD" && shared.flapping(host) => {
                shared.record(|r| r.refused_nic_down += 1);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(f) => {
                return Err(format!(
                    "{command} {pod} on {}: code {} after {:.1} s: {}",
                    spec.host(host),
                    f.code,
                    start.elapsed().as_secs_f64(),
                    f.detail
                ))
            }
        }
    }
}

/// ADD of a new pod; checks its addresses against every live pod's.
fn add(shared: &Shared, host: usize, pod: &str) -> bool {
    let _ = netns_del(pod);
    if let Err(e) = netns_add(pod) {
        shared.violation(format!("cannot create {pod}'s namespace: {e}"));
        return false;
    }
    let (out, took) = match cni_retrying(shared, host, pod, "ADD") {
        Ok(ok) => ok,
        Err(e) => {
            shared.violation(e);
            // As a runtime does after a failed ADD.
            del(shared, host, pod);
            return false;
        }
    };
    let result: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let addresses: BTreeSet<IpAddr> = result_addresses(&result).into_iter().collect();
    let per_rail = if shared.spec.family == Family::Dual {
        2
    } else {
        1
    };
    let want = shared.spec.rails * per_rail;
    let mut ok = addresses.len() == want;
    if !ok {
        shared.violation(format!("{pod} got {addresses:?}, not {want} addresses"));
    }
    if let (Ok(mut live), Ok(mut pods)) = (shared.live.lock(), shared.pods.lock()) {
        for a in &addresses {
            if let Some(other) = live.insert(*a, pod.to_owned()) {
                ok = false;
                shared.violation(format!("{a} given to {pod} while {other} holds it"));
            }
        }
        pods.insert(pod.to_owned(), (host, addresses));
    }
    shared.record(|r| {
        r.add.push(took);
        r.checks += usize::from(ok);
    });
    true
}

/// DEL of a pod (its addresses leave the live set first: once the DEL is
/// sent the daemon may give them to the next ADD), then its namespace.
fn del(shared: &Shared, host: usize, pod: &str) {
    if let (Ok(mut live), Ok(mut pods)) = (shared.live.lock(), shared.pods.lock()) {
        for a in pods.remove(pod).unwrap_or_default().1 {
            live.remove(&a);
        }
    }
    match cni_retrying(shared, host, pod, "DEL") {
        Ok((_, took)) => shared.record(|r| r.del.push(took)),
        Err(e) => shared.violation(e),
    }
    let _ = netns_del(pod);
}

/// The chaos schedule: one fault at a time, each undone before the next, in
/// turn over the kinds, hosts, members and rails; a checkpoint after every
/// round of the three kinds. Runs until the workers are done.
fn chaos(c: &mut Cluster, shared: &Shared, done: &AtomicUsize) -> Result<()> {
    let spec = c.spec().clone();
    let hosts: Vec<usize> = (0..spec.hosts).collect();
    let pause = shared.config.fault_for;
    let finished = || done.load(Ordering::SeqCst) == shared.config.workers;
    let mut round = 0;
    while !finished() {
        for fault in Fault::ALL {
            if finished() {
                break;
            }
            match fault {
                Fault::DaemonKilled => {
                    let i = round % spec.hosts;
                    c.crash_daemon(i);
                    std::thread::sleep(pause);
                    c.start_daemon(i)?;
                }
                Fault::EtcdMemberKilled => {
                    // The leader every other round (its loss costs writes a
                    // request timeout), else the members in turn.
                    let leader = c.etcd_leader();
                    let m = match leader {
                        Some(l) if round % 2 == 0 => l,
                        _ => round % spec.etcd_members,
                    };
                    if leader == Some(m) {
                        shared.record(|r| r.leaders_killed += 1);
                    }
                    c.kill_etcd_member(m);
                    std::thread::sleep(pause);
                    c.start_etcd_member(m)?;
                }
                Fault::NicFlapped => {
                    let (i, j) = ((round + 1) % spec.hosts, round % spec.rails);
                    set_flap(shared, Some((i, None)));
                    topology::rail_addresses(&spec, "del", i, j)?;
                    std::thread::sleep(pause);
                    topology::rail_addresses(&spec, "add", i, j)?;
                    set_flap(shared, Some((i, Some(Instant::now() + FLAP_TAIL))));
                }
            }
            let mut took = SoakReport::default();
            let t = converge(c, &hosts, Instant::now(), &mut took)?;
            shared.record(|r| {
                *r.faults.entry(fault).or_default() += 1;
                r.converge.entry(fault).or_default().push(t);
                r.final_converge = t;
                r.checks += took.checks;
            });
            std::thread::sleep(pause);
        }
        round += 1;
        checkpoint(c, shared, done);
    }
    Ok(())
}

fn set_flap(shared: &Shared, to: Option<(usize, Option<Instant>)>) {
    if let Ok(mut f) = shared.flap.lock() {
        *f = to;
    }
}

/// Parks the workers between cycles and checks etcd against the live pods.
fn checkpoint(c: &mut Cluster, shared: &Shared, done: &AtomicUsize) {
    shared.pause.store(true, Ordering::SeqCst);
    let running = || shared.config.workers - done.load(Ordering::SeqCst);
    while shared.parked.load(Ordering::SeqCst) < running() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let live = shared.pods.lock().map(|p| p.clone()).unwrap_or_default();
    let mut report = SoakReport::default();
    for (pod, (host, _)) in &live {
        daemon_holds(&shared.spec, *host, pod, &mut report);
    }
    let want = live.into_iter().map(|(pod, (_, a))| (pod, a)).collect();
    let mirrored = wait_etcd(c, &want, &mut report);
    shared.pause.store(false, Ordering::SeqCst);
    eprintln!(
        "[soak] checkpoint: {} pods live, etcd {}, {} cycles started",
        want.len(),
        if mirrored { "agrees" } else { "DISAGREES" },
        shared.next.load(Ordering::SeqCst)
    );
    shared.record(|r| {
        r.checks += report.checks;
        r.violations.append(&mut report.violations);
    });
}

/// Asks host `host`'s daemon whether it holds `pod` (IPAM CHECK on its
/// socket), retrying while it is not serving yet (restarted by the last fault).
fn daemon_holds(spec: &ClusterSpec, host: usize, pod: &str, report: &mut SoakReport) {
    let check = Request::Check {
        attachment: AttachmentId {
            network: spec.network.clone(),
            container_id: pod.to_owned(),
            ifname: "net1".into(),
        },
    };
    let start = Instant::now();
    let answer = loop {
        let answer = daemon_request(spec, host, &check);
        let retry = match &answer {
            Err(_) => true,
            Ok(Response::Error(e)) => u64::from(e.code) == TRY_AGAIN_LATER,
            Ok(_) => false,
        };
        if !retry || start.elapsed() > SETTLE {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    match answer {
        Ok(Response::Done) => report.checks += 1,
        other => report.violations.push(format!(
            "{}'s daemon does not hold live pod {pod}: {other:?}",
            spec.host(host)
        )),
    }
}

/// Waits until every host's routes match the plan (the route convergence
/// invariant: a run fails if they do not within [`SETTLE`]); how long that
/// took from `since`.
fn converge(
    c: &mut Cluster,
    hosts: &[usize],
    since: Instant,
    report: &mut SoakReport,
) -> Result<Duration> {
    c.wait_converged(hosts, SETTLE)?;
    report.checks += 1;
    Ok(since.elapsed())
}

/// etcd's records of the network: container ID to addresses, noting any
/// address recorded twice.
fn etcd_records(
    c: &mut Cluster,
    twice: &mut Vec<String>,
) -> Result<BTreeMap<String, BTreeSet<IpAddr>>> {
    let network = c.spec().network.clone();
    let mut owner = BTreeMap::<IpAddr, String>::new();
    let mut held = BTreeMap::<String, BTreeSet<IpAddr>>::new();
    for r in c.observer()?.allocations(&network)? {
        for a in r.addresses() {
            if let Some(other) = owner.insert(a, r.id.container_id.clone()) {
                twice.push(format!(
                    "{a} recorded for {other} and {}",
                    r.id.container_id
                ));
            }
            held.entry(r.id.container_id.clone()).or_default().insert(a);
        }
    }
    Ok(held)
}

/// Waits until etcd records exactly `want`, none twice; a violation if it
/// never does within [`SETTLE`].
fn wait_etcd(
    c: &mut Cluster,
    want: &BTreeMap<String, BTreeSet<IpAddr>>,
    report: &mut SoakReport,
) -> bool {
    let start = Instant::now();
    loop {
        let mut twice = Vec::new();
        let have = etcd_records(c, &mut twice);
        if let Ok(have) = &have {
            if have == want && twice.is_empty() {
                report.checks += 1;
                return true;
            }
        }
        if start.elapsed() > SETTLE {
            let why =
                match have {
                    Err(e) => format!("cannot read it: {e}"),
                    Ok(have) => format!(
                    "{} records for {} live pods; missing {:?}; unexpected {:?}; twice {twice:?}",
                    have.len(),
                    want.len(),
                    want.iter()
                        .filter(|(k, v)| have.get(*k) != Some(v))
                        .take(5)
                        .collect::<Vec<_>>(),
                    have.keys().filter(|k| !want.contains_key(*k)).take(5).collect::<Vec<_>>(),
                ),
                };
            report.violations.push(format!(
                "etcd never matched the live pods within {SETTLE:?}: {why}"
            ));
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The end: every pod was deleted; a CNI GC with an empty valid list through
/// `railyard-cni` on every host, then each daemon must hold nothing (a GC
/// straight on its socket releases nothing) and etcd must hold no record.
fn finish(c: &mut Cluster, report: &mut SoakReport) -> Result<()> {
    let spec = c.spec().clone();
    // What the DELs left, as etcd's mirror shows it (not an invariant: GC
    // exists for what a runtime never deleted; the figure is reported).
    let start = Instant::now();
    loop {
        let left = etcd_records(c, &mut Vec::new())
            .map(|r| r.len())
            .unwrap_or(usize::MAX);
        report.held_before_gc = left;
        if left == 0 || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let env = [("CNI_COMMAND", "GC".to_owned())];
    for i in 0..spec.hosts {
        let mut conf = pods::netconf(&spec, i);
        conf["cniVersion"] = "1.1.0".into();
        conf["cni.dev/valid-attachments"] = serde_json::json!([]);
        exec_cni(&spec, i, &env, &conf).map_err(|f| Error::Cni {
            command: "GC",
            pod: String::new(),
            host: spec.host(i),
            detail: f.detail,
        })?;
        let gc = Request::Gc {
            network: spec.network.clone(),
            valid: Vec::new(),
        };
        match daemon_request(&spec, i, &gc)? {
            Response::Collected { released: 0 } => report.checks += 1,
            other => report.violations.push(format!(
                "{}'s daemon still held attachments after CNI GC: a GC on its socket answered {other:?}",
                spec.host(i)
            )),
        }
    }
    wait_etcd(c, &BTreeMap::new(), report);
    Ok(())
}

/// Sends `request` straight to host `i`'s daemon, as `railyard-ipam` does,
/// and returns its answer.
fn daemon_request(spec: &ClusterSpec, i: usize, request: &Request) -> Result<Response> {
    let socket = spec.socket(i);
    let failed = |e: String| Error::Refused(format!("GC on {}: {e}", socket.display()));
    let mut line = serde_json::to_vec(request).map_err(|e| failed(e.to_string()))?;
    line.push(b'\n');
    let mut conn = UnixStream::connect(&socket).map_err(|e| failed(e.to_string()))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| failed(e.to_string()))?;
    conn.write_all(&line).map_err(|e| failed(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(conn)
        .read_line(&mut answer)
        .map_err(|e| failed(e.to_string()))?;
    serde_json::from_str::<Response>(&answer).map_err(|e| failed(format!("{e}: {answer:?}")))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let k = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        let stats = |v: &[Duration]| {
            let mut v = v.to_vec();
            v.sort();
            format!(
                "{} ops, p50 {}, p99 {}, max {}",
                v.len(),
                ms(percentile(&v, 0.5)),
                ms(percentile(&v, 0.99)),
                ms(v.last().copied().unwrap_or_default())
            )
        };
        writeln!(f, "cycles:            {}", self.cycles)?;
        writeln!(f, "wall time:         {:.1} s", self.wall.as_secs_f64())?;
        writeln!(f, "ADD:               {}", stats(&self.add))?;
        writeln!(f, "DEL:               {}", stats(&self.del))?;
        for (fault, n) in &self.faults {
            writeln!(f, "fault:             {n} x {}", fault.name())?;
        }
        writeln!(f, "etcd leaders killed: {}", self.leaders_killed)?;
        writeln!(f, "retried (code 11): {:?}", self.retried)?;
        writeln!(
            f,
            "ADDs refused on a flapping NIC (code 100, retried): {}",
            self.refused_nic_down
        )?;
        for (fault, times) in &self.converge {
            let mut t = times.clone();
            t.sort();
            writeln!(
                f,
                "routes converged after {}: p50 {}, max {}",
                fault.name(),
                ms(percentile(&t, 0.5)),
                ms(t.last().copied().unwrap_or_default())
            )?;
        }
        writeln!(
            f,
            "routes converged after the last fault: {}",
            ms(self.final_converge)
        )?;
        writeln!(f, "records before GC: {}", self.held_before_gc)?;
        writeln!(f, "invariant checks passed: {}", self.checks)?;
        write!(f, "violations:        {}", self.violations.len())
    }
}
