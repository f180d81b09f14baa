//! One reconcile step over the kernel port ([`crate::kernel`]): read what the
//! kernel has, diff it with what the plan wants (`railyard_core::diff`, which
//! never touches foreign routes and never flushes), apply the difference, and
//! say what happened. The daemon runs it on every plan change and every route
//! event; running it twice in a row is a no-op. Also the cheaper steps that
//! apply a diff against what the last step left ([`apply_from_belief`],
//! [`peer_diff`], [`patch_belief`]) without reading the kernel.
//!
//! What the port must do for this to be safe (exclusive adds, deletes of our
//! route only, refusals as failures) is checked against both implementations by
//! the kernel conformance suite.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use railyard_core::{diff, ActualRoute, Route, RouteDiff};

use crate::error::Result;
// The port's types, also at their old path (`crate::reconcile::...`).
use crate::kernel::{ApplyReport, RouteFailure, RouteOp, RouteTable};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub added: usize,
    pub replaced: usize,
    pub deleted: usize,
    /// Routes we want whose destination a foreign route holds.
    pub conflicts: Vec<Route>,
    pub failures: Vec<RouteFailure>,
    /// Routes of ours already right.
    pub unchanged: usize,
    /// Adds and replaces of routes the caller had applied before (see
    /// [`reconcile_tracking`]): someone removed or changed them behind our back.
    pub repaired: usize,
    pub elapsed: Duration,
}

impl ReconcileReport {
    pub fn changed(&self) -> usize {
        self.added + self.replaced + self.deleted
    }

    /// Whether the kernel now holds exactly the wanted routes that are ours to hold.
    pub fn converged(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Makes the railyard-owned routes of `tables` (plus every table `desired` names)
/// equal to `desired`.
///
/// `tables` matters when `desired` is empty or lost a table: our stale routes
/// there must still go. Ownership is by protocol number only, so when several
/// networks share one table (the main table), `desired` must hold all of their
/// routes, or each network's reconcile would delete the others'.
pub async fn reconcile(
    desired: Vec<Route>,
    tables: &[u32],
    kernel: &dyn RouteTable,
) -> Result<ReconcileReport> {
    reconcile_tracking(&desired, tables, kernel, &[]).await
}

/// [`reconcile`], also counting as `repaired` the adds and replaces of routes in
/// `applied` (what the previous reconcile left in place, sorted by table and
/// destination). A route the plan did not change but the kernel lost is drift:
/// the daemon reports it as a repair, not as plan churn.
pub async fn reconcile_tracking(
    desired: &[Route],
    tables: &[u32],
    kernel: &dyn RouteTable,
    applied: &[ActualRoute],
) -> Result<ReconcileReport> {
    let start = Instant::now();
    let scope: BTreeSet<u32> = tables
        .iter()
        .copied()
        .chain(desired.iter().map(|r| r.table))
        .collect();
    let scope: Vec<u32> = scope.into_iter().collect();
    let actual: Vec<ActualRoute> = kernel.routes(&scope).await?;
    let plan = diff(desired, &actual);
    let repaired = if plan.add.is_empty() && plan.replace.is_empty() {
        0
    } else {
        count_known(plan.add.iter().chain(&plan.replace), applied)
    };
    let applied = if plan.is_empty() {
        ApplyReport::default()
    } else {
        kernel.apply(&plan).await?
    };
    Ok(report(desired, plan, applied, repaired, start))
}

/// Applies the difference between `believed` (the table as the last reconcile
/// left it: our routes, sorted by table and destination) and `desired`, without
/// reading the kernel. `None` when that difference holds a replace: a replace
/// takes whatever route sits at its destination, and only a fresh read can tell
/// that it is still ours.
///
/// For plan changes: a join changes two routes out of thousands, and a dump of
/// the table to find them costs more than the change. Adds stay exclusive and
/// deletes name our protocol, next hop and device, so a wrong belief cannot touch
/// a foreign route; and the route events our own writes cause bring a full
/// [`reconcile`] right after, which corrects any belief gone stale.
pub async fn apply_from_belief(
    desired: &[Route],
    believed: &[ActualRoute],
    kernel: &dyn RouteTable,
) -> Result<Option<ReconcileReport>> {
    let start = Instant::now();
    let plan = diff(desired, believed);
    if !plan.replace.is_empty() {
        return Ok(None);
    }
    let applied = if plan.is_empty() {
        ApplyReport::default()
    } else {
        kernel.apply(&plan).await?
    };
    Ok(Some(report(desired, plan, applied, 0, start)))
}

/// The change to a table when only some peers' entries moved: `old` are the
/// routes to those peers as they were at the last reconcile, `new` as they are
/// now, `believed` the table as that reconcile left it (sorted). Costs a binary
/// search per changed route instead of a pass over the whole table, which is
/// what keeps a join cheap for every daemon of a large cluster. `None` when a
/// route must be replaced (see [`apply_from_belief`] for why that needs a read).
pub fn peer_diff(believed: &[ActualRoute], old: &[Route], new: &[Route]) -> Option<RouteDiff> {
    let held = |r: &Route| {
        believed
            .binary_search_by_key(&key(r), |a| key(&a.route))
            .ok()
            .map(|i| &believed[i].route)
    };
    let new_keys: HashSet<(u32, IpNet)> = new.iter().map(key).collect();
    let mut seen = HashSet::new();
    let mut diff = RouteDiff::default();
    for r in new {
        if !seen.insert(key(r)) {
            continue;
        }
        match held(r) {
            Some(h) if h == r => {}
            Some(_) => return None,
            None => diff.add.push(r.clone()),
        }
    }
    for r in old {
        if new_keys.contains(&key(r)) || !seen.insert(key(r)) {
            continue;
        }
        if let Some(h) = held(r) {
            diff.delete.push(h.clone());
        }
    }
    Some(diff)
}

/// What the table holds after `diff` was applied with result `applied`: deleted
/// routes gone, added ones the kernel took in place, still sorted.
pub fn patch_belief(believed: &mut Vec<ActualRoute>, diff: &RouteDiff, applied: &ApplyReport) {
    let refused: HashSet<(u32, IpNet)> = applied
        .conflicts
        .iter()
        .chain(applied.failures.iter().map(|f| &f.route))
        .map(key)
        .collect();
    for r in &diff.delete {
        let failed = applied
            .failures
            .iter()
            .any(|f| f.op == RouteOp::Delete && f.route == *r);
        if failed {
            continue;
        }
        if let Ok(i) = believed.binary_search_by_key(&key(r), |a| key(&a.route)) {
            believed.remove(i);
        }
    }
    for r in diff.add.iter().chain(&diff.replace) {
        if refused.contains(&key(r)) {
            continue;
        }
        let entry = ActualRoute {
            route: r.clone(),
            owned: true,
        };
        match believed.binary_search_by_key(&key(r), |a| key(&a.route)) {
            Ok(i) => believed[i] = entry,
            Err(i) => believed.insert(i, entry),
        }
    }
}

fn key(r: &Route) -> (u32, IpNet) {
    (r.table, r.dst)
}

fn report(
    desired: &[Route],
    plan: RouteDiff,
    applied: ApplyReport,
    repaired: usize,
    start: Instant,
) -> ReconcileReport {
    let wanted = if desired.is_sorted_by_key(key) {
        // Distinct keys of a sorted list: no copy, no sort.
        desired.len()
            - desired
                .windows(2)
                .filter(|w| key(&w[0]) == key(&w[1]))
                .count()
    } else {
        let mut keys: Vec<(u32, IpNet)> = desired.iter().map(key).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    };
    let unchanged =
        wanted.saturating_sub(plan.add.len() + plan.replace.len() + plan.conflicts.len());
    let mut conflicts = plan.conflicts;
    conflicts.extend(applied.conflicts);
    let report = ReconcileReport {
        added: applied.added,
        replaced: applied.replaced,
        deleted: applied.deleted,
        unchanged,
        repaired,
        conflicts,
        failures: applied.failures,
        elapsed: start.elapsed(),
    };
    for f in &report.failures {
        tracing::warn!(failure = %f, "kernel refused a route");
    }
    for c in &report.conflicts {
        tracing::warn!(dst = %c.dst, table = c.table, "destination held by a route railyard does not own; left alone");
    }
    report
}

/// How many of `routes` are in `known`. A join changes a route or two out of
/// thousands, so the usual case is a binary search each in the sorted `known`
/// (what `desired_routes` returns); unsorted input falls back to a set.
fn count_known<'a>(routes: impl Iterator<Item = &'a Route>, known: &[ActualRoute]) -> usize {
    if known.is_empty() {
        return 0;
    }
    let key = |a: &ActualRoute| (a.route.table, a.route.dst);
    if known.is_sorted_by_key(key) {
        routes
            .filter(|r| {
                known
                    .binary_search_by_key(&(r.table, r.dst), key)
                    .is_ok_and(|i| known[i].route == **r)
            })
            .count()
    } else {
        let set: HashSet<&Route> = known.iter().map(|a| &a.route).collect();
        routes.filter(|r| set.contains(r)).count()
    }
}

/// The loop's own logic: beliefs, peer diffs and what they apply. What the port
/// does with a diff (adds, replaces, deletes, foreign routes, conflicts,
/// refusals, repairs) is the kernel conformance suite's, run against both
/// implementations.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::memory::MemoryRoutes;

    fn route(dst: &str, gw: &str, dev: &str, table: u32) -> Route {
        Route {
            dst: dst.parse().expect("dst"),
            gateway: gw.parse().expect("gw"),
            dev: dev.parse().expect("valid name"),
            table,
        }
    }

    fn desired() -> Vec<Route> {
        vec![
            route("10.1.1.0/24", "10.0.0.11", "eth1", 100),
            route("10.1.2.0/24", "10.0.0.12", "eth1", 100),
            route("fd00:1:2::/64", "fd00::12", "eth1", 100),
        ]
    }

    fn owned(routes: Vec<Route>) -> Vec<ActualRoute> {
        routes
            .into_iter()
            .map(|route| ActualRoute { route, owned: true })
            .collect()
    }

    #[tokio::test]
    async fn a_peer_change_is_a_diff_of_its_routes_only() {
        let believed = owned(desired());
        let gone = vec![desired()[1].clone()];
        let moved_in = vec![route("10.1.9.0/24", "10.0.0.19", "eth1", 100)];
        let d = peer_diff(&believed, &gone, &moved_in).expect("no replace");
        assert_eq!(
            (d.add.clone(), d.delete.clone()),
            (moved_in.clone(), gone.clone())
        );
        // Unchanged routes are left out; a changed next hop needs a read.
        assert!(peer_diff(&believed, &gone, &gone).expect("same").is_empty());
        let mut rehomed = gone.clone();
        rehomed[0].gateway = "10.0.0.99".parse().expect("ip");
        assert!(peer_diff(&believed, &gone, &rehomed).is_none());

        let kernel = MemoryRoutes::default();
        reconcile(desired(), &[100], &kernel).await.expect("seed");
        let applied = kernel.apply(&d).await.expect("apply");
        let mut belief = believed;
        patch_belief(&mut belief, &d, &applied);
        let mut want = desired();
        want.remove(1);
        want.extend(moved_in);
        want.sort_by_key(|r| (r.table, r.dst));
        assert_eq!(belief, owned(want));
    }

    #[tokio::test]
    async fn belief_applies_adds_and_deletes_but_leaves_replaces_to_a_read() {
        let kernel = MemoryRoutes::default();
        reconcile(desired(), &[100], &kernel).await.expect("seed");
        let mut next = desired();
        next.remove(0);
        next.push(route("10.1.9.0/24", "10.0.0.19", "eth1", 100));
        next.sort_by_key(|r| r.dst);
        let r = apply_from_belief(&next, &owned(desired()), &kernel)
            .await
            .expect("apply")
            .expect("no replace needed");
        assert_eq!((r.added, r.deleted, r.unchanged), (1, 1, 2));
        assert_eq!(kernel.snapshot().len(), 3);

        let mut moved = next.clone();
        moved[0].gateway = "10.0.0.77".parse().expect("ip");
        let none = apply_from_belief(&moved, &owned(next), &kernel)
            .await
            .expect("apply");
        assert!(none.is_none(), "a replace needs a fresh read");
    }
}
