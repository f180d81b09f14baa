//! The routes a host needs and the smallest change that gets the kernel there.
//!
//! Host X reaches host Y's block on rail j through X's rail-j NIC with Y's rail-j
//! NIC address as next hop. The diff never touches a route railyard does not own
//! (the kernel tags ours with railyard's protocol number), and it never flushes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::plan::Plan;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: IpAddr,
    /// Shared: every route through one NIC names the same device, and a host's
    /// route set is tens of thousands long.
    pub dev: Arc<str>,
    pub table: u32,
}

impl Route {
    fn key(&self) -> (u32, IpNet) {
        (self.table, self.dst)
    }
}

/// A route as read from the kernel: ours (railyard's protocol number) or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualRoute {
    pub route: Route,
    pub owned: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDiff {
    pub add: Vec<Route>,
    /// Our route exists with another next hop or device: replace it in place, so
    /// traffic never sees a moment without a route.
    pub replace: Vec<Route>,
    pub delete: Vec<Route>,
    /// A route we want whose destination is held by a route we do not own. We
    /// leave it alone and report it.
    pub conflicts: Vec<Route>,
}

impl RouteDiff {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.replace.is_empty() && self.delete.is_empty()
    }

    pub fn len(&self) -> usize {
        self.add.len() + self.replace.len() + self.delete.len()
    }
}

/// Every route host `me` needs for `plan`, sorted by (table, destination).
/// Departed hosts get no routes: their pods are gone even while their index waits
/// out the grace period.
pub fn desired_routes(plan: &Plan, me: &str, table: u32) -> Vec<Route> {
    let Some(mine) = plan.hosts.get(me) else {
        return Vec::new();
    };
    // (rail, is_v4) -> my device on that rail.
    let my_dev: HashMap<(u32, bool), Arc<str>> = mine
        .blocks
        .iter()
        .map(|b| {
            (
                (b.interface, b.cidr.addr().is_ipv4()),
                Arc::from(b.nic.as_str()),
            )
        })
        .collect();
    let mut routes = Vec::with_capacity(plan.hosts.len() * mine.blocks.len());
    for (name, other) in &plan.hosts {
        if name == me || other.departed_at.is_some() {
            continue;
        }
        for b in &other.blocks {
            if let Some(dev) = my_dev.get(&(b.interface, b.cidr.addr().is_ipv4())) {
                routes.push(Route {
                    dst: b.cidr,
                    gateway: b.nic_address,
                    dev: Arc::clone(dev),
                    table,
                });
            }
        }
    }
    routes.sort_unstable_by_key(Route::key);
    routes
}

/// The operations that turn `actual` into `desired` while leaving foreign routes
/// alone. `desired` may be in any order; duplicates of one destination keep the first.
pub fn diff(desired: &[Route], actual: &[ActualRoute]) -> RouteDiff {
    let mut want: Vec<&Route> = desired.iter().collect();
    want.sort_by_key(|r| r.key());
    want.dedup_by_key(|r| r.key());
    let mut have: Vec<&ActualRoute> = actual.iter().collect();
    have.sort_by_key(|a| a.route.key());

    let mut out = RouteDiff::default();
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < have.len() {
        let order = match (want.get(i), have.get(j)) {
            (Some(w), Some(h)) => w.key().cmp(&h.route.key()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                out.add.push(want[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                if have[j].owned {
                    out.delete.push(have[j].route.clone());
                }
                j += 1;
            }
            Ordering::Equal => {
                let key = want[i].key();
                let end = j + have[j..]
                    .iter()
                    .take_while(|h| h.route.key() == key)
                    .count();
                reconcile_one(want[i], &have[j..end], &mut out);
                i += 1;
                j = end;
            }
        }
    }
    out
}

/// One destination we want, and every kernel route for it.
fn reconcile_one(want: &Route, have: &[&ActualRoute], out: &mut RouteDiff) {
    let owned: Vec<&Route> = have.iter().filter(|h| h.owned).map(|h| &h.route).collect();
    if owned.is_empty() {
        out.conflicts.push(want.clone());
        return;
    }
    let keep = owned.iter().position(|r| *r == want);
    match keep {
        Some(_) => {}
        None => out.replace.push(want.clone()),
    }
    // Extra owned copies (say, a stale one at another metric) go; the kept or
    // replaced one stays.
    let survivor = keep.unwrap_or(0);
    for (k, r) in owned.iter().enumerate() {
        if k != survivor {
            out.delete.push((*r).clone());
        }
    }
}
