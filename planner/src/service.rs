//! The planner service: win the election, load the world from etcd, then follow
//! network specs and host registrations and write the plan changes they cause.
//!
//! Events are coalesced: the first event of a burst opens a short window (`quiet`
//! after the last event, at most `max_delay` after the first), and everything that
//! arrived in it is planned and written together, in transactions of at most 128
//! operations, each guarded by the leader's election key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use railyard_core::{keys, HostInventory};
use railyard_store::{
    watch_or_relist, Change, Op, Store, StoreError, Txn, WatchUpdate, MAX_TXN_BYTES, MAX_TXN_OPS,
};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{info, warn};

use crate::election::{self, Leadership};
use crate::error::{PlannerError, Result};
use crate::metrics::{Metrics, NetworkLabel};
use crate::world::{Listing, PendingChange, SpecOutcome, World, ALLOW_RENUMBER};

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Shown as the leader's identity (`railyard get leader`); the host name by default.
    pub identity: String,
    /// Leadership lease TTL: a dead leader is replaced within about this long.
    pub lease_ttl_secs: i64,
    /// How long a departed host keeps its index.
    pub grace: Duration,
    /// How long a rail NIC missing from its host's registration keeps its block
    /// (and every peer's routes to it); zero withdraws it at once.
    pub nic_grace: Duration,
    pub quiet: Duration,
    pub max_delay: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            identity: "railyard-planner".into(),
            lease_ttl_secs: 10,
            grace: Duration::from_secs(600),
            nic_grace: Duration::from_secs(crate::world::DEFAULT_NIC_GRACE_SECS),
            quiet: Duration::from_millis(20),
            max_delay: Duration::from_millis(250),
        }
    }
}

/// Campaigns, leads until leadership is lost, and campaigns again; returns when
/// `shutdown` flips to true (resigning first, so a standby takes over at once).
pub async fn run(
    store: Arc<dyn Store>,
    cfg: ServiceConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        let campaign = election::campaign(Arc::clone(&store), &cfg.identity, cfg.lease_ttl_secs);
        let won = tokio::select! {
            r = campaign => r,
            _ = shutdown.changed() => return Ok(()),
        };
        let mut leadership = match won {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "campaign failed; retrying");
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        metrics.leader.set(1);
        let outcome = lead(&store, &cfg, &mut leadership, &metrics, &mut shutdown).await;
        metrics.leader.set(0);
        leadership.resign().await;
        match outcome {
            Ok(()) => return Ok(()),
            Err(e @ PlannerError::Store(StoreError::NewerFormat { .. })) => return Err(e),
            Err(e) => warn!(error = %e, "stepped down as planner leader"),
        }
        sleep(Duration::from_millis(500)).await;
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn lead(
    store: &Arc<dyn Store>,
    cfg: &ServiceConfig,
    leadership: &mut Leadership,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<()> {
    let nets = store.range(keys::NETWORKS).await?;
    let hosts = store.range(keys::HOSTS).await?;
    let listing = Listing {
        plans: store.range(keys::PLANS).await?.kvs,
        statuses: store.range(keys::STATUS).await?.kvs,
        tombstones: store.range(keys::TOMBSTONES).await?.kvs,
        networks: nets.kvs.clone(),
        hosts: hosts.kvs.clone(),
    };
    // A value of a newer format version was written by a newer railyard: this
    // build would plan over what it cannot read. It refuses to lead at all
    // (`run` stops the process) rather than rewrite it.
    if let Some(e) = listing.newer_format() {
        return Err(e.into());
    }
    let mut world = World::new(cfg.grace.as_secs()).with_nic_grace(cfg.nic_grace.as_secs());
    let outcomes = world.load(&listing, now());
    settle_all(store.as_ref(), &mut world, outcomes).await?;
    sweep_tombstones(store.as_ref(), &mut world).await?;
    let mut writer = Writer {
        store: store.as_ref(),
        leadership,
        metrics,
    };
    writer.flush(&mut world).await?;
    info!(
        networks = nets.kvs.len(),
        hosts = hosts.kvs.len(),
        "plan loaded and written"
    );

    let mut net_events = watch_or_relist(Arc::clone(store), keys::NETWORKS, Some(nets.revision));
    let mut host_events = watch_or_relist(Arc::clone(store), keys::HOSTS, Some(hosts.revision));
    // Grace periods run out on the tick: a quarter of the shorter one keeps a
    // withdrawal within 25% of its due time (a NIC grace of 0 needs no tick).
    let shortest = match cfg.nic_grace {
        Duration::ZERO => cfg.grace,
        nic => cfg.grace.min(nic),
    };
    let tick_every = (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(tick_every);
    let mut window: Option<(Instant, Instant)> = None; // (first event, deadline)
    loop {
        let deadline = window.map(|(_, d)| d);
        tokio::select! {
            u = net_events.next() => {
                apply_networks(store.as_ref(), &mut world, u).await?;
            }
            u = host_events.next() => apply_hosts(&mut world, u)?,
            _ = tick.tick() => {
                world.expire(now());
                sweep_tombstones(store.as_ref(), &mut world).await?;
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                window = None;
                writer.flush(&mut world).await?;
                continue;
            }
            status = writer.leadership_lost() => {
                return Err(PlannerError::LostLeadership(format!("lease is {status:?}")));
            }
            _ = shutdown.changed() => return Ok(()),
        }
        let t = Instant::now();
        let first = window.map_or(t, |(f, _)| f);
        window = Some((first, (t + cfg.quiet).min(first + cfg.max_delay)));
    }
}

fn apply_hosts(
    world: &mut World,
    update: Option<std::result::Result<WatchUpdate, StoreError>>,
) -> Result<()> {
    match update {
        None => Err(PlannerError::LostLeadership("host watch ended".into())),
        Some(Err(e)) if e.is_retryable() => {
            warn!(error = %e, "host watch interrupted; retrying");
            Ok(())
        }
        Some(Err(e)) => Err(e.into()),
        Some(Ok(update)) => {
            // A re-list replaces the registrations: hosts it lacks or holds
            // unreadable are deleted, after its puts. An unreadable put in an
            // event keeps the last readable registration.
            let snapshot = update.is_snapshot();
            // Only a snapshot reads the known hosts: building the set for every
            // event batch cost O(hosts) each, seconds for a 10,000-host burst.
            let known: BTreeSet<String> = if snapshot {
                world.host_names().into_iter().collect()
            } else {
                BTreeSet::new()
            };
            let mut gone = BTreeSet::new();
            for change in update.changes(known.iter().map(|n| keys::host(n))) {
                let name = keys::last_segment(change.key()).to_string();
                match change {
                    Change::Put(kv) => match decode_host(&kv.key, &kv.value) {
                        Some(h) => world.put_host(h, now()),
                        None if snapshot => {
                            gone.insert(name);
                        }
                        None => {}
                    },
                    Change::Delete(_) if snapshot => {
                        gone.insert(name);
                    }
                    Change::Delete(_) => world.delete_host(&name, now()),
                }
            }
            for name in gone.intersection(&known) {
                world.delete_host(name, now());
            }
            Ok(())
        }
    }
}

fn decode_host(key: &str, value: &[u8]) -> Option<HostInventory> {
    let name = keys::last_segment(key);
    match railyard_store::decode_value::<HostInventory>(key, value) {
        Ok(h) if h.name == name && h.validate("registration").is_ok() => Some(h),
        Ok(h) => {
            warn!(
                key,
                registered = h.name,
                "ignoring a registration whose name or NICs are invalid"
            );
            None
        }
        Err(e) => {
            warn!(key, error = %e, "ignoring an unreadable registration");
            None
        }
    }
}

async fn apply_networks(
    store: &dyn Store,
    world: &mut World,
    update: Option<std::result::Result<WatchUpdate, StoreError>>,
) -> Result<()> {
    let mut puts = Vec::new();
    match update {
        None => return Err(PlannerError::LostLeadership("network watch ended".into())),
        Some(Err(e)) if e.is_retryable() => {
            warn!(error = %e, "network watch interrupted; retrying");
            return Ok(());
        }
        Some(Err(e)) => return Err(e.into()),
        Some(Ok(update)) => {
            // A re-list deletes the networks it lacks (before any put, like
            // events: the puts are settled below).
            let known: Vec<String> = world.networks().map(keys::network).collect();
            for change in update.changes(&known) {
                match change {
                    Change::Put(kv) => puts.push(kv.clone()),
                    Change::Delete(key) => {
                        let name = keys::last_segment(&key);
                        if !update.is_snapshot() {
                            info!(network = name, "network deleted");
                        }
                        world.delete_network(name, now());
                    }
                }
            }
        }
    }
    // Deleted networks' ranges free at once when no pod holds an address there.
    sweep_tombstones(store, world).await?;
    let mut outcomes = Vec::new();
    for kv in puts {
        let name = keys::last_segment(&kv.key).to_string();
        outcomes.push((name, world.put_network(&kv, now())));
    }
    settle_all(store, world, outcomes).await
}

/// Settles `outcomes`, then judges again the networks a freed range may now let
/// in, until a round frees nothing more.
async fn settle_all(
    store: &dyn Store,
    world: &mut World,
    mut outcomes: Vec<(String, SpecOutcome)>,
) -> Result<()> {
    loop {
        for (network, outcome) in outcomes {
            settle(store, world, &network, outcome).await?;
        }
        outcomes = world.reevaluate(now());
        if outcomes.is_empty() {
            return Ok(());
        }
    }
}

/// Counts what each tombstoned network still holds; an empty one frees its range.
async fn sweep_tombstones(store: &dyn Store, world: &mut World) -> Result<()> {
    let names = world.tombstones();
    if names.is_empty() {
        return Ok(());
    }
    for name in names {
        let prefix = keys::allocations_of(&name);
        let mut held: BTreeMap<String, usize> = BTreeMap::new();
        for kv in store.range(&prefix).await?.kvs {
            let rest = kv.key.strip_prefix(prefix.as_str()).unwrap_or(&kv.key);
            let host = rest.split('/').next().unwrap_or_default();
            *held.entry(host.to_string()).or_default() += 1;
        }
        world.tombstone_holders(&name, &held, now());
    }
    settle_all(store, world, Vec::new()).await
}

/// Logs a spec outcome and decides spec changes that would renumber hosts.
async fn settle(
    store: &dyn Store,
    world: &mut World,
    network: &str,
    outcome: SpecOutcome,
) -> Result<()> {
    match outcome {
        SpecOutcome::Unchanged => {}
        SpecOutcome::Applied => info!(network, "network spec applied"),
        SpecOutcome::Invalid(e) => warn!(network, error = %e, "network spec refused"),
        SpecOutcome::NeedsApproval(change) => {
            let holders = allocation_holders(store, &change).await?;
            if holders.is_empty() {
                info!(
                    network = change.network,
                    "spec change renumbers only hosts without pods; applied"
                );
                world.approve(*change, now());
            } else {
                let reason = format!(
                    "spec change refused: it would renumber {} which hold pod addresses; set annotation {ALLOW_RENUMBER}: \"true\" (railyard apply --force) to apply it anyway",
                    holders.join("; ")
                );
                warn!(network = change.network, %reason);
                world.refuse(*change, reason);
            }
        }
    }
    Ok(())
}

async fn allocation_holders(store: &dyn Store, change: &PendingChange) -> Result<Vec<String>> {
    let mut holders = Vec::new();
    for r in &change.renumbered {
        let prefix = match r.subject.strip_prefix("host ") {
            Some(host) => keys::allocations_of_host(&change.network, host),
            // A rail that moves renumbers every host's block on it.
            None => keys::allocations_of(&change.network),
        };
        if !store.range(&prefix).await?.kvs.is_empty() {
            holders.push(format!("{} ({})", r.subject, r.reason));
        }
    }
    Ok(holders)
}

/// Writes batches of operations, each guarded by leadership.
struct Writer<'a> {
    store: &'a dyn Store,
    leadership: &'a mut Leadership,
    metrics: &'a Metrics,
}

impl Writer<'_> {
    async fn leadership_lost(&mut self) -> railyard_store::LeaseStatus {
        self.leadership.lost().await
    }

    async fn flush(&self, world: &mut World) -> Result<()> {
        let started = Instant::now();
        self.write(world.take_deletions()).await?;
        let plan_ops = world.take_plan_ops();
        let changed = !plan_ops.is_empty();
        let revision = self.write(plan_ops).await?;
        self.write(world.take_status_ops(revision)).await?;
        if changed {
            self.metrics.plan_computations.inc();
            self.metrics
                .plan_write_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        for net in world.networks().map(str::to_string).collect::<Vec<_>>() {
            if let Some(p) = world.planner(&net) {
                let label = NetworkLabel { network: net };
                let meta = p.meta();
                let planned = p.hosts().filter(|(_, h)| h.departed_at.is_none()).count();
                self.metrics
                    .hosts_planned
                    .get_or_create(&label)
                    .set(planned as i64);
                self.metrics
                    .hosts_unplanned
                    .get_or_create(&label)
                    .set(meta.unplanned.len() as i64);
            }
        }
        Ok(())
    }

    /// Writes `ops` in guarded transactions within etcd's limits; returns the last
    /// revision written (0 if nothing was).
    async fn write(&self, ops: Vec<Op>) -> Result<i64> {
        let mut revision = 0;
        let mut batch = Txn::new().when(self.leadership.guard());
        for op in ops {
            let full = batch.ops.len() == MAX_TXN_OPS
                || batch.encoded_size() + op.encoded_size() > MAX_TXN_BYTES * 9 / 10;
            if full {
                revision = self
                    .commit(std::mem::replace(
                        &mut batch,
                        Txn::new().when(self.leadership.guard()),
                    ))
                    .await?;
            }
            batch.ops.push(op);
        }
        if !batch.ops.is_empty() {
            revision = self.commit(batch).await?;
        }
        Ok(revision)
    }

    async fn commit(&self, txn: Txn) -> Result<i64> {
        let outcome = self.store.txn(txn).await?;
        self.metrics.plan_transactions.inc();
        if !outcome.succeeded {
            return Err(PlannerError::LostLeadership(
                "a guarded plan write failed: another planner leads".into(),
            ));
        }
        Ok(outcome.revision)
    }
}
