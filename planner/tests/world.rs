//! The planner's decisions without etcd: `World` takes store listings and watch
//! events and answers with store operations. Overlapping networks, refused
//! changes that must change nothing, tombstones of deleted networks, and hosts
//! waiting for an index.

use railyard_core::status::{Condition, NetworkStatus};
use railyard_core::{keys, PlanMeta, Tombstone};
use railyard_planner::world::{Listing, SpecOutcome, World};
use railyard_store::{KeyValue, Op};

mod world_support;

use world_support::{flush, host, kv};

/// `/networks/<name>` with `subnet` and `ipam`, created at `create`, written at `rev`.
fn net(name: &str, subnet: &str, ipam: &str, create: i64, rev: i64) -> KeyValue {
    let v = serde_json::json!({
        "metadata": {"name": name},
        "spec": {"subnet": subnet, "ipam": ipam},
    });
    kv(
        keys::network(name),
        serde_json::to_vec(&v).unwrap(),
        create,
        rev,
    )
}

const IPAM: &str = r#"{"hostBlock": 6, "interfaceBlock": 2}"#;

fn put_of<'a>(ops: &'a [Op], key: &str) -> Option<&'a [u8]> {
    ops.iter().find_map(|op| match op {
        Op::Put { key: k, value, .. } if k == key => Some(value.as_slice()),
        _ => None,
    })
}

fn status(ops: &[Op], network: &str) -> NetworkStatus {
    serde_json::from_slice(put_of(ops, &keys::status(network)).expect("a status write"))
        .expect("status json")
}

fn meta(ops: &[Op], network: &str) -> PlanMeta {
    serde_json::from_slice(put_of(ops, &keys::plan_meta(network)).expect("a meta write"))
        .expect("meta json")
}

fn writes_plan(ops: &[Op], network: &str) -> bool {
    let prefix = keys::plan_prefix(network);
    ops.iter()
        .any(|op| matches!(op, Op::Put { key, .. } if key.starts_with(&prefix)))
}

fn is_applied(o: &SpecOutcome) -> bool {
    matches!(o, SpecOutcome::Applied)
}

#[test]
fn an_overlapping_network_is_refused_naming_both_and_gets_no_plan() {
    let mut w = World::new(600);
    w.put_host(host("h0", 0, &[0, 1]), 0);
    assert!(is_applied(
        &w.put_network(&net("a", "192.168.0.0/16", IPAM, 2, 2), 0)
    ));
    let b = w.put_network(&net("b", "192.168.128.0/17", IPAM, 3, 3), 0);
    let SpecOutcome::Invalid(msg) = b else {
        panic!("b must be refused: {b:?}")
    };
    for needle in ["network a", "network b", "192.168.128.0/17"] {
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    let ops = flush(&mut w);
    assert!(writes_plan(&ops, "a"));
    assert!(!writes_plan(&ops, "b"), "a refused network gets no plan");
    let s = status(&ops, "b");
    assert_eq!(s.condition, Condition::Invalid);
    assert_eq!(s.applied_revision, 0);
    assert_eq!(s.observed_revision, 3);
    assert!(s.last_error.unwrap().contains("network a"));
    // A disjoint network is fine.
    assert!(is_applied(
        &w.put_network(&net("c", "10.200.0.0/16", IPAM, 4, 4), 0)
    ));
}

#[test]
fn the_refused_network_is_accepted_once_the_live_one_and_its_tombstone_are_gone() {
    let mut w = World::new(600);
    w.put_host(host("h0", 0, &[0, 1]), 0);
    w.put_network(&net("a", "192.168.0.0/16", IPAM, 2, 2), 0);
    w.put_network(&net("b", "192.168.0.0/16", IPAM, 3, 3), 0);
    flush(&mut w);
    w.delete_network("a", 10);
    // a's pods still hold addresses: its range stays reserved.
    w.tombstone_allocations("a", 3);
    assert!(w.reevaluate(10).iter().all(|(_, o)| !is_applied(o)));
    let ops = flush(&mut w);
    let t: Tombstone =
        serde_json::from_slice(put_of(&ops, &keys::tombstone("a")).unwrap()).unwrap();
    assert_eq!(t.subnets[0].to_string(), "192.168.0.0/16");
    assert!(ops
        .iter()
        .any(|op| matches!(op, Op::DeletePrefix { prefix } if *prefix == keys::plan_prefix("a"))));
    assert!(!writes_plan(&ops, "b"));
    // The last allocation goes: the tombstone goes and b is judged again.
    w.tombstone_allocations("a", 0);
    let again = w.reevaluate(11);
    assert_eq!(again.len(), 1);
    assert!(is_applied(&again[0].1), "{again:?}");
    let ops = flush(&mut w);
    assert!(ops
        .iter()
        .any(|op| matches!(op, Op::Delete { key } if *key == keys::tombstone("a"))));
    assert!(writes_plan(&ops, "b"));
    assert_eq!(status(&ops, "b").condition, Condition::Ready);
}

#[test]
fn a_network_over_a_tombstone_is_refused_naming_the_allocations() {
    let mut w = World::new(600);
    w.put_network(&net("old", "192.168.0.0/16", IPAM, 2, 2), 0);
    w.delete_network("old", 5);
    w.tombstone_allocations("old", 4);
    let o = w.put_network(
        &net(
            "new",
            "192.168.7.0/24",
            r#"{"hostBlock": 2, "interfaceBlock": 1}"#,
            6,
            6,
        ),
        6,
    );
    let SpecOutcome::Invalid(msg) = o else {
        panic!("{o:?}")
    };
    assert!(
        msg.contains("deleted network old") && msg.contains("4 allocation"),
        "{msg}"
    );
}

#[test]
fn a_restarted_planner_keeps_the_first_network_whatever_the_names() {
    // No plan yet: the older /networks key wins, not the name that sorts first.
    let mut w = World::new(600);
    let listing = Listing {
        networks: vec![
            net("a-newer", "192.168.0.0/16", IPAM, 9, 9),
            net("z-older", "192.168.0.0/16", IPAM, 4, 4),
        ],
        ..Listing::default()
    };
    let outcomes = w.load(&listing, 0);
    let applied: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| is_applied(o))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(applied, vec!["z-older"]);

    // With a plan: the network that has one wins even if its key is newer.
    let mut w1 = World::new(600);
    w1.put_network(&net("planned", "192.168.0.0/16", IPAM, 9, 9), 0);
    let plans: Vec<KeyValue> = w1
        .take_plan_ops()
        .into_iter()
        .filter_map(|op| match op {
            Op::Put { key, value, .. } => Some(kv(key, value, 10, 10)),
            _ => None,
        })
        .collect();
    let mut w2 = World::new(600);
    let outcomes = w2.load(
        &Listing {
            networks: vec![
                net("planned", "192.168.0.0/16", IPAM, 9, 9),
                net("older", "192.168.0.0/16", IPAM, 4, 4),
            ],
            plans,
            ..Listing::default()
        },
        0,
    );
    let refused: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, SpecOutcome::Invalid(_)))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(refused, vec!["older"]);
}

#[test]
fn a_refused_renumbering_changes_nothing_and_the_status_says_what_is_live() {
    let mut w = World::new(600);
    w.put_host(host("h0", 0, &[0, 1]), 0);
    w.put_host(host("h1", 1, &[0, 1]), 0);
    w.put_network(&net("a", "192.168.0.0/16", IPAM, 2, 2), 0);
    let before = flush(&mut w);
    let accepted = meta(&before, "a");
    assert_eq!(accepted.spec_revision, 2);
    assert_eq!(accepted.spec.as_ref().unwrap().subnet, "192.168.0.0/16");

    let change = net(
        "a",
        "192.168.0.0/16",
        r#"{"hostBlock": 5, "interfaceBlock": 2}"#,
        2,
        7,
    );
    let SpecOutcome::NeedsApproval(pending) = w.put_network(&change, 1) else {
        panic!("a hostBlock change is renumbering")
    };
    assert!(!pending.renumbered.is_empty());
    w.refuse(*pending, "refused: pods hold addresses".into());
    let ops = flush(&mut w);
    assert!(
        !writes_plan(&ops, "a"),
        "a refused change writes no plan key: {ops:?}"
    );
    let s = status(&ops, "a");
    assert_eq!(s.condition, Condition::Invalid);
    assert_eq!((s.applied_revision, s.observed_revision), (2, 7));
    assert!(s.last_error.unwrap().contains("refused"));

    // A new leader loading this store keeps the accepted spec in force.
    let mut store: Vec<KeyValue> = Vec::new();
    for op in before {
        if let Op::Put { key, value, .. } = op {
            if key.starts_with(keys::PLANS) {
                store.push(kv(key, value, 3, 3));
            }
        }
    }
    let mut w2 = World::new(600);
    w2.put_host(host("h0", 0, &[0, 1]), 0);
    w2.put_host(host("h1", 1, &[0, 1]), 0);
    let outcomes = w2.load(
        &Listing {
            networks: vec![change],
            plans: store,
            ..Listing::default()
        },
        2,
    );
    assert!(matches!(outcomes[0].1, SpecOutcome::NeedsApproval(_)));
    let ops = flush(&mut w2);
    assert!(
        put_of(&ops, &keys::plan_meta("a")).is_none(),
        "meta unchanged"
    );
    assert_eq!(
        w2.accepted_subnets("a").unwrap()[0].to_string(),
        "192.168.0.0/16"
    );
}

#[test]
fn a_forced_renumbering_is_applied_and_published() {
    let mut w = World::new(600);
    w.put_host(host("h0", 0, &[0, 1]), 0);
    w.put_network(&net("a", "192.168.0.0/16", IPAM, 2, 2), 0);
    flush(&mut w);
    let forced = serde_json::json!({
        "metadata": {"name": "a", "annotations": {"railyard.dev/allow-renumber": "true"}},
        "spec": {"subnet": "192.168.0.0/16", "ipam": r#"{"hostBlock": 5, "interfaceBlock": 2}"#},
    });
    let o = w.put_network(
        &kv(
            keys::network("a"),
            serde_json::to_vec(&forced).unwrap(),
            2,
            8,
        ),
        1,
    );
    assert!(is_applied(&o), "{o:?}");
    let ops = flush(&mut w);
    let m = meta(&ops, "a");
    assert_eq!(m.spec_revision, 8);
    let s = status(&ops, "a");
    assert_eq!((s.applied_revision, s.observed_revision), (8, 8));
}

#[test]
fn a_waiting_host_gets_the_first_freed_index_before_a_later_joiner() {
    let tiny = r#"{"hostBlock": 1, "interfaceBlock": 1}"#;
    let mut w = World::new(10);
    for (n, h) in ["a", "b", "zz-waited"].iter().enumerate() {
        w.put_host(host(h, n as u32, &[0, 1]), 0);
    }
    w.put_network(&net("t", "192.168.0.0/24", tiny, 2, 2), 0);
    w.put_host(host("aa-later", 3, &[0, 1]), 0);
    let planner = w.planner("t").unwrap();
    assert_eq!(planner.waiting(), vec!["zz-waited", "aa-later"]);
    flush(&mut w);
    w.delete_host("a", 100);
    w.expire(105); // within the grace period: still reserved
    assert!(w.planner("t").unwrap().host("zz-waited").is_none());
    w.expire(111);
    let p = w.planner("t").unwrap();
    assert!(p.host("a").is_none());
    assert!(
        p.host("zz-waited").is_some(),
        "planned as soon as a's index freed"
    );
    assert!(p.host("aa-later").is_none());
    let ops = flush(&mut w);
    assert!(put_of(&ops, &keys::plan_host("t", "zz-waited")).is_some());
}

#[test]
fn a_host_gone_past_its_grace_period_takes_its_allocation_records_along() {
    // A node renamed (or removed without a drain): its old name's records must
    // not stay in etcd forever, and they must stay while it may come back.
    let deletes_records = |ops: &[Op], host: &str| {
        ops.iter().any(|op| {
            matches!(op, Op::DeletePrefix { prefix } if *prefix == keys::allocations_of_host("n", host))
        })
    };
    let mut w = World::new(10);
    w.put_host(host("old-name", 0, &[0, 1]), 0);
    w.put_host(host("b", 1, &[0, 1]), 0);
    w.put_network(
        &net(
            "n",
            "192.168.0.0/16",
            r#"{"hostBlock": 6, "interfaceBlock": 2}"#,
            2,
            2,
        ),
        0,
    );
    flush(&mut w);
    w.delete_host("old-name", 100);
    w.put_host(host("new-name", 0, &[0, 1]), 0);
    w.expire(109);
    let ops = flush(&mut w);
    assert!(
        !deletes_records(&ops, "old-name"),
        "released within the grace period"
    );
    w.expire(110);
    let ops = flush(&mut w);
    assert!(
        deletes_records(&ops, "old-name"),
        "not released after it: {ops:?}"
    );
    assert!(!deletes_records(&ops, "b") && !deletes_records(&ops, "new-name"));
    w.expire(200);
    assert!(
        !deletes_records(&flush(&mut w), "old-name"),
        "released once"
    );
}

#[test]
fn a_restarted_planner_releases_the_records_of_hosts_expired_while_it_was_away() {
    // The grace period ended while no planner ran: the new leader expires the
    // host when it loads the plan, and releases its records then.
    let mut w = World::new(10);
    w.put_host(host("gone", 0, &[0, 1]), 0);
    w.put_network(
        &net(
            "n",
            "192.168.0.0/16",
            r#"{"hostBlock": 6, "interfaceBlock": 2}"#,
            2,
            2,
        ),
        0,
    );
    w.delete_host("gone", 100);
    let ops = flush(&mut w);
    let mut listing = Listing {
        networks: vec![net(
            "n",
            "192.168.0.0/16",
            r#"{"hostBlock": 6, "interfaceBlock": 2}"#,
            2,
            2,
        )],
        ..Listing::default()
    };
    for op in &ops {
        if let Op::Put { key, value, .. } = op {
            if key.starts_with(keys::PLANS) {
                listing.plans.push(kv(key.clone(), value.clone(), 3, 3));
            }
        }
    }
    let mut fresh = World::new(10);
    fresh.load(&listing, 500);
    let ops = flush(&mut fresh);
    assert!(
        ops.iter().any(|op| matches!(op, Op::DeletePrefix { prefix } if *prefix == keys::allocations_of_host("n", "gone"))),
        "{ops:?}"
    );
}
