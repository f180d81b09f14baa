//! One host joins a 1,000-host plan: how long from the plan write until every
//! other daemon has applied its route to the newcomer?
//!
//!     cargo run --release -p railyard-route-daemon --example join_bench [-- HOSTS ROUNDS CONNECTIONS]
//!
//! Set-up: a real etcd (the test harness's), a plan of HOSTS-1 hosts written the
//! way the planner writes it (meta + one key per host), and HOSTS-1 real
//! `Reconciler` loops, the daemon's own code, each with its own two watches
//! (specs, plans) on etcd, over CONNECTIONS shared client connections. Their
//! kernel is `MemoryRoutes` behind a probe that timestamps the add of the
//! newcomer's block.
//!
//! Why one watch per daemon rather than one shared watch fanned out in process:
//! it keeps etcd's side real (HOSTS-1 watchers to notify, as in a cluster) and
//! each daemon decodes its own events, as it would on its own host. What is not
//! real: all daemons share this machine's cores, so the last daemon's time is
//! an upper bound that includes every other daemon's work queued before it.
//! The per-daemon reconcile time is printed to separate the two.
//!
//! Each round the newcomer joins (one put of its plan key), then leaves again
//! (one delete), and both are timed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::{keys, ActualRoute, HostInventory, NetworkManifest, Nic, Planner, RouteDiff};
use railyard_route_daemon::daemon::{Reconciler, ReconcilerConfig, Timing};
use railyard_route_daemon::kernel::memory::MemoryRoutes;
use railyard_route_daemon::kernel::{
    ApplyReport, Ensured, GatewayShims, LinkStep, PolicyRule, PolicyRules, RailLink, RailLinks,
    RouteTable, RoutingMode, Shim, ShimState, StepOutcome,
};
use railyard_route_daemon::metrics::Metrics;
use railyard_store::testing::EtcdServer;
use railyard_store::{Op, Store, Txn};
use tokio::sync::{mpsc, watch};

const NET: &str = "bench";

/// What the probes report.
enum Seen {
    /// Daemon `id` holds its full initial route set.
    Ready,
    /// Daemon added (or removed) the newcomer's route at this instant.
    Changed(Instant),
}

/// `MemoryRoutes` that reports when the newcomer's block comes and goes.
struct Probe {
    inner: MemoryRoutes,
    watched: IpNet,
    ready_at: usize,
    ready: std::sync::atomic::AtomicBool,
    tx: mpsc::UnboundedSender<Seen>,
}

#[async_trait]
impl RouteTable for Probe {
    async fn routes(&self, tables: &[u32]) -> railyard_route_daemon::Result<Vec<ActualRoute>> {
        self.inner.routes(tables).await
    }

    async fn apply(&self, diff: &RouteDiff) -> railyard_route_daemon::Result<ApplyReport> {
        let report = self.inner.apply(diff).await?;
        let now = Instant::now();
        let touched = diff
            .add
            .iter()
            .chain(&diff.delete)
            .any(|r| r.dst == self.watched);
        if touched {
            let _ = self.tx.send(Seen::Changed(now));
        }
        if self.inner.len() == self.ready_at
            && !self.ready.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let _ = self.tx.send(Seen::Ready);
        }
        Ok(report)
    }
}

#[async_trait]
impl PolicyRules for Probe {
    async fn owned_rules(&self) -> railyard_route_daemon::Result<Vec<PolicyRule>> {
        self.inner.owned_rules().await
    }
    async fn ensure_policy_rule(&self, rule: PolicyRule) -> railyard_route_daemon::Result<bool> {
        self.inner.ensure_policy_rule(rule).await
    }
    async fn remove_policy_rule(&self, rule: PolicyRule) -> railyard_route_daemon::Result<bool> {
        self.inner.remove_policy_rule(rule).await
    }
}

/// The bench's network is not macvlan: no shims are ever wanted.
#[async_trait]
impl GatewayShims for Probe {
    async fn owned_shims(&self) -> railyard_route_daemon::Result<Vec<ShimState>> {
        self.inner.owned_shims().await
    }
    async fn ensure_shim(&self, shim: &Shim) -> railyard_route_daemon::Result<Ensured> {
        self.inner.ensure_shim(shim).await
    }
    async fn remove_shim(
        &self,
        name: &railyard_core::IfName,
    ) -> railyard_route_daemon::Result<bool> {
        self.inner.remove_shim(name).await
    }
}

/// Nor an ifacer: no rail links are ever made.
#[async_trait]
impl RailLinks for Probe {
    async fn rail_links(&self) -> railyard_route_daemon::Result<Vec<RailLink>> {
        self.inner.rail_links().await
    }
    async fn apply_link_step(&self, step: &LinkStep) -> railyard_route_daemon::Result<StepOutcome> {
        self.inner.apply_link_step(step).await
    }
}

fn host(n: u32) -> HostInventory {
    HostInventory {
        name: format!("node-{n:04}"),
        nics: (1..=2)
            .map(|k| Nic {
                name: format!("eth{k}"),
                addresses: vec![format!("10.{k}.{}.{}/16", n / 250, n % 250 + 1)
                    .parse()
                    .expect("valid by construction")],
                up: true,
                ..Nic::default()
            })
            .collect(),
    }
}

fn spec() -> Vec<u8> {
    br#"{"metadata":{"name":"bench"},"spec":{"subnet":"172.16.0.0/12","ipam":{"hostBlock":10,"interfaceBlock":2}}}"#
        .to_vec()
}

async fn write_batched(store: &dyn Store, ops: Vec<Op>) -> Result<()> {
    for chunk in ops.chunks(128) {
        store
            .txn(Txn {
                compares: Vec::new(),
                ops: chunk.to_vec(),
            })
            .await?;
    }
    Ok(())
}

fn stats(mut xs: Vec<Duration>) -> String {
    xs.sort();
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q) as usize];
    format!(
        "first {:>6.1} ms  p50 {:>6.1} ms  p99 {:>6.1} ms  last {:>6.1} ms",
        ms(xs[0]),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(xs[xs.len() - 1])
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Collects one report per daemon, failing after `timeout`.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
    ready: bool,
    timeout: Duration,
) -> Result<Vec<Instant>> {
    let mut out = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        let seen = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .with_context(|| format!("only {} of {n} daemons reported in time", out.len()))?
            .context("probes gone")?;
        match (seen, ready) {
            (Seen::Ready, true) => out.push(Instant::now()),
            (Seen::Changed(t), false) => out.push(t),
            _ => {}
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let hosts = args.first().copied().unwrap_or(1000) as u32;
    let rounds = args.get(1).copied().unwrap_or(5);
    let connections = args.get(2).copied().unwrap_or(8).max(1);
    let daemons = hosts as usize - 1;

    let etcd = EtcdServer::start()?;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..connections {
        stores.push(Arc::new(etcd.store().await?));
    }
    let admin = Arc::clone(&stores[0]);

    // The plan of the hosts already there, laid out as the planner writes it.
    let manifest: NetworkManifest = serde_json::from_slice(&spec())?;
    let mut planner = Planner::new(&manifest.validate()?, None);
    let invs: Vec<HostInventory> = (0..hosts).map(host).collect();
    planner.register_rails(&invs);
    for inv in &invs[..daemons] {
        planner.upsert_host(inv);
    }
    let mut ops = vec![
        Op::put(keys::network(NET), spec()),
        Op::put_json(keys::plan_meta(NET), &planner.meta(), None)?,
    ];
    for (name, plan) in planner.hosts() {
        ops.push(Op::put_json(keys::plan_host(NET, name), plan, None)?);
    }
    write_batched(admin.as_ref(), ops).await?;
    let newcomer = &invs[daemons];
    planner.upsert_host(newcomer);
    let joined = planner
        .host(&newcomer.name)
        .context("newcomer planned")?
        .clone();
    let watched = joined.blocks[0].cidr;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, shutdown) = watch::channel(false);
    let per_daemon = (daemons - 1) * 2;
    let metrics: Vec<Arc<Metrics>> = (0..daemons).map(|_| Arc::new(Metrics::default())).collect();
    let started = Instant::now();
    for (i, inv) in invs[..daemons].iter().enumerate() {
        let probe = Arc::new(Probe {
            inner: MemoryRoutes::default(),
            watched,
            ready_at: per_daemon,
            ready: Default::default(),
            tx: tx.clone(),
        });
        let timing = Timing::default();
        let cfg = ReconcilerConfig {
            node_name: inv.name.clone(),
            routing: RoutingMode::OwnTable,
            rule_priority: 3000,
            quiet: timing.quiet,
            max_delay: timing.max_delay,
        };
        let store = Arc::clone(&stores[i % connections]);
        let (_events, events_rx) = mpsc::channel(1);
        // The kernel event sender is dropped: the bench has no kernel.
        let r = Reconciler::new(cfg, store, probe, Arc::clone(&metrics[i]));
        tokio::spawn(r.run(events_rx, shutdown.clone()));
    }
    collect(&mut rx, daemons, true, Duration::from_secs(300)).await?;
    println!(
        "{daemons} daemons following a {daemons}-host plan ({per_daemon} routes each), \
         {connections} etcd connections; initial sync {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let key = keys::plan_host(NET, &newcomer.name);
    let value = serde_json::to_vec(&joined)?;
    for round in 1..=rounds {
        let t0 = Instant::now();
        admin.put(&key, value.clone(), None).await?;
        let written = t0.elapsed();
        let seen = collect(&mut rx, daemons, false, Duration::from_secs(30)).await?;
        let lat: Vec<Duration> = seen.iter().map(|t| t.duration_since(t0)).collect();
        println!(
            "round {round} join : put {:>5.1} ms, applied  {}",
            ms(written),
            stats(lat)
        );

        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        ensure!(admin.delete(&key).await?, "newcomer key was there");
        let seen = collect(&mut rx, daemons, false, Duration::from_secs(30)).await?;
        let lat: Vec<Duration> = seen.iter().map(|t| t.duration_since(t0)).collect();
        println!(
            "round {round} leave:                removed  {}",
            stats(lat)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Mean reconcile of one table by one daemon (read, diff, apply), all rounds.
    let (sum, count) = metrics.iter().fold((0.0, 0u64), |(s, c), m| {
        let text = m.render();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            s + field("railyard_route_daemon_reconcile_seconds_sum"),
            c + field("railyard_route_daemon_reconcile_seconds_count") as u64,
        )
    });
    println!(
        "per-daemon reconcile (MemoryRoutes, {per_daemon} routes): mean {:.3} ms over {count} reconciles",
        sum / count.max(1) as f64 * 1e3
    );
    let _ = stop.send(true);
    Ok(())
}
