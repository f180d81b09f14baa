//! The daemon's main loop: follow the network specs and the plans, and keep the
//! kernel's railyard routes and rules equal to what they ask of this host.
//!
//! The same loop keeps the gateway shims macvlan networks need on this host's
//! rail NICs (`shims.rs`): they follow this host's blocks and the networks'
//! plugins, and link events (a shim deleted by hand) bring them back.
//!
//! And, first in every pass that needs it, the rail interfaces (VLANs, bonds)
//! networks ask for in `spec.ifacer` (`ifacer.rs`, `rail_links.rs`): on a
//! change of an accepted spec's ifacer and on link events (an address put
//! back on the old link moves again), before routes, which follow the rail
//! NICs once discovery has seen them move.
//!
//! Triggers are plan or spec changes (that network's table), route events of a
//! table we manage (drift), link events and event overruns (everything), and a
//! retry after a failure. They are coalesced: the first opens a short window
//! (`quiet` after the latest trigger, at most `max_delay` after the first), and
//! one reconcile per dirty table follows.
//!
//! Nothing happens before both watches delivered their first listing, and an
//! unreachable etcd only pauses the watches: the view keeps its last state, so
//! drift is still repaired to the last known plan and no route is deleted
//! because etcd went away.
//!
//! The plan watch here is the daemon's only one: with [`Reconciler::feeding_ipam`]
//! every update is also folded into this host's share of the plans
//! ([`HostShare`]) and the IPAM side gets the resulting `NetworkConfig`s. So IPAM
//! follows the plans exactly as long as routes do, through the same restarts
//! ([`Follow`]) after a watch ends or fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use railyard_allocdb::NetworkConfig;
use railyard_core::{keys, ActualRoute, HostPlan};
use railyard_store::{Store, StoreError, WatchUpdate};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

mod ifacer;
mod rail_links;
mod routed;
mod rules;
mod shims;
mod table;

pub use shims::{needs_shim, shim_mac, shim_name, wanted_shims};

use super::follow::Follow;
use crate::kernel::{Kernel, RoutingMode, MAIN_TABLE};
use crate::metrics::{Metrics, NetworkLabel};
use crate::view::{ClusterView, HostShare, PlanChange};
use crate::watch::KernelEvent;
use railyard_store::Backoff;

#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    pub node_name: String,
    pub routing: RoutingMode,
    pub rule_priority: u32,
    /// Quiet time that ends a burst of triggers.
    pub quiet: Duration,
    /// Longest wait after the first trigger of a burst.
    pub max_delay: Duration,
}

/// What the next reconcile must look at, and why: a table whose plan changed
/// can be brought up to date from what we believe it holds; a table the kernel
/// reports changed (or everything, after an overrun) must be read.
#[derive(Debug, Default)]
struct Dirty {
    all: bool,
    /// Tables whose routes must be recomputed in full.
    plans: BTreeSet<u32>,
    /// Tables where only some peers' entries changed: per (network, host), the
    /// entry as it was at the last reconcile.
    peers: BTreeMap<u32, BTreeMap<(String, String), Option<HostPlan>>>,
    kernel: BTreeSet<u32>,
    rules: bool,
    /// A network's delegate plugin changed: its shims may come or go.
    shims: bool,
    /// A network's `spec.ifacer` changed.
    ifacer: bool,
}

impl Dirty {
    fn any(&self) -> bool {
        self.all
            || self.rules
            || self.shims
            || self.ifacer
            || !self.plans.is_empty()
            || !self.peers.is_empty()
            || !self.kernel.is_empty()
    }
}

pub struct Reconciler<K> {
    cfg: ReconcilerConfig,
    store: Arc<dyn Store>,
    kernel: Arc<K>,
    metrics: Arc<Metrics>,
    view: ClusterView,
    /// Each network's delegate plugin, for the shims.
    delegates: shims::Delegates,
    /// Each network's `spec.ifacer`, for the rail interfaces.
    ifacers: ifacer::IfacerSpecs,
    /// Tables reconciled so far and the routes of ours they were left holding
    /// (sorted): the base for plan-driven updates without a read, for counting
    /// repairs, and the tables to empty once their networks are gone.
    applied: BTreeMap<u32, Vec<ActualRoute>>,
    /// Networks with metric series, to drop the series when a network goes.
    labelled: BTreeSet<String>,
    dirty: Dirty,
    backoff: Backoff,
    retry_at: Option<Instant>,
    /// This host's share of the plans and where it goes (the IPAM side).
    ipam: Option<(HostShare, mpsc::UnboundedSender<NetworkConfig>)>,
    /// The BIRD announcing routed networks' blocks (`routed.rs`), if any.
    bird: Option<Arc<dyn crate::bgp::BirdControl>>,
    /// The heartbeat the BIRD guard watches (`routed.rs`).
    beat: routed::BeatState,
}

impl<K> std::fmt::Debug for Reconciler<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("node", &self.cfg.node_name)
            .field("tables", &self.applied.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<K: Kernel + 'static> Reconciler<K> {
    pub fn new(
        cfg: ReconcilerConfig,
        store: Arc<dyn Store>,
        kernel: Arc<K>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reconciler {
            cfg,
            store,
            kernel,
            metrics,
            view: ClusterView::default(),
            delegates: shims::Delegates::default(),
            ifacers: ifacer::IfacerSpecs::default(),
            applied: BTreeMap::new(),
            labelled: BTreeSet::new(),
            dirty: Dirty::default(),
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            retry_at: None,
            ipam: None,
            bird: None,
            beat: routed::BeatState::default(),
        }
    }

    /// Also sends, for every plan update, the `NetworkConfig` of each network
    /// whose meta or whose entry for this host changed. Unbounded so a slow
    /// allocation log never holds the routes up; it carries one small value per
    /// changed network, and the receiver applies them in order.
    pub fn feeding_ipam(mut self, configs: mpsc::UnboundedSender<NetworkConfig>) -> Self {
        self.ipam = Some((HostShare::default(), configs));
        self
    }

    /// Runs until `shutdown` turns true. Routes stay as they are on the way out:
    /// pods keep their connectivity while the daemon restarts.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<KernelEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut specs = Follow::new(Arc::clone(&self.store), keys::NETWORKS);
        let mut plans = Follow::new(Arc::clone(&self.store), keys::PLANS);
        let mut events_open = true;
        let mut window: Option<(Instant, Instant)> = None;
        let mut beat = tokio::time::interval(routed::BEAT_EVERY);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = window.map(|(_, d)| d);
            let touched = tokio::select! {
                () = crate::shutdown::stopped(&mut shutdown) => return,
                u = specs.next() => self.on_update(u, true),
                u = plans.next() => self.on_update(u, false),
                ev = events.recv(), if events_open => match ev {
                    Some(ev) => self.on_kernel_event(ev),
                    None => {
                        warn!("kernel event subscription ended; drift is repaired only on plan changes now");
                        events_open = false;
                        false
                    }
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    window = None;
                    self.cycle().await;
                    continue;
                }
                () = sleep_until(self.retry_at.unwrap_or_else(Instant::now)), if self.retry_at.is_some() => {
                    self.retry_at = None;
                    self.dirty.all = true;
                    true
                }
                _ = beat.tick(), if self.bird.is_some() => {
                    self.beat().await;
                    false
                }
            };
            if touched && self.dirty.any() && self.view.synced() {
                let now = Instant::now();
                let first = window.map_or(now, |(f, _)| f);
                window = Some((
                    first,
                    (now + self.cfg.quiet).min(first + self.cfg.max_delay),
                ));
            }
        }
    }

    fn on_update(&mut self, update: Result<WatchUpdate, StoreError>, specs: bool) -> bool {
        let update = match update {
            Ok(u) => u,
            Err(e) => {
                // The follower retries by itself; routes stay as they are.
                self.metrics.store_errors.inc();
                debug!(error = %e, "store unavailable; keeping routes as they are");
                return false;
            }
        };
        let was_synced = self.view.synced();
        let touched = if specs {
            let changed = self.view.apply_networks(update);
            for network in &changed {
                self.dirty.plans.insert(self.cfg.routing.table(network));
            }
            self.dirty.rules |= !changed.is_empty();
            !changed.is_empty()
        } else {
            if let Some((share, configs)) = &mut self.ipam {
                for config in share.apply(&update, &self.cfg.node_name) {
                    // A closed receiver is an IPAM side that stopped (logged there).
                    let _ = configs.send(config);
                }
            }
            let plugins_changed = self.delegates.apply(&update);
            self.dirty.shims |= plugins_changed;
            let ifacer_changed = self.ifacers.apply(&update);
            self.dirty.ifacer |= ifacer_changed;
            let changes = self.view.apply_plans(update);
            let touched = !changes.is_empty() || plugins_changed || ifacer_changed;
            // Rules follow the accepted spec, which the plan meta publishes.
            self.dirty.rules |= changes.iter().any(|c| matches!(c, PlanChange::Network(_)));
            for change in changes {
                self.note_plan_change(change);
            }
            touched
        };
        if !was_synced && self.view.synced() {
            info!(
                host = %self.cfg.node_name,
                networks = self.view.networks().count(),
                "plans loaded; reconciling"
            );
            self.dirty.all = true;
            self.dirty.rules = true;
        }
        touched || self.dirty.all
    }

    /// A peer's entry changing touches only the routes to that peer; anything
    /// else (a re-list, this host's own entry) means recomputing the table.
    fn note_plan_change(&mut self, change: PlanChange) {
        let table = self.cfg.routing.table(change.network());
        match change {
            PlanChange::Host {
                network,
                host,
                before,
            } if host != self.cfg.node_name => {
                self.dirty
                    .peers
                    .entry(table)
                    .or_default()
                    .entry((network, host))
                    .or_insert(before);
            }
            _ => {
                self.dirty.plans.insert(table);
            }
        }
    }

    fn on_kernel_event(&mut self, event: KernelEvent) -> bool {
        match event {
            KernelEvent::LinksChanged | KernelEvent::Overrun => {
                self.dirty.all = true;
                self.dirty.rules = true;
                true
            }
            KernelEvent::RoutesChanged { table } => {
                let ours =
                    self.applied.contains_key(&table) || self.wanted_tables().contains_key(&table);
                if ours {
                    self.dirty.kernel.insert(table);
                }
                ours
            }
        }
    }

    /// Tables the current networks use, with those networks. The main table is
    /// always managed in main-table mode, so our routes there go with the last
    /// network, even across a restart.
    fn wanted_tables(&self) -> BTreeMap<u32, Vec<String>> {
        let mut tables: BTreeMap<u32, Vec<String>> = self
            .view
            .tables(self.cfg.routing)
            .into_iter()
            .map(|(t, nets)| (t, nets.into_iter().map(str::to_owned).collect()))
            .collect();
        if self.cfg.routing == RoutingMode::MainTable {
            tables.entry(MAIN_TABLE).or_default();
        }
        tables
    }

    async fn cycle(&mut self) {
        if !self.view.synced() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        let mut failed = false;
        // Rail interfaces first: the routes go through the links they make.
        if dirty.all || dirty.ifacer {
            failed |= !self.sync_ifacers().await;
        }
        // Routed networks: next hops follow the links; source tables and
        // rules join the rest (`routed.rs`).
        let (routed, recompute, routed_failed) = self.refresh_routed(dirty.all).await;
        failed |= routed_failed;
        dirty.plans.extend(recompute);
        dirty.plans.extend(&routed.tables);
        dirty.rules |= routed.rules;
        let wanted = self.wanted_tables();

        // Our rules name the tables we manage, also those of networks deleted while
        // the daemon was down.
        let owned_rules = if dirty.all || dirty.rules {
            match self.kernel.owned_rules().await {
                Ok(rules) => Some(rules),
                Err(e) => {
                    warn!(error = %e, "cannot list policy rules");
                    failed = true;
                    None
                }
            }
        } else {
            None
        };
        let mut stale: BTreeSet<u32> = self
            .applied
            .keys()
            .copied()
            .filter(|t| !wanted.contains_key(t))
            .collect();
        stale.extend(
            owned_rules
                .iter()
                .flatten()
                .map(|r| r.table)
                .filter(|t| !wanted.contains_key(t)),
        );
        let mut todo: BTreeSet<u32> = if dirty.all {
            wanted.keys().copied().collect()
        } else {
            dirty
                .plans
                .iter()
                .chain(dirty.peers.keys())
                .chain(&dirty.kernel)
                .copied()
                .filter(|t| wanted.contains_key(t))
                .collect()
        };
        todo.extend(&stale);

        let mut cleaned = BTreeSet::new();
        for table in todo {
            let networks = wanted.get(&table).map_or(&[][..], Vec::as_slice);
            // A table to empty is read: routes a previous run left there are
            // in no belief of ours.
            let how = if dirty.all || dirty.kernel.contains(&table) || !wanted.contains_key(&table)
            {
                table::How::Read
            } else if dirty.plans.contains(&table) {
                table::How::Recompute
            } else {
                match dirty.peers.get(&table) {
                    Some(peers) => table::How::Peers(peers),
                    None => table::How::Recompute,
                }
            };
            match self.reconcile_table(table, networks, how).await {
                Ok(report) => {
                    failed |= !report.failures.is_empty();
                    if !wanted.contains_key(&table) {
                        self.applied.remove(&table);
                        cleaned.insert(table);
                    }
                }
                Err(e) => {
                    warn!(table, error = %e, "reconcile failed; retrying");
                    self.metrics.reconcile_errors.inc();
                    self.dirty.kernel.insert(table);
                    failed = true;
                }
            }
        }

        if dirty.all || dirty.rules {
            let want = self.view.rules(self.cfg.routing, self.cfg.rule_priority);
            failed |= !self
                .sync_rules(&want, owned_rules.as_deref(), &cleaned)
                .await;
        }
        // This host's blocks (its own entry), the networks or their plugins
        // changed, or a link did: the shims follow.
        if dirty.all || dirty.rules || dirty.shims || !dirty.plans.is_empty() {
            failed |= !self.sync_shims().await;
        }
        failed |= !self.sync_bird().await;
        self.forget_gone_networks(&wanted);
        if failed {
            let wait = self.backoff.next_delay();
            self.retry_at = Some(Instant::now() + wait);
        } else {
            self.backoff.reset();
        }
    }

    fn forget_gone_networks(&mut self, wanted: &BTreeMap<u32, Vec<String>>) {
        let live: BTreeSet<String> = wanted.values().flatten().cloned().collect();
        for gone in self.labelled.difference(&live) {
            let label = NetworkLabel {
                network: gone.clone(),
            };
            let m = &self.metrics;
            m.routes_desired.remove(&label);
            m.routes_applied.remove(&label);
            m.route_conflicts.remove(&label);
            m.route_failures.remove(&label);
        }
        self.labelled = live;
    }
}
