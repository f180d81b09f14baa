//! The routes a host needs and the smallest change that gets the kernel there.
//!
//! Host X reaches host Y's block on rail j through X's rail-j NIC with Y's rail-j
//! NIC address as next hop. The diff never touches a route railyard does not own
//! (the kernel tags ours with railyard's protocol number), and it never flushes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ifname::IfName;
use crate::plan::{Block, Plan};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: IpAddr,
    pub dev: IfName,
    pub table: u32,
}

impl Route {
    /// The identity of a route in the kernel (one per table and destination), as
    /// plain integers: comparing it is the inner loop of `diff` and of the order
    /// checks, and `IpNet`'s own comparison goes through two enums per call. The
    /// order is `(table, dst)` with `IpNet`'s order: IPv4 first, then address, then
    /// prefix length.
    fn key(&self) -> RouteKey {
        let (v6, addr) = match self.dst.addr() {
            IpAddr::V4(a) => (false, u128::from(a.to_bits())),
            IpAddr::V6(a) => (true, a.to_bits()),
        };
        RouteKey {
            table: self.table,
            v6,
            addr,
            prefix: self.dst.prefix_len(),
        }
    }
}

/// Field order is comparison order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RouteKey {
    table: u32,
    v6: bool,
    addr: u128,
    prefix: u8,
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
///
/// The output is rail-major, but the walk is peer-major: each peer's blocks are
/// read once, in one go, and each route is written straight into its rail's lane
/// of the output. Walking rail by rail instead re-read every peer's block list
/// once per rail, and at 10,000 hosts those cache misses were most of the time.
pub fn desired_routes(plan: &Plan, me: &str, table: u32) -> Vec<Route> {
    let Some(mine) = plan.hosts.get(me) else {
        return Vec::new();
    };
    let mut peers: Vec<(u32, &[Block])> = plan
        .hosts
        .iter()
        .filter(|(name, h)| name.as_str() != me && h.departed_at.is_none())
        .map(|(_, h)| (h.index, h.blocks.as_slice()))
        .collect();
    // In a plan built from scratch, name order is index order: no sort needed.
    if !peers.is_sorted_by_key(|(i, _)| *i) {
        peers.sort_unstable_by_key(|(i, _)| *i);
    }
    let mut my_rails: Vec<(usize, &Block)> = mine.blocks.iter().enumerate().collect();
    my_rails.sort_by_key(|(_, b)| (!b.cidr.addr().is_ipv4(), b.interface));
    let Some(&(_, first)) = my_rails.first() else {
        return Vec::new();
    };

    // Every slot starts as a copy of a placeholder and is overwritten; a peer with
    // no block on some rail leaves a hole, removed at the end.
    let placeholder = Route {
        dst: first.cidr,
        gateway: first.nic_address,
        dev: first.nic,
        table,
    };
    let lane_len = peers.len();
    let mut routes = vec![placeholder; lane_len * my_rails.len()];
    let mut holes: Vec<usize> = Vec::new();
    for (k, (_, blocks)) in peers.iter().enumerate() {
        for (lane, &(position, mine)) in my_rails.iter().enumerate() {
            let v4 = mine.cidr.addr().is_ipv4();
            let same_rail =
                |b: &&Block| b.interface == mine.interface && b.cidr.addr().is_ipv4() == v4;
            // Hosts on the same rails list their blocks in the same order, so the
            // block at my position is almost always the one; scan only if not.
            let found = blocks
                .get(position)
                .filter(same_rail)
                .or_else(|| blocks.iter().find(same_rail));
            let slot = lane * lane_len + k;
            match found {
                Some(b) => {
                    routes[slot] = Route {
                        dst: b.cidr,
                        gateway: b.nic_address,
                        dev: mine.nic,
                        table,
                    }
                }
                None => holes.push(slot),
            }
        }
    }
    if !holes.is_empty() {
        holes.sort_unstable();
        let mut slot = 0;
        routes.retain(|_| {
            let keep = holes.binary_search(&slot).is_err();
            slot += 1;
            keep
        });
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
/// kernel dump of one table nearly always is) is merged in place in one pass that
/// also checks the order; only unsorted input pays for a sorted copy.
pub fn diff(desired: &[Route], actual: &[ActualRoute]) -> RouteDiff {
    if let Some(d) = merge(desired, actual) {
        return d;
    }
    let mut want: Vec<&Route> = desired.iter().collect();
    want.sort_by_key(|r| r.key());
    let mut have: Vec<&ActualRoute> = actual.iter().collect();
    have.sort_by_key(|a| a.route.key());
    // Sorted input always passes merge's order check.
    merge(&want, &have).unwrap_or_default()
}

/// Merges two key-sorted sequences, or `None` as soon as either turns out not to
/// be sorted. Generic so that sorted input is used as is.
fn merge<W: Borrow<Route>, H: Borrow<ActualRoute>>(want: &[W], have: &[H]) -> Option<RouteDiff> {
    let want_key = |r: &W| r.borrow().key();
    let have_key = |a: &H| a.borrow().route.key();
    let mut out = RouteDiff::default();
    let (mut i, mut j) = (0, 0);
    loop {
        let order = match (want.get(i), have.get(j)) {
            (Some(w), Some(h)) => want_key(w).cmp(&have_key(h)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return Some(out),
        };
        match order {
            Ordering::Less => {
                out.add.push(want[i].borrow().clone());
                i = run_end(want, i, want_key)?;
            }
            Ordering::Equal => {
                let end = run_end(have, j, have_key)?;
                reconcile_one(want[i].borrow(), &have[j..end], &mut out);
                i = run_end(want, i, want_key)?;
                j = end;
            }
            Ordering::Greater => {
                let end = run_end(have, j, have_key)?;
                let stale = have[j..end].iter().map(Borrow::borrow);
                out.delete
                    .extend(stale.filter(|a| a.owned).map(|a| a.route.clone()));
                j = end;
            }
        }
    }
}

/// The index after the run of items sharing `items[from]`'s key, or `None` if the
/// item after the run has a smaller key. Checking each run against the next is
/// what verifies the whole order, at no extra comparison.
fn run_end<T>(items: &[T], from: usize, key: impl Fn(&T) -> RouteKey) -> Option<usize> {
    let k = key(&items[from]);
    let mut end = from + 1;
    while let Some(next) = items.get(end) {
        match key(next).cmp(&k) {
            Ordering::Equal => end += 1,
            Ordering::Greater => break,
            Ordering::Less => return None,
        }
    }
    Some(end)
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
