//! The etcd fault tier: a local cluster (two planners, route-daemons in host
//! namespaces, pods through railyard-cni) on a three-member etcd whose members
//! run in namespaces of their own (`tests/src/cluster/etcd_members.rs`). Every
//! client is given all three endpoints. One member at a time:
//!
//! 1. a follower is killed (SIGKILL), then restarted on its data;
//! 2. the leader is killed, then restarted on its data;
//! 3. the leader is cut off from its peers (its peer link taken down) while
//!    clients still reach it, then the link comes back;
//! 4. a follower is cut off from everyone (both its links down): clients'
//!    connections to it go silent, then the links come back.
//!
//! Right after each fault, and while it lasts: a long-lived client writes, a
//! pod is attached on a planned host (its allocation must reach etcd), a new
//! host joins (the planner must plan it and every daemon route to it), and
//! every host's routes are sampled (none may go). Each of these is timed from
//! the fault and printed: that is the fault's cost. After the faults: every
//! pod's allocation is in etcd exactly once, no address is held twice, no host
//! was renumbered or marked departed, the members agree, and `railyard check`
//! passes.
//!
//! Needs root and etcd 3.6 (`make deps`); fails, never skips, without them.
//! The railyard binaries come from `cargo build --bins` (see `bins.rs`).

// The end-to-end tests' set-up (spec, teardown on failure), shared as source.
#[allow(dead_code)]
#[path = "e2e/common.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use railyard_core::route_table_for;
use railyard_e2e::cluster::etcd_members::{
    etcd_member_healthy, etcd_member_is_leader, etcd_member_revision,
};
use railyard_e2e::cluster::pods;
use railyard_e2e::cluster::topology::kernel_routes;
use railyard_e2e::cluster::{Observer, PodRecord};
use railyard_e2e::{Cluster, ClusterSpec};
use railyard_store::{EtcdConfig, EtcdStore, Op, Store, Txn};

use common::{spec, TestCluster, CONVERGE};

/// The most any one measurement may take before the tier fails.
const BOUND: Duration = Duration::from_secs(30);

/// What one fault cost, each from the moment it was injected.
#[derive(Debug)]
struct Cost {
    fault: &'static str,
    /// A new etcd leader is reported by a member (leader faults only).
    election: Option<Duration>,
    /// The long-lived client's first write that went through.
    write: Duration,
    /// A pod's CNI ADD returned its addresses (the daemon allocates locally).
    add: Duration,
    /// That pod's allocation record is in etcd (the daemon's mirror wrote it).
    mirrored: Duration,
    /// A host that joined after the fault is planned and every host routes to it.
    planned: Duration,
    /// After the fault was undone: the member is healthy and at the leader's
    /// revision (it caught up on what was written without it).
    rejoined: Duration,
    /// Planner campaigns won during the fault (a leader that stepped down on
    /// an etcd error and won again counts).
    campaigns: usize,
}

/// One etcd client that lives through every fault, as a service's would.
struct Probe {
    runtime: tokio::runtime::Runtime,
    store: EtcdStore,
}

impl Probe {
    fn connect(endpoints: &str) -> Probe {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut config = EtcdConfig::new(endpoints.split(',').map(str::to_owned));
        config.connect_timeout = Duration::from_secs(1);
        config.request_timeout = Duration::from_secs(1);
        let store = runtime
            .block_on(EtcdStore::connect(config))
            .expect("the probe connects to the three members");
        Probe { runtime, store }
    }

    /// Writes `key` until a write goes through; how long that took.
    fn write(&self, key: &str, since: Instant) -> Duration {
        let mut last = None;
        while since.elapsed() < BOUND {
            let put = Txn::new().then(Op::put(key, since.elapsed().as_millis().to_string()));
            match self.runtime.block_on(self.store.txn(put)) {
                Ok(_) => return since.elapsed(),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no write through any of the three members within {BOUND:?}: {last:?}");
    }
}

#[derive(Clone, Copy)]
enum Fault {
    KillFollower,
    KillLeader,
    PartitionLeader,
    IsolateFollower,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillFollower => "follower killed",
            Fault::KillLeader => "leader killed",
            Fault::PartitionLeader => "leader partitioned",
            Fault::IsolateFollower => "follower isolated",
        }
    }
}

#[test]
fn a_three_member_etcd_loses_members_and_a_partition_without_losing_service() {
    let mut s = spec("etcd-faults", 225);
    s.etcd_members = 3;
    s.planners = 2;
    s.hosts = 3;
    s.pods = 1;
    // Production-like leases and grace: a host whose daemon cannot renew for 5 s
    // would drop out of the plan, which none of these faults may cause.
    s.lease_ttl = 5;
    s.grace = "60s".into();
    let mut c = TestCluster::up(s);
    let original: Vec<usize> = (0..c.spec().hosts).collect();
    let start_plan = c.wait_converged(&original, CONVERGE).expect("plan");
    let probe = Probe::connect(&c.spec().local_endpoint());

    let mut costs = Vec::new();
    let faults = [
        Fault::KillFollower,
        Fault::KillLeader,
        Fault::PartitionLeader,
        Fault::IsolateFollower,
    ];
    for (n, fault) in faults.into_iter().enumerate() {
        costs.push(inject(&mut c, &probe, fault, n));
    }

    print_costs(&costs);
    check_afterwards(&mut c, &start_plan);
}

/// Injects `fault`, measures what it costs while it lasts, undoes it.
fn inject(c: &mut TestCluster, probe: &Probe, fault: Fault, n: usize) -> Cost {
    let members = c.spec().etcd_members;
    for m in 0..members {
        c.wait_etcd_member(m, BOUND)
            .expect("every member healthy before a fault");
    }
    let leader = wait_leader(c, Instant::now());
    let victim = match fault {
        Fault::KillFollower | Fault::IsolateFollower => (leader + 1) % members,
        Fault::KillLeader | Fault::PartitionLeader => leader,
    };
    let spec = c.spec().clone();
    let hosts: Vec<usize> = c.running_hosts();
    let table = route_table_for(&spec.network);
    let routes_before: BTreeMap<usize, _> = hosts
        .iter()
        .map(|&i| (i, kernel_routes(&spec, i, table)))
        .collect();
    // The pod goes to one of the hosts planned from the start.
    let pod_host = n % spec.hosts;
    let k = c
        .state
        .pods
        .iter()
        .filter(|p| p.host_index == pod_host)
        .count();
    let pod_name = spec.pod(pod_host, k);
    c.state.add_netns(&pod_name);
    c.state.save().expect("state");
    eprintln!(
        "[fault {n}] {}: member {victim} (leader {leader})",
        fault.name()
    );

    let campaigns_before = planner_campaigns(&spec);
    let t0 = Instant::now();
    match fault {
        Fault::KillFollower | Fault::KillLeader => c.kill_etcd_member(victim),
        Fault::PartitionLeader => c.partition_etcd_member(victim).expect("link down"),
        Fault::IsolateFollower => c.isolate_etcd_member(victim).expect("links down"),
    }
    let stop_guard = AtomicBool::new(false);
    let (planned, joined, write, (pod, add, mirrored), election, lost_routes) =
        std::thread::scope(|scope| {
            // Set on the way out, also when a wait below panics: the scope
            // joins its threads before the panic goes on.
            let _stop = StopOnDrop(&stop_guard);
            let guard = scope.spawn(|| route_guard(&spec, &routes_before, &stop_guard));
            let writer = scope.spawn(|| probe.write(&format!("/railyard-faults/{n}"), t0));
            let attach = scope.spawn(|| attach_and_mirror(&spec, pod_host, k, t0));
            let elect = scope.spawn(|| match fault {
                Fault::KillFollower | Fault::IsolateFollower => None,
                _ => Some(wait_new_leader(&spec, victim, t0)),
            });
            // A host joins: the planner must plan it through the fault.
            let joined = c.add_host().expect("a host joins");
            let mut all = hosts.clone();
            all.push(joined);
            c.wait_converged(&all, BOUND).unwrap_or_else(|e| {
                panic!("{}: the joining host is not planned: {e}", fault.name())
            });
            let planned = t0.elapsed();
            let write = writer.join().expect("writer");
            let attached = attach.join().expect("attach");
            let election = elect.join().expect("election");
            stop_guard.store(true, Ordering::Relaxed);
            let lost = guard.join().expect("route guard");
            (planned, joined, write, attached, election, lost)
        });
    c.state.pods.push(pod);
    c.state.save().expect("state");
    assert!(
        lost_routes.is_empty(),
        "{}: routes went missing during the fault: {lost_routes:?}",
        fault.name()
    );
    c.prepare_hosts(&[joined])
        .expect("the joined host is ready");
    // The data path holds while the fault lasts (no etcd involved).
    c.assert_mesh();

    let campaigns = planner_campaigns(&spec) - campaigns_before;
    let t1 = Instant::now();
    match fault {
        Fault::KillFollower | Fault::KillLeader => c
            .start_etcd_member(victim)
            .expect("the member restarts on its data"),
        Fault::PartitionLeader | Fault::IsolateFollower => {
            c.heal_etcd_member(victim).expect("links up")
        }
    }
    wait_caught_up(&spec, victim, t1);
    let rejoined = t1.elapsed();
    Cost {
        fault: fault.name(),
        election,
        write,
        add,
        mirrored,
        planned,
        rejoined,
        campaigns,
    }
}

/// Campaigns won so far by any planner, from their logs.
fn planner_campaigns(spec: &ClusterSpec) -> usize {
    (0..spec.planners)
        .map(|n| {
            let log = spec.log(&Cluster::planner_role(n));
            let text = std::fs::read_to_string(log).unwrap_or_default();
            text.matches("became planner leader").count()
        })
        .sum()
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Samples every host's railyard routes until `stop`; returns the routes that
/// went missing (a route added for a joining host is fine, a lost one is not).
fn route_guard(
    spec: &ClusterSpec,
    before: &BTreeMap<usize, BTreeSet<(String, String, String)>>,
    stop: &AtomicBool,
) -> Vec<(String, (String, String, String))> {
    let table = route_table_for(&spec.network);
    let mut lost = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for (&i, want) in before {
            let have = kernel_routes(spec, i, table);
            for r in want.difference(&have) {
                lost.push((spec.host(i), r.clone()));
            }
        }
        if !lost.is_empty() {
            return lost;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    lost
}

/// CNI ADD of pod `k` on host `i`, then the wait for its record in etcd.
fn attach_and_mirror(
    spec: &ClusterSpec,
    i: usize,
    k: usize,
    t0: Instant,
) -> (PodRecord, Duration, Duration) {
    let pod = pods::attach(spec, i, k)
        .unwrap_or_else(|e| panic!("a pod attaches on planned host {i} during the fault: {e}"));
    let add = t0.elapsed();
    let mut observer = Observer::new(spec.local_endpoint()).expect("observer");
    loop {
        let recorded = observer
            .allocations(&spec.network)
            .map(|all| all.iter().any(|r| r.id.container_id == pod.name))
            .unwrap_or(false);
        if recorded {
            return (pod, add, t0.elapsed());
        }
        assert!(
            t0.elapsed() < BOUND,
            "{}'s allocation not in etcd after {BOUND:?}",
            pod.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a member other than `old` reports itself leader.
fn wait_new_leader(spec: &ClusterSpec, old: usize, t0: Instant) -> Duration {
    loop {
        let other = (0..spec.etcd_members)
            .filter(|&m| m != old)
            .any(|m| etcd_member_is_leader(spec, m));
        if other {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < BOUND, "no new etcd leader within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_leader(c: &Cluster, t0: Instant) -> usize {
    loop {
        if let Some(l) = c.etcd_leader() {
            return l;
        }
        assert!(t0.elapsed() < BOUND, "no etcd leader within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until member `m` is healthy and at the highest revision any member
/// reports: it has what was written while it was gone.
fn wait_caught_up(spec: &ClusterSpec, m: usize, t0: Instant) {
    loop {
        let revisions: Vec<Option<i64>> = (0..spec.etcd_members)
            .map(|k| etcd_member_revision(spec, k))
            .collect();
        let top = revisions.iter().flatten().max().copied();
        if etcd_member_healthy(spec, m) && revisions[m].is_some() && revisions[m] == top {
            return;
        }
        assert!(
            t0.elapsed() < BOUND,
            "member {m} did not catch up: revisions {revisions:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn print_costs(costs: &[Cost]) {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64());
    println!(
        "\n{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "fault (s from it)",
        "election",
        "write",
        "pod ADD",
        "mirrored",
        "planned",
        "rejoined",
        "campaigns"
    );
    for c in costs {
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            c.fault,
            c.election.map_or("-".into(), ms),
            ms(c.write),
            ms(c.add),
            ms(c.mirrored),
            ms(c.planned),
            ms(c.rejoined),
            c.campaigns,
        );
    }
    println!();
}

/// No lost or duplicate allocation, no renumbered or departed host, the members
/// agree, and the data path works end to end.
fn check_afterwards(c: &mut TestCluster, start_plan: &railyard_core::Plan) {
    c.wait_mirrored(CONVERGE)
        .expect("etcd holds a record for exactly the attached pods");
    let held = c.distinct_addresses();
    let network = c.spec().network.clone();
    let records = c
        .observer()
        .unwrap()
        .allocations(&network)
        .expect("records");
    let mut in_etcd = BTreeSet::<IpAddr>::new();
    for r in &records {
        for a in r.addresses() {
            assert!(in_etcd.insert(a), "{a} is recorded twice in etcd");
        }
    }
    assert_eq!(in_etcd, held, "etcd's allocations are the pods' addresses");

    let plan = c
        .observer()
        .unwrap()
        .plan(&network)
        .expect("plan")
        .expect("a plan");
    let mut indexes = BTreeSet::new();
    for (name, host) in &plan.hosts {
        assert!(
            indexes.insert(host.index),
            "index {} given twice",
            host.index
        );
        assert!(host.departed_at.is_none(), "{name} was marked departed");
    }
    for (name, host) in &start_plan.hosts {
        assert_eq!(plan.hosts[name].index, host.index, "{name} renumbered");
        assert_eq!(
            plan.hosts[name].blocks, host.blocks,
            "{name}'s blocks moved"
        );
    }
    let leader = c
        .observer()
        .unwrap()
        .leader()
        .expect("leader")
        .expect("a planner leads");
    println!("planner leader at the end: {leader}");

    let spec = c.spec().clone();
    let revisions: Vec<Option<i64>> = (0..spec.etcd_members)
        .map(|m| etcd_member_revision(&spec, m))
        .collect();
    assert!(
        revisions.iter().all(|r| r.is_some()),
        "every member answers: {revisions:?}"
    );
    c.assert_connected(Some(2));
}
