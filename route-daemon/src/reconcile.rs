//! One reconcile step: read what the kernel has, diff it with what the plan wants
//! (`railyard_core::diff`, which never touches foreign routes and never flushes),
//! apply the difference, and say what happened. The daemon runs it on every plan
//! change and every route event; running it twice in a row is a no-op.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use railyard_core::{diff, ActualRoute, Route, RouteDiff};

use crate::error::Result;

/// A set of kernel routing tables: the netlink backend or an in-memory fake.
#[async_trait]
pub trait RouteTable: Send + Sync {
    /// Every route, ours and foreign, of the given tables (both families).
    async fn routes(&self, tables: &[u32]) -> Result<Vec<ActualRoute>>;
    /// Applies `diff`. A route the kernel refuses is a [`RouteFailure`] in the
    /// report, not an error: one bad route must not stop the other ten thousand.
    async fn apply(&self, diff: &RouteDiff) -> Result<ApplyReport>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    Add,
    Replace,
    Delete,
}

impl fmt::Display for RouteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteOp::Add => "add",
            RouteOp::Replace => "replace",
            RouteOp::Delete => "delete",
        })
    }
}

/// A route the kernel would not take, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFailure {
    pub op: RouteOp,
    pub route: Route,
    pub error: String,
}

impl fmt::Display for RouteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.route;
        write!(
            f,
            "{} {} via {} dev {} table {}: {}",
            self.op, r.dst, r.gateway, r.dev, r.table, self.error
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub added: usize,
    pub replaced: usize,
    pub deleted: usize,
    /// Adds refused because a route appeared at that destination after the read;
    /// like the diff's conflicts, they are left alone.
    pub conflicts: Vec<Route>,
    pub failures: Vec<RouteFailure>,
}

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
    let start = Instant::now();
    let scope: BTreeSet<u32> = tables
        .iter()
        .copied()
        .chain(desired.iter().map(|r| r.table))
        .collect();
    let scope: Vec<u32> = scope.into_iter().collect();
    let actual: Vec<ActualRoute> = kernel.routes(&scope).await?;
    let plan = diff(&desired, &actual);
    let applied = if plan.is_empty() {
        ApplyReport::default()
    } else {
        kernel.apply(&plan).await?
    };
    let wanted = {
        let mut keys: Vec<(u32, ipnet::IpNet)> = desired.iter().map(|r| (r.table, r.dst)).collect();
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
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memory::MemoryRoutes;

    fn route(dst: &str, gw: &str, dev: &str, table: u32) -> Route {
        Route {
            dst: dst.parse().expect("dst"),
            gateway: gw.parse().expect("gw"),
            dev: Arc::from(dev),
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

    #[tokio::test]
    async fn converges_and_is_idempotent() {
        let kernel = MemoryRoutes::default();
        let first = reconcile(desired(), &[100], &kernel)
            .await
            .expect("reconcile");
        assert_eq!((first.added, first.replaced, first.deleted), (3, 0, 0));
        assert!(first.converged() && first.conflicts.is_empty());
        let second = reconcile(desired(), &[100], &kernel).await.expect("again");
        assert_eq!(second.changed(), 0);
        assert_eq!(second.unchanged, 3);
        let mut have: Vec<Route> = kernel.snapshot().into_iter().map(|a| a.route).collect();
        have.sort_by_key(|r| r.dst);
        let mut want = desired();
        want.sort_by_key(|r| r.dst);
        assert_eq!(have, want);
    }

    #[tokio::test]
    async fn replaces_moved_next_hop_and_deletes_departed() {
        let kernel = MemoryRoutes::default();
        reconcile(desired(), &[100], &kernel).await.expect("seed");
        let mut next = desired();
        next[0].gateway = "10.0.0.99".parse().expect("ip");
        next.pop();
        let r = reconcile(next.clone(), &[100], &kernel)
            .await
            .expect("reconcile");
        assert_eq!((r.added, r.replaced, r.deleted), (0, 1, 1));
        assert_eq!(kernel.snapshot().len(), 2);
        // Nothing desired at all still cleans the named table.
        let r = reconcile(Vec::new(), &[100], &kernel).await.expect("empty");
        assert_eq!(r.deleted, 2);
        assert!(kernel.snapshot().is_empty());
    }

    #[tokio::test]
    async fn foreign_routes_are_conflicts_and_never_touched() {
        let foreign = route("10.1.1.0/24", "10.0.0.254", "eth0", 100);
        let other = route("10.9.0.0/16", "10.0.0.254", "eth0", 100);
        let kernel = MemoryRoutes::with_foreign([foreign.clone(), other.clone()]);
        let r = reconcile(desired(), &[100], &kernel)
            .await
            .expect("reconcile");
        assert_eq!(r.added, 2);
        assert_eq!(r.conflicts, vec![desired()[0].clone()]);
        let snap = kernel.snapshot();
        assert!(snap.contains(&ActualRoute {
            route: foreign,
            owned: false
        }));
        assert!(snap.contains(&ActualRoute {
            route: other,
            owned: false
        }));
    }

    #[tokio::test]
    async fn refused_routes_are_reported_not_fatal() {
        let kernel = MemoryRoutes::default();
        kernel.refuse_dev("eth1", "Network is down");
        let mut want = desired();
        want.push(route("10.1.3.0/24", "10.0.1.13", "eth2", 100));
        let r = reconcile(want, &[100], &kernel).await.expect("reconcile");
        assert_eq!(r.added, 1);
        assert_eq!(r.failures.len(), 3);
        assert!(!r.converged());
        assert!(
            r.failures[0].to_string().contains("Network is down"),
            "{}",
            r.failures[0]
        );
    }

    #[tokio::test]
    async fn other_tables_are_left_alone() {
        let kernel = MemoryRoutes::default();
        reconcile(
            vec![route("10.2.0.0/24", "10.0.0.1", "eth1", 200)],
            &[],
            &kernel,
        )
        .await
        .expect("seed 200");
        let r = reconcile(desired(), &[100], &kernel)
            .await
            .expect("reconcile 100");
        assert_eq!(r.deleted, 0);
        assert_eq!(kernel.snapshot().len(), 4);
    }
}
