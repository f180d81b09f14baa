//! Workload pools (`spec.ipam.pools`): named sets of addresses in every host
//! block that only the pods selecting the pool get.
//!
//! A pool is either a range of offsets repeated in every host block
//! (`offsets: "10-19"`: the 11th to 20th address of each block, on every rail
//! and family), or an explicit list of addresses (`ips`, Kube-OVN's `ip_pool`
//! written on the network). Why both: offsets scale to any number of hosts
//! without naming them, while a list pins the very addresses a firewall rule
//! or a licence server already knows.
//!
//! Invariants (checked here, property-tested in `tests/pools.rs`):
//! - no address belongs to two pools;
//! - a pooled address is never handed to a pod without that pool (the block
//!   allocator keeps pooled addresses out of its dynamic scan);
//! - a pool never hands out a held address (pooled and dynamic share one
//!   `used` bitmap with the static reservations).

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::layout::to_u128;
use crate::spec::overlaps;

/// One `spec.ipam.pools` entry as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    #[serde(default)]
    pub name: String,
    /// `"first-last"`: offsets inside each host block (0 is its network
    /// address), inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<String>,
    /// Addresses, CIDRs or ranges (`a..b`), as `excludeIPs` takes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
}

/// A validated pool, as the daemons receive it in their network config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub name: String,
    #[serde(flatten)]
    pub members: PoolMembers,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PoolMembers {
    /// The same offsets in every host block.
    Offsets { first: u32, last: u32 },
    /// These addresses, in whichever host blocks hold them.
    Addresses(Vec<IpNet>),
}

impl Pool {
    /// The pool's offsets inside `block`, below `tracked` (the addresses the
    /// block's allocator tracks), in ascending order.
    pub fn offsets_in(&self, block: IpNet, tracked: u32) -> Vec<u32> {
        match &self.members {
            PoolMembers::Offsets { first, last } => {
                if *first >= tracked {
                    return Vec::new();
                }
                (*first..=(*last).min(tracked - 1)).collect()
            }
            PoolMembers::Addresses(nets) => {
                let base = to_u128(block.network());
                let end = base + u128::from(tracked);
                let mut out = BTreeSet::new();
                for n in nets.iter().filter(|n| overlaps(n, &block)) {
                    let lo = to_u128(n.network()).max(base);
                    let hi = to_u128(n.broadcast()).min(end.saturating_sub(1));
                    let mut a = lo;
                    while a <= hi {
                        out.insert((a - base) as u32);
                        a += 1;
                    }
                }
                out.into_iter().collect()
            }
        }
    }
}

/// Checks `spec.ipam.pools`. `families` are the network's subnets, each with
/// the number of addresses in one of its host blocks.
pub fn validate(specs: &[PoolSpec], families: &[(IpNet, u128)]) -> Result<Vec<Pool>> {
    let mut pools: Vec<Pool> = Vec::with_capacity(specs.len());
    for (i, p) in specs.iter().enumerate() {
        let field = |k: &str| format!("spec.ipam.pools[{i}].{k}");
        crate::validate_dns_label(&field("name"), &p.name)?;
        if let Some(other) = pools.iter().position(|q| q.name == p.name) {
            return Err(CoreError::invalid(
                field("name"),
                &p.name,
                format!("is also the name of spec.ipam.pools[{other}]"),
            ));
        }
        let members = match (&p.offsets, p.ips.is_empty()) {
            (Some(o), true) => offsets(&field("offsets"), o, families)?,
            (None, false) => addresses(&field("ips"), &p.ips, families)?,
            (Some(o), false) => {
                return Err(CoreError::invalid(
                    field("offsets"),
                    o,
                    "a pool is either offsets or ips, not both",
                ))
            }
            (None, true) => {
                return Err(CoreError::invalid(
                    field("ips"),
                    "",
                    "a pool needs offsets (\"10-19\" in every host block) or ips",
                ))
            }
        };
        let pool = Pool {
            name: p.name.clone(),
            members,
        };
        if let Some((other, addr)) = pools
            .iter()
            .find_map(|q| shared(&pool, q, families).map(|a| (q, a)))
        {
            return Err(CoreError::invalid(
                format!("spec.ipam.pools[{i}]"),
                &p.name,
                format!(
                    "shares {addr} with pool {:?}; a pooled address belongs to one pool",
                    other.name
                ),
            ));
        }
        pools.push(pool);
    }
    Ok(pools)
}

fn offsets(field: &str, raw: &str, families: &[(IpNet, u128)]) -> Result<PoolMembers> {
    let parse = |s: &str| s.trim().parse::<u32>().ok();
    let (first, last) = match raw.split_once('-') {
        Some((a, b)) => (parse(a), parse(b)),
        None => (parse(raw), parse(raw)),
    };
    let (Some(first), Some(last)) = (first, last) else {
        return Err(CoreError::invalid(
            field,
            raw,
            "is not an offset range like \"10-19\" (inclusive, inside each host block)",
        ));
    };
    let smallest = families.iter().map(|(_, n)| *n).min().unwrap_or(0);
    // Offset 0 is the block's network address; the last IPv4 one its broadcast.
    if first == 0 || first > last || u128::from(last) + 1 >= smallest {
        return Err(CoreError::invalid(
            field,
            raw,
            format!(
                "must be first-last with 1 <= first <= last < {} (a host block has {smallest} addresses)",
                smallest.saturating_sub(1)
            ),
        ));
    }
    Ok(PoolMembers::Offsets { first, last })
}

fn addresses(field: &str, raw: &[String], families: &[(IpNet, u128)]) -> Result<PoolMembers> {
    let mut nets = Vec::new();
    for (k, entry) in raw.iter().enumerate() {
        let f = format!("{field}[{k}]");
        let parsed = crate::ranges::parse_exclude(entry)
            .map_err(|why| CoreError::invalid(&f, entry, why))?;
        if let Some(n) = parsed.iter().find(|n| {
            !families
                .iter()
                .any(|(s, _)| s.contains(&n.network()) && s.contains(&n.broadcast()))
        }) {
            return Err(CoreError::invalid(
                &f,
                entry,
                format!("{n} lies outside the network's subnets"),
            ));
        }
        nets.extend(parsed);
    }
    Ok(PoolMembers::Addresses(nets))
}

/// An address (or offset) two pools would both hand out, if any.
fn shared(a: &Pool, b: &Pool, families: &[(IpNet, u128)]) -> Option<String> {
    use PoolMembers::*;
    match (&a.members, &b.members) {
        (Offsets { first, last }, Offsets { first: f, last: l }) => {
            (first <= l && f <= last).then(|| format!("offset {}", first.max(f)))
        }
        (Addresses(x), Addresses(y)) => x
            .iter()
            .find_map(|n| {
                y.iter()
                    .find(|m| overlaps(n, m))
                    .map(|m| n.network().max(m.network()))
            })
            .map(|a| a.to_string()),
        (Offsets { first, last }, Addresses(nets)) | (Addresses(nets), Offsets { first, last }) => {
            nets.iter().find_map(|n| {
                let size = families
                    .iter()
                    .find(|(s, _)| s.contains(&n.network()))
                    .map(|(_, size)| *size)
                    .filter(|size| *size > 0)?;
                let mut a = to_u128(n.network());
                let end = to_u128(n.broadcast());
                // An address list is short; a CIDR entry is walked at most
                // one block's worth (its offsets repeat after that).
                let stop = end.min(a + size);
                while a <= stop {
                    let off = (a % size) as u32;
                    if (*first..=*last).contains(&off) {
                        return Some(crate::layout::from_u128(a, n.addr().is_ipv4()).to_string());
                    }
                    a += 1;
                }
                None
            })
        }
    }
}
