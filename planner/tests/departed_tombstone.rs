//! A host that leaves for good holding addresses in a network that was then
//! deleted: no plan entry is left to expire, so the tombstone's count is what
//! releases its records (`World::tombstone_holders`), after the same grace
//! period a planned host gets. Otherwise the deleted network's range would
//! stay reserved forever.

use std::collections::BTreeMap;

use railyard_core::keys;
use railyard_planner::world::{Listing, World};
use railyard_store::Op;

mod world_support;

use world_support::{flush, host, kv};

fn net_kv(name: &str) -> railyard_store::KeyValue {
    let v = serde_json::json!({
        "metadata": {"name": name},
        "spec": {"subnet": "192.168.0.0/16", "ipam": r#"{"hostBlock": 6, "interfaceBlock": 2}"#},
    });
    kv(keys::network(name), serde_json::to_vec(&v).unwrap(), 2, 2)
}

fn deletes_records(ops: &[Op], host: &str) -> bool {
    ops.iter().any(|op| {
        matches!(op, Op::DeletePrefix { prefix } if *prefix == keys::allocations_of_host("n", host))
    })
}

fn clears_tombstone(ops: &[Op]) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::Delete { key } if *key == keys::tombstone("n")))
}

fn held(counts: &[(&str, usize)]) -> BTreeMap<String, usize> {
    counts.iter().map(|(h, n)| (h.to_string(), *n)).collect()
}

#[test]
fn a_departed_holder_of_a_deleted_network_is_released_after_its_grace() {
    let mut w = World::new(10);
    w.put_host(host("gone", 0, &[0, 1]), 0);
    w.put_host(host("live", 1, &[0, 1]), 0);
    w.put_network(&net_kv("n"), 0);
    flush(&mut w);
    // Removed without a drain at 100; the network deleted at 105.
    w.delete_host("gone", 100);
    w.delete_network("n", 105);
    flush(&mut w);
    assert_eq!(w.tombstones(), ["n"]);

    // Within the grace (counted from its departedAt in the plan): kept.
    w.tombstone_holders("n", &held(&[("gone", 2), ("live", 1)]), 109);
    let ops = flush(&mut w);
    assert!(!deletes_records(&ops, "gone"), "{ops:?}");
    assert_eq!(w.tombstones(), ["n"]);

    // At the end of the grace its records go; the live host's stay counted.
    w.tombstone_holders("n", &held(&[("gone", 2), ("live", 1)]), 110);
    let ops = flush(&mut w);
    assert!(deletes_records(&ops, "gone"), "{ops:?}");
    assert!(!deletes_records(&ops, "live"));
    assert!(!clears_tombstone(&ops), "the live host still holds one");

    // Counted again before the delete reached the store: not released twice.
    w.tombstone_holders("n", &held(&[("gone", 2), ("live", 1)]), 111);
    assert!(!deletes_records(&flush(&mut w), "gone"));

    // The live host's pod is deleted (a CNI DEL): the range frees.
    w.tombstone_holders("n", &held(&[]), 112);
    let ops = flush(&mut w);
    assert!(clears_tombstone(&ops), "{ops:?}");
    assert!(w.tombstones().is_empty());
}

#[test]
fn a_registered_holder_is_never_released_and_a_restarted_leader_counts_the_grace_afresh() {
    // A leader that starts with only the tombstone (the plan is gone) does not
    // know when an unregistered holder left: it counts from when it first
    // finds it, which can only delay the release.
    let tomb = serde_json::json!({"network": "n", "subnets": ["192.168.0.0/16"], "deletedAt": 50});
    let listing = Listing {
        tombstones: vec![kv(
            keys::tombstone("n"),
            serde_json::to_vec(&tomb).unwrap(),
            3,
            3,
        )],
        ..Listing::default()
    };
    let mut w = World::new(10);
    w.load(&listing, 500);
    w.put_host(host("up", 0, &[0, 1]), 500);
    flush(&mut w);
    assert_eq!(w.tombstones(), ["n"]);
    w.tombstone_holders("n", &held(&[("away", 1), ("up", 3)]), 500);
    w.tombstone_holders("n", &held(&[("away", 1), ("up", 3)]), 509);
    assert!(!deletes_records(&flush(&mut w), "away"));
    w.tombstone_holders("n", &held(&[("away", 1), ("up", 3)]), 510);
    let ops = flush(&mut w);
    assert!(deletes_records(&ops, "away"), "{ops:?}");
    // A registered host keeps its records however long: its daemon releases
    // them with the pods' DELs.
    w.tombstone_holders("n", &held(&[("up", 3)]), 10_000);
    let ops = flush(&mut w);
    assert!(!deletes_records(&ops, "up") && !clears_tombstone(&ops));
    // A holder that registers again within its grace is counted again.
    w.tombstone_holders("n", &held(&[("back", 1), ("up", 3)]), 10_001);
    w.put_host(host("back", 1, &[0, 1]), 10_005);
    w.tombstone_holders("n", &held(&[("back", 1), ("up", 3)]), 10_020);
    assert!(!deletes_records(&flush(&mut w), "back"));
}
