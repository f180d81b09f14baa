//! The routes a host needs and the smallest change that gets the kernel there.
//!
//! Host X reaches host Y's block on rail j through X's rail-j NIC with Y's rail-j
//! NIC address as next hop. The diff never touches a route railyard does not own
//! (the kernel tags ours with railyard's protocol number), and it never flushes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::plan::{Block, HostPlan, Plan};

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
///
/// Routes come out already sorted: family, then rail, then host index is exactly
/// the order of the destinations, because a block's address is
/// `subnet + rail << r + index << p`. That saves a sort of the whole set, which
/// dominated this function at 10,000 hosts.
pub fn desired_routes(plan: &Plan, me: &str, table: u32) -> Vec<Route> {
    let Some(mine) = plan.hosts.get(me) else {
        return Vec::new();
    };
    let mut peers: Vec<(u32, &HostPlan)> = plan
        .hosts
        .iter()
        .filter(|(name, h)| name.as_str() != me && h.departed_at.is_none())
        .map(|(_, h)| (h.index, h))
        .collect();
    // In a plan built from scratch, name order is index order: no sort needed.
    if !peers.is_sorted_by_key(|(i, _)| *i) {
        peers.sort_unstable_by_key(|(i, _)| *i);
    }
    let mut my_rails: Vec<(usize, &Block)> = mine.blocks.iter().enumerate().collect();
    my_rails.sort_by_key(|(_, b)| (!b.cidr.addr().is_ipv4(), b.interface));

    let mut routes = Vec::with_capacity(peers.len() * my_rails.len());
    for (position, mine) in my_rails {
        let dev: Arc<str> = Arc::from(mine.nic.as_str());
        let v4 = mine.cidr.addr().is_ipv4();
        let same_rail = |b: &&Block| b.interface == mine.interface && b.cidr.addr().is_ipv4() == v4;
        for (_, peer) in &peers {
            // Hosts on the same rails list their blocks in the same order, so the
            // block at my position is almost always the one; scan only if not.
            let found = peer
                .blocks
                .get(position)
                .filter(same_rail)
                .or_else(|| peer.blocks.iter().find(same_rail));
            if let Some(b) = found {
                routes.push(Route {
                    dst: b.cidr,
                    gateway: b.nic_address,
                    dev: Arc::clone(&dev),
                    table,
                });
            }
        }
    }
    if !routes.is_sorted_by_key(Route::key) {
        // Only a plan with mixed prefix lengths (mid spec change) gets here.
        routes.sort_unstable_by_key(Route::key);
    }
    routes
}

/// The operations that turn `actual` into `desired` while leaving foreign routes
/// alone. Either input may be in any order; duplicates of one destination in
/// `desired` keep the first. Sorted input (what `desired_routes` returns, and what a
/// kernel dump of one table nearly always is) is merged in place, with no copy.
pub fn diff(desired: &[Route], actual: &[ActualRoute]) -> RouteDiff {
    let want_sorted = desired.is_sorted_by_key(Route::key);
    let have_sorted = actual.is_sorted_by_key(|a| a.route.key());
    match (want_sorted, have_sorted) {
        (true, true) => merge(desired, actual),
        _ => {
            let mut want: Vec<&Route> = desired.iter().collect();
            want.sort_by_key(|r| r.key());
            let mut have: Vec<&ActualRoute> = actual.iter().collect();
            have.sort_by_key(|a| a.route.key());
            merge(&want, &have)
        }
    }
}

/// Merges two key-sorted sequences; generic so sorted input is used as is.
fn merge<W: Borrow<Route>, H: Borrow<ActualRoute>>(want: &[W], have: &[H]) -> RouteDiff {
    let mut out = RouteDiff::default();
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < have.len() {
        let w = want.get(i).map(Borrow::borrow);
        let h = have.get(j).map(Borrow::borrow);
        let order = match (w, h) {
            (Some(w), Some(h)) => w.key().cmp(&h.route.key()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match (order, w, h) {
            (Ordering::Less, Some(w), _) => {
                out.add.push(w.clone());
                i = past_key(want, i, |r| r.borrow().key());
            }
            (Ordering::Equal, Some(w), Some(_)) => {
                let end = past_key(have, j, |a| a.borrow().route.key());
                reconcile_one(w, &have[j..end], &mut out);
                i = past_key(want, i, |r| r.borrow().key());
                j = end;
            }
            (_, _, Some(h)) => {
                if h.owned {
                    out.delete.push(h.route.clone());
                }
                j += 1;
            }
            _ => break,
        }
    }
    out
}

/// The index after the run of items sharing `items[from]`'s key.
fn past_key<T, K: PartialEq>(items: &[T], from: usize, key: impl Fn(&T) -> K) -> usize {
    let k = key(&items[from]);
    from + 1 + items[from + 1..].iter().take_while(|t| key(t) == k).count()
}

/// One destination we want, and every kernel route for it.
fn reconcile_one<H: Borrow<ActualRoute>>(want: &Route, have: &[H], out: &mut RouteDiff) {
    // The converged case, taken for almost every route: one kernel route, ours, equal.
    if let [only] = have {
        let only = only.borrow();
        if only.owned && only.route == *want {
            return;
        }
    }
    let owned: Vec<&Route> = have
        .iter()
        .map(Borrow::borrow)
        .filter(|h| h.owned)
        .map(|h| &h.route)
        .collect();
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
