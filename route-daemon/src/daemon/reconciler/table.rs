//! Reconciling one table, the cheapest way that is still right:
//!
//! - `Peers`: only some peers' entries changed (a join, a departure). The routes
//!   to those peers, before and after, are diffed against what we believe the
//!   table holds: a binary search per route, no read, no pass over the table.
//! - `Recompute`: the plan changed more broadly. The table's routes are computed
//!   in full and diffed against the belief, still without a read.
//! - `Read`: the kernel said the table changed (drift), or events were lost, or
//!   we have no belief yet. The table is read and diffed: the full reconcile.
//!
//! The first two never send anything that could touch a foreign route (adds are
//! exclusive, deletes name our protocol and next hop; a needed replace falls
//! back to a read), and the route events our own writes cause bring a `Read` of
//! the table right after, which corrects a belief that was wrong.

use std::collections::BTreeMap;

use railyard_core::{ActualRoute, HostPlan, Route};
use tokio::time::Instant;
use tracing::{debug, info};

use super::Reconciler;
use crate::kernel::{ApplyReport, Kernel};
use crate::metrics::{NetworkLabel, Op};
use crate::reconcile::{
    apply_from_belief, patch_belief, peer_diff, reconcile_tracking, ReconcileReport,
};
use crate::Result;

pub(super) enum How<'a> {
    Read,
    Recompute,
    Peers(&'a BTreeMap<(String, String), Option<HostPlan>>),
}

impl<K: Kernel + 'static> Reconciler<K> {
    /// Brings `table` (used by `networks`; none for a table to empty) to what the
    /// plan wants, and remembers what it left there.
    pub(super) async fn reconcile_table(
        &mut self,
        table: u32,
        networks: &[String],
        how: How<'_>,
    ) -> Result<ReconcileReport> {
        if let (How::Peers(peers), [network]) = (&how, networks) {
            if let Some(report) = self.reconcile_peers(table, network, peers).await? {
                return Ok(report);
            }
        }
        let desired = if networks.is_empty() {
            Vec::new()
        } else {
            self.view
                .desired(&self.cfg.node_name, table, self.cfg.routing)
        };
        let kernel = self.kernel.as_ref();
        let believed = self.applied.get(&table);
        let from_belief = match (&how, believed) {
            (How::Read, _) | (_, None) => None,
            (_, Some(b)) => apply_from_belief(&desired, b, kernel).await?,
        };
        let report = match from_belief {
            Some(report) => report,
            None => {
                let before = believed.map_or(&[][..], Vec::as_slice);
                reconcile_tracking(&desired, &[table], kernel, before).await?
            }
        };
        self.log(table, networks, &report);
        self.set_gauges(networks, &desired, &report);
        if !networks.is_empty() {
            self.applied.insert(table, applied_routes(desired, &report));
        }
        Ok(report)
    }

    /// The `Peers` way; `None` when it does not apply (no belief yet, a route
    /// to replace) and the table needs the full treatment.
    async fn reconcile_peers(
        &mut self,
        table: u32,
        network: &str,
        peers: &BTreeMap<(String, String), Option<HostPlan>>,
    ) -> Result<Option<ReconcileReport>> {
        let Some(believed) = self.applied.get(&table) else {
            return Ok(None);
        };
        let me = &self.cfg.node_name;
        let mut old = Vec::new();
        let mut new = Vec::new();
        for ((net, host), before) in peers {
            if net != network {
                return Ok(None);
            }
            let now = self.view.plan(net).and_then(|p| p.hosts.get(host));
            old.extend(self.view.routes_to(net, me, host, before.as_ref(), table));
            new.extend(self.view.routes_to(net, me, host, now, table));
        }
        let Some(diff) = peer_diff(believed, &old, &new) else {
            return Ok(None);
        };
        let start = Instant::now();
        let applied = if diff.is_empty() {
            ApplyReport::default()
        } else {
            self.kernel.apply(&diff).await?
        };
        let believed = self.applied.entry(table).or_default();
        patch_belief(believed, &diff, &applied);
        let held = believed.len();
        let report = ReconcileReport {
            added: applied.added,
            replaced: applied.replaced,
            deleted: applied.deleted,
            unchanged: held.saturating_sub(applied.added),
            repaired: 0,
            conflicts: applied.conflicts,
            failures: applied.failures,
            elapsed: start.elapsed(),
        };
        self.log(table, std::slice::from_ref(&network.to_owned()), &report);
        // Gauges move by the change; the next full reconcile sets them exactly.
        let label = NetworkLabel {
            network: network.to_owned(),
        };
        let m = &self.metrics;
        let attempted = i64::try_from(diff.add.len()).unwrap_or(i64::MAX);
        let dropped = i64::try_from(diff.delete.len()).unwrap_or(i64::MAX);
        m.routes_desired
            .get_or_create(&label)
            .inc_by(attempted - dropped);
        m.routes_applied
            .get_or_create(&label)
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        m.route_conflicts
            .get_or_create(&label)
            .inc_by(report.conflicts.len() as i64);
        m.route_failures
            .get_or_create(&label)
            .inc_by(report.failures.len() as i64);
        Ok(Some(report))
    }

    fn log(&self, table: u32, networks: &[String], r: &ReconcileReport) {
        let m = &self.metrics;
        m.reconcile_seconds.observe(r.elapsed.as_secs_f64());
        m.changes(Op::Add).inc_by(r.added as u64);
        m.changes(Op::Replace).inc_by(r.replaced as u64);
        m.changes(Op::Delete).inc_by(r.deleted as u64);
        m.routes_repaired.inc_by(r.repaired as u64);
        let nets = networks.join(",");
        if r.changed() > 0 || !r.failures.is_empty() {
            info!(
                host = %self.cfg.node_name,
                networks = %nets,
                table,
                added = r.added,
                replaced = r.replaced,
                deleted = r.deleted,
                repaired = r.repaired,
                conflicts = r.conflicts.len(),
                failures = r.failures.len(),
                elapsed_ms = r.elapsed.as_secs_f64() * 1e3,
                "routes reconciled"
            );
        } else {
            debug!(networks = %nets, table, unchanged = r.unchanged, "routes already right");
        }
    }

    /// Per-network route gauges after a full reconcile of a table.
    fn set_gauges(&self, networks: &[String], desired: &[Route], r: &ReconcileReport) {
        let per_network = |routes: &mut dyn ExactSizeIterator<Item = &Route>| {
            let mut counts: BTreeMap<&str, i64> =
                networks.iter().map(|n| (n.as_str(), 0)).collect();
            if let [only] = networks {
                // The usual case (own tables): no need to look at each route.
                counts.insert(only.as_str(), routes.len() as i64);
                return counts;
            }
            for route in routes {
                let net = self.view.network_of(&route.dst);
                if let Some(c) = net.and_then(|n| counts.get_mut(n)) {
                    *c += 1;
                }
            }
            counts
        };
        let desired_n = per_network(&mut desired.iter());
        let conflicts_n = per_network(&mut r.conflicts.iter());
        let failures_n = per_network(&mut r.failures.iter().map(|f| &f.route));
        let m = &self.metrics;
        for (net, want) in &desired_n {
            let label = NetworkLabel {
                network: (*net).to_owned(),
            };
            let conflicts = conflicts_n.get(net).copied().unwrap_or(0);
            let failures = failures_n.get(net).copied().unwrap_or(0);
            m.routes_desired.get_or_create(&label).set(*want);
            m.routes_applied
                .get_or_create(&label)
                .set(want - conflicts - failures);
            m.route_conflicts.get_or_create(&label).set(conflicts);
            m.route_failures.get_or_create(&label).set(failures);
        }
    }
}

/// The routes a reconcile left as ours and right: the desired ones less those a
/// foreign route holds or the kernel refused.
fn applied_routes(desired: Vec<Route>, r: &ReconcileReport) -> Vec<ActualRoute> {
    let missing: std::collections::BTreeSet<(u32, ipnet::IpNet)> = r
        .conflicts
        .iter()
        .chain(r.failures.iter().map(|f| &f.route))
        .map(|x| (x.table, x.dst))
        .collect();
    let mut held: Vec<ActualRoute> = desired
        .into_iter()
        .filter(|x| missing.is_empty() || !missing.contains(&(x.table, x.dst)))
        .map(|route| ActualRoute { route, owned: true })
        .collect();
    // Two networks claiming one destination in a shared table: the diff kept the
    // first, so does the belief (which must stay searchable by key).
    held.dedup_by(|b, a| (a.route.table, a.route.dst) == (b.route.table, b.route.dst));
    held
}
