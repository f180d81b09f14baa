//! Per-NIC source routing on a routed host: a table per link NIC holding a
//! default route through that NIC's leaf, and a `from <link address>` rule
//! into it, so a reply from a rail address leaves by that rail (another
//! rail's leaf does not know the address and drops it).
//!
//! Table ids are **allocated, not hashed**. DRANET derives them from a hash
//! of the NIC name, and two names can hash alike (its issue #344). Here each
//! host hands out ids from a range of railyard's own, against the ids its
//! NICs already hold, and the kernel's rules are the record of who holds
//! what (as they are for the network tables): a NIC whose address already has
//! a rule keeps that rule's table; any other takes the lowest free id. Two
//! NICs of one host therefore never share a table, by construction, and a
//! restarted daemon reads the same ids back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::links::RoutedLink;
use crate::ifname::IfName;
use crate::routes::Route;

/// The first source table id: above every network table (`route_table_for`
/// gives 10,000 to 1,009,999) and far from the kernel's reserved 0 and 252
/// to 255.
pub const SOURCE_TABLE_FIRST: u32 = 1_100_000;
/// How many source tables a host can have: one per routed NIC.
pub const SOURCE_TABLES: u32 = 4_096;

/// Whether `table` is in railyard's source table range: a rule of ours into
/// it is a source rule, read back by [`source_tables`].
pub fn is_source_table(table: u32) -> bool {
    (SOURCE_TABLE_FIRST..SOURCE_TABLE_FIRST + SOURCE_TABLES).contains(&table)
}

/// `from <address> lookup <table>`, one per link address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRule {
    pub from: IpNet,
    pub table: u32,
}

/// The table of each NIC in `links`. `existing` are the host's source rules
/// already in the kernel (ours, table in range; others are ignored) as
/// (address, table). NICs are served in name order: a NIC keeps the lowest
/// existing table one of its addresses points at that no NIC before it kept;
/// then each NIC without one takes the lowest id in range that neither a kept
/// NIC nor any existing rule holds (a stale rule's table may still hold our
/// routes until it is emptied). A NIC is left out only if the range is full.
pub fn source_tables(existing: &[(IpAddr, u32)], links: &[RoutedLink]) -> BTreeMap<IfName, u32> {
    let mut addresses: BTreeMap<IfName, BTreeSet<IpAddr>> = BTreeMap::new();
    for l in links {
        addresses.entry(l.nic).or_default().insert(l.address.addr());
    }
    let mut held: BTreeMap<IfName, u32> = BTreeMap::new();
    let mut claimed: BTreeSet<u32> = BTreeSet::new();
    for (nic, addrs) in &addresses {
        let keep = existing
            .iter()
            .filter(|(a, t)| is_source_table(*t) && addrs.contains(a) && !claimed.contains(t))
            .map(|(_, t)| *t)
            .min();
        if let Some(t) = keep {
            held.insert(*nic, t);
            claimed.insert(t);
        }
    }
    let taken: BTreeSet<u32> = claimed
        .iter()
        .copied()
        .chain(existing.iter().map(|(_, t)| *t))
        .collect();
    let mut free =
        (SOURCE_TABLE_FIRST..SOURCE_TABLE_FIRST + SOURCE_TABLES).filter(|t| !taken.contains(t));
    for nic in addresses.keys() {
        if held.contains_key(nic) {
            continue;
        }
        match free.next() {
            Some(t) => {
                held.insert(*nic, t);
            }
            None => break,
        }
    }
    held
}

/// The source tables' routes (a default via the leaf, per link) and rules
/// (`from` each link address), for the NICs `tables` gives a table; sorted.
pub fn source_routes(
    links: &[RoutedLink],
    tables: &BTreeMap<IfName, u32>,
) -> (Vec<Route>, Vec<SourceRule>) {
    let mut routes = Vec::new();
    let mut rules = Vec::new();
    for l in links {
        let Some(&table) = tables.get(&l.nic) else {
            continue;
        };
        let (default, host) = match l.address.addr() {
            IpAddr::V4(a) => (
                IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                IpNet::new(IpAddr::V4(a), 32),
            ),
            IpAddr::V6(a) => (
                IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
                IpNet::new(IpAddr::V6(a), 128),
            ),
        };
        let (Ok(default), Ok(from)) = (default, host) else {
            continue;
        };
        routes.push(Route {
            dst: default,
            gateway: l.gateway,
            dev: l.nic,
            table,
        });
        rules.push(SourceRule { from, table });
    }
    // One default per table and family: a NIC with two links of one family
    // keeps its first (links come sorted).
    routes.sort_by_key(|r| (r.table, r.dst));
    routes.dedup_by(|a, b| (a.table, a.dst) == (b.table, b.dst));
    rules.sort();
    rules.dedup();
    (routes, rules)
}
