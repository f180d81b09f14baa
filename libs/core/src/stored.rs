//! How a plan is laid out in the store: one `meta` key for the network-wide part and
//! one key per host (see `keys`). Splitting it this way makes a host join one
//! small write, and lets a daemon watch the plan and apply just the keys that moved.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The meta key's content; defined next to [`Plan`](crate::plan::Plan), which
/// splits into it and reassembles from it.
pub use crate::plan::PlanMeta;

/// A deleted network whose pods still held addresses (`keys::tombstone`). Its
/// subnets stay reserved: a network overlapping them is refused until the
/// allocations under `/railyard/v1/allocations/<network>/` are gone, so no
/// address is handed out twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub network: String,
    pub subnets: Vec<IpNet>,
    /// Unix seconds of the deletion.
    pub deleted_at: u64,
}

/// The kernel routing table a network's routes live in when it has its own table.
/// Derived from the name (FNV-1a) so every daemon, and a restarted one, finds its
/// routes without coordination; kept clear of the reserved tables 0 and 252 to 255.
pub fn route_table_for(network: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in network.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    10_000 + h % 1_000_000
}
