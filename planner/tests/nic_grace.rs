//! NIC flap grace through the planner's `World` (pure: explicit `now`, store
//! operations out): a rail NIC dropped from a registration keeps its block until
//! the `--nic-grace` period ends, also across a new leader's load.

use std::collections::BTreeMap;

use railyard_core::{keys, HostInventory, HostPlan};
use railyard_planner::world::{Listing, World, DEFAULT_NIC_GRACE_SECS};
use railyard_store::{KeyValue, Op};

mod world_support;

use world_support::{flush, host, kv};

fn network() -> KeyValue {
    let v = serde_json::json!({
        "metadata": {"name": "n"},
        "spec": {"subnet": "192.168.0.0/16", "ipam": r#"{"hostBlock": 6, "interfaceBlock": 2}"#},
    });
    kv(keys::network("n"), serde_json::to_vec(&v).unwrap(), 2, 2)
}

fn host_plan(ops: &[Op], host: &str) -> Option<HostPlan> {
    let key = keys::plan_host("n", host);
    ops.iter().find_map(|op| match op {
        Op::Put { key: k, value, .. } if *k == key => {
            Some(serde_json::from_slice(value).expect("host plan json"))
        }
        _ => None,
    })
}

/// A world at t=0 with hosts a and b on both rails; returns b's plan.
fn two_hosts(nic_grace: u64) -> (World, HostPlan) {
    let (w, b, _) = two_hosts_stored(nic_grace);
    (w, b)
}

/// `two_hosts`, and the plan keys it wrote.
fn two_hosts_stored(nic_grace: u64) -> (World, HostPlan, BTreeMap<String, Vec<u8>>) {
    let mut w = World::new(600).with_nic_grace(nic_grace);
    w.put_host(host("a", 0, &[0, 1]), 0);
    w.put_host(host("b", 1, &[0, 1]), 0);
    w.put_network(&network(), 0);
    let ops = flush(&mut w);
    let b = host_plan(&ops, "b").expect("b planned");
    assert_eq!(b.blocks.len(), 2);
    let mut store = BTreeMap::new();
    apply(&mut store, &ops);
    (w, b, store)
}

/// The plan puts of `ops` applied to `store`.
fn apply(store: &mut BTreeMap<String, Vec<u8>>, ops: &[Op]) {
    for op in ops {
        if let Op::Put { key, value, .. } = op {
            if key.starts_with(keys::PLANS) {
                store.insert(key.clone(), value.clone());
            }
        }
    }
}

#[test]
fn the_default_nic_grace_is_thirty_seconds() {
    assert_eq!(DEFAULT_NIC_GRACE_SECS, 30);
}

#[test]
fn a_flap_shorter_than_the_nic_grace_keeps_the_block_and_renumbers_nothing() {
    let (mut w, before) = two_hosts(30);
    w.put_host(host("b", 1, &[0]), 100);
    let during = host_plan(&flush(&mut w), "b").expect("the missing mark is written");
    assert_eq!(during.blocks, before.blocks, "peers keep their routes");
    assert_eq!(
        during.nic_missing_since.values().collect::<Vec<_>>(),
        [&100]
    );
    w.expire(129);
    assert!(host_plan(&flush(&mut w), "b").is_none(), "nothing due yet");
    w.put_host(host("b", 1, &[0, 1]), 103);
    let after = host_plan(&flush(&mut w), "b").expect("the mark is cleared");
    assert_eq!(after, before);
    w.expire(200);
    assert!(flush(&mut w)
        .iter()
        .all(|op| !matches!(op, Op::Put { key, .. } if key.contains("/hosts/"))));
}

#[test]
fn a_flap_longer_than_the_nic_grace_withdraws_the_block_on_the_tick() {
    let (mut w, before) = two_hosts(30);
    w.put_host(host("b", 1, &[0]), 100);
    flush(&mut w);
    w.expire(130);
    let after = host_plan(&flush(&mut w), "b").expect("withdrawn");
    assert_eq!(after.index, before.index);
    assert_eq!(after.blocks, before.blocks[..1].to_vec());
    assert!(after.nic_missing_since.is_empty());
}

#[test]
fn a_zero_nic_grace_withdraws_at_once() {
    let (mut w, before) = two_hosts(0);
    w.put_host(host("b", 1, &[0]), 100);
    let after = host_plan(&flush(&mut w), "b").expect("withdrawn");
    assert_eq!(after.blocks, before.blocks[..1].to_vec());
}

#[test]
fn a_new_leader_keeps_the_missing_clock_and_withdraws_when_due() {
    let (mut w, before, mut store) = two_hosts_stored(30);
    w.put_host(host("b", 1, &[0]), 100);
    apply(&mut store, &flush(&mut w));
    // What the store holds now: the plan with b's mark, b registered without eth1.
    let plans: Vec<KeyValue> = store.into_iter().map(|(k, v)| kv(k, v, 2, 2)).collect();
    let reg = |h: HostInventory| kv(keys::host(&h.name), serde_json::to_vec(&h).unwrap(), 2, 2);
    let listing = Listing {
        networks: vec![network()],
        hosts: vec![reg(host("a", 0, &[0, 1])), reg(host("b", 1, &[0]))],
        plans,
        ..Listing::default()
    };
    // Within the period at load: kept, from the same second.
    let mut next = World::new(600).with_nic_grace(30);
    next.load(&listing, 120);
    assert!(
        host_plan(&flush(&mut next), "b").is_none(),
        "the stored plan already says it"
    );
    let b = next
        .planner("n")
        .and_then(|p| p.host("b"))
        .expect("b planned");
    assert_eq!(b.blocks, before.blocks);
    assert_eq!(b.nic_missing_since.values().collect::<Vec<_>>(), [&100]);
    next.expire(130);
    let b = host_plan(&flush(&mut next), "b").expect("withdrawn at 130");
    assert_eq!(b.blocks, before.blocks[..1].to_vec());
    // A leader that starts after the period withdraws at load.
    let mut late = World::new(600).with_nic_grace(30);
    late.load(&listing, 131);
    let b = host_plan(&flush(&mut late), "b").expect("withdrawn at load");
    assert_eq!(b.blocks, before.blocks[..1].to_vec());
}
