//! Shared by the pure `World` tests (`world.rs`, `nic_grace.rs`): store records
//! as a listing holds them, host registrations, and a flush as the service does it.
#![allow(dead_code)]

use railyard_core::{HostInventory, Nic};
use railyard_planner::world::World;
use railyard_store::{KeyValue, Op};

/// A record created at revision `create` and last written at `rev`.
pub fn kv(key: String, value: Vec<u8>, create: i64, rev: i64) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: create,
        mod_revision: rev,
        version: 1,
        lease: None,
    }
}

/// Host `n` with NIC eth{k} at 10.{k}.0.{n+1}/16 for each rail k in `rails`.
pub fn host(name: &str, n: u32, rails: &[u32]) -> HostInventory {
    HostInventory {
        name: name.into(),
        nics: rails
            .iter()
            .map(|k| Nic {
                name: format!("eth{k}"),
                addresses: vec![format!("10.{k}.0.{}/16", n + 1).parse().unwrap()],
                up: true,
                ..Nic::default()
            })
            .collect(),
    }
}

/// Every operation the world wants written (a flush, as the service does it).
pub fn flush(w: &mut World) -> Vec<Op> {
    let mut ops = w.take_deletions();
    ops.extend(w.take_plan_ops());
    ops.extend(w.take_status_ops(100));
    ops
}
