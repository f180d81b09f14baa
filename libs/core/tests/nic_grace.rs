//! NIC flap grace: a rail NIC missing from its host's registration for less than
//! the grace period keeps its block (and so every peer's route to it); after it
//! the block is withdrawn, and it goes to no other host until the host's own
//! departed-host grace period has ended. All with an explicit `now`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{host, hosts, network, upstream};
use proptest::prelude::*;
use railyard_core::{desired_routes, Change, HostInventory, HostPlan, Network, Plan, Planner};

const NIC_GRACE: u64 = 30;
const HOST_GRACE: u64 = 600;

/// `hosts(count, rails)` planned at t=0 with the NIC grace on.
fn planned(net: &Network, count: u32, rails: u32) -> Planner {
    let mut p = Planner::new(net, None);
    p.set_nic_grace(NIC_GRACE);
    let inv = hosts(count, rails);
    p.register_rails(&inv);
    for h in &inv {
        p.upsert_host_at(h, 0);
    }
    p
}

/// Host `n` of `hosts(..)` with only the NICs on `rails`.
fn with_rails(n: u32, all: u32, rails: &[u32]) -> HostInventory {
    let mut h = host(&format!("host-{n:05}"), n, all, false);
    h.nics
        .retain(|nic| rails.iter().any(|r| nic.name == format!("eth{r}")));
    h
}

fn routes_of(p: &Planner, me: &str) -> Vec<railyard_core::Route> {
    desired_routes(&p.to_plan(), me, 100)
}

fn rails_of(h: &HostPlan) -> BTreeSet<u32> {
    h.blocks.iter().map(|b| b.interface).collect()
}

#[test]
fn a_nic_missing_less_than_the_grace_period_keeps_its_block_and_peer_routes() {
    let net = upstream();
    let mut p = planned(&net, 3, 2);
    let before = p.host("host-00001").cloned().expect("planned");
    let peer_routes = routes_of(&p, "host-00000");

    // eth1 loses its address at t=100: only rail 0 is registered.
    assert_eq!(
        p.upsert_host_at(&with_rails(1, 2, &[0]), 100),
        Change::Changed,
        "the missing-since mark is written"
    );
    let during = p.host("host-00001").expect("planned");
    assert_eq!(during.blocks, before.blocks, "no block withdrawn");
    assert_eq!(during.index, before.index);
    let rail1 = before.blocks[1].cidr;
    assert_eq!(during.nic_missing_since, BTreeMap::from([(rail1, 100)]));
    assert_eq!(
        routes_of(&p, "host-00000"),
        peer_routes,
        "peers keep routes"
    );

    // Re-registrations and ticks within the grace period keep the first second.
    p.upsert_host_at(&with_rails(1, 2, &[0]), 120);
    assert!(p.expire_nics(129).is_empty());
    assert_eq!(
        p.host("host-00001").expect("planned").nic_missing_since[&rail1],
        100
    );
    assert_eq!(routes_of(&p, "host-00000"), peer_routes);
}

#[test]
fn a_nic_back_within_the_grace_period_changes_nothing() {
    let net = upstream();
    let mut p = planned(&net, 3, 2);
    let plan_before = p.to_plan();
    p.upsert_host_at(&with_rails(1, 2, &[0]), 100);
    p.upsert_host_at(&with_rails(1, 2, &[0, 1]), 103);
    assert_eq!(p.to_plan(), plan_before, "the same plan, byte for byte");
    assert!(p.renumbered().is_empty());
    // And the mark is gone: a later flap gets a full period again.
    p.upsert_host_at(&with_rails(1, 2, &[0]), 500);
    assert!(p.expire_nics(529).is_empty());
    assert_eq!(p.expire_nics(530), vec!["host-00001".to_string()]);
}

#[test]
fn a_nic_missing_longer_than_the_grace_period_is_withdrawn() {
    let net = upstream();
    let mut p = planned(&net, 3, 2);
    let before = p.host("host-00001").cloned().expect("planned");
    p.upsert_host_at(&with_rails(1, 2, &[0]), 100);
    assert_eq!(p.expire_nics(130), vec!["host-00001".to_string()]);
    let after = p.host("host-00001").expect("planned");
    assert_eq!(after.index, before.index, "the host keeps its index");
    assert_eq!(after.blocks, before.blocks[..1].to_vec());
    assert!(after.nic_missing_since.is_empty());
    let withdrawn = before.blocks[1].cidr;
    assert!(
        routes_of(&p, "host-00000")
            .iter()
            .all(|r| r.dst != withdrawn),
        "peers drop the route to {withdrawn}"
    );
    // A re-registration still without the NIC does not bring it back...
    assert_eq!(
        p.upsert_host_at(&with_rails(1, 2, &[0]), 131),
        Change::Unchanged
    );
    // ...and a re-registration after the period withdraws it even with no tick.
    let mut q = planned(&net, 3, 2);
    q.upsert_host_at(&with_rails(1, 2, &[0]), 100);
    q.upsert_host_at(&with_rails(1, 2, &[0]), 130);
    assert_eq!(q.host("host-00001").expect("planned").blocks.len(), 1);
    // The NIC back later: the same block again (the index never moved).
    p.upsert_host_at(&with_rails(1, 2, &[0, 1]), 200);
    assert_eq!(p.host("host-00001").expect("planned"), &before);
}

#[test]
fn without_a_grace_period_a_missing_nic_is_withdrawn_at_once() {
    let net = upstream();
    let mut p = planned(&net, 2, 2);
    p.set_nic_grace(0);
    p.upsert_host_at(&with_rails(1, 2, &[0]), 100);
    assert_eq!(p.host("host-00001").expect("planned").blocks.len(), 1);
    // `upsert_host` has no clock: it never keeps a missing NIC's block.
    let mut q = planned(&net, 2, 2);
    q.upsert_host(&with_rails(1, 2, &[0]));
    assert_eq!(q.host("host-00001").expect("planned").blocks.len(), 1);
}

#[test]
fn a_withdrawn_block_goes_to_no_other_host_until_the_host_grace_period_ends() {
    // hostBlock 2: four host indexes, all taken.
    let net = network(
        r#"
metadata: {name: small}
spec:
  subnet: 192.168.0.0/16
  ipam: '{"hostBlock": 2, "interfaceBlock": 2}'
"#,
    );
    let mut p = planned(&net, 4, 2);
    let held = p.host("host-00001").cloned().expect("planned");
    let rail1 = held.blocks[1].cidr;
    p.upsert_host_at(&with_rails(1, 2, &[0]), 100);
    assert_eq!(p.expire_nics(130), vec!["host-00001".to_string()]);

    // A newcomer while the host is registered: no index, so not that block.
    let newcomer = host("newcomer", 9, 2, false);
    p.upsert_host_at(&newcomer, 140);
    assert!(p.host("newcomer").is_none());
    // The host departs; within its grace period the index stays reserved.
    p.remove_host("host-00001", 200);
    p.upsert_host_at(&newcomer, 300);
    p.expire(200 + HOST_GRACE - 1, HOST_GRACE);
    p.upsert_host_at(&newcomer, 200 + HOST_GRACE - 1);
    assert!(p.host("newcomer").is_none(), "index reserved in host grace");
    let nobody_else = |p: &Planner| {
        p.hosts()
            .filter(|(n, _)| n.as_str() != "host-00001")
            .all(|(_, h)| h.blocks.iter().all(|b| b.cidr != rail1))
    };
    assert!(nobody_else(&p));
    // Only once it ends does the index (and its rail-1 block) go to another host.
    assert_eq!(
        p.expire(200 + HOST_GRACE, HOST_GRACE),
        vec!["host-00001".to_string()]
    );
    p.upsert_host_at(&newcomer, 200 + HOST_GRACE);
    let got = p.host("newcomer").expect("planned after the host grace");
    assert_eq!(got.index, held.index);
    assert!(got.blocks.iter().any(|b| b.cidr == rail1));
}

#[test]
fn a_new_planner_keeps_counting_from_the_stored_second() {
    let net = upstream();
    let mut p = planned(&net, 3, 2);
    p.upsert_host_at(&with_rails(1, 2, &[0]), 100);
    // The plan goes through the store as JSON and a new leader adopts it.
    let stored: Plan =
        serde_json::from_slice(&serde_json::to_vec(&p.to_plan()).expect("json")).expect("parse");
    assert_eq!(stored, p.to_plan());
    let mut q = Planner::new(&net, Some(&stored));
    q.set_nic_grace(NIC_GRACE);
    assert!(q.renumbered().is_empty());
    q.upsert_host_at(&with_rails(1, 2, &[0]), 125);
    assert!(q.expire_nics(129).is_empty());
    assert_eq!(q.expire_nics(130), vec!["host-00001".to_string()]);
}

#[test]
fn a_lost_second_family_address_keeps_only_that_block() {
    let net = network(
        r#"
metadata: {name: dual}
spec:
  subnet: 192.168.0.0/16,fd10::/48
  ipam: '{"hostBlock": 6, "interfaceBlock": 2}'
"#,
    );
    let mut p = Planner::new(&net, None);
    p.set_nic_grace(NIC_GRACE);
    let inv: Vec<HostInventory> = (0..2).map(|n| host(&format!("h{n}"), n, 2, true)).collect();
    p.register_rails(&inv);
    for h in &inv {
        p.upsert_host_at(h, 0);
    }
    let before = p.host("h1").cloned().expect("planned");
    let mut v4_only = inv[1].clone();
    v4_only.nics[1].addresses.retain(|a| a.addr().is_ipv4());
    p.upsert_host_at(&v4_only, 10);
    let during = p.host("h1").expect("planned");
    assert_eq!(during.blocks, before.blocks);
    let v6 = before
        .blocks
        .iter()
        .find(|b| b.interface == 1 && b.cidr.addr().is_ipv6())
        .expect("a v6 block on rail 1")
        .cidr;
    assert_eq!(
        during.nic_missing_since.keys().collect::<Vec<_>>(),
        vec![&v6]
    );
    p.expire_nics(40);
    let after = p.host("h1").expect("planned");
    assert_eq!(after.blocks.len(), before.blocks.len() - 1);
    assert!(after.blocks.iter().all(|b| b.cidr != v6));
}

/// One step: host `host` registers the rails in `present` (of 3), `advance`
/// seconds after the previous step, then the planner's tick runs if `tick`.
#[derive(Debug, Clone)]
struct Step {
    advance: u64,
    host: u32,
    present: BTreeSet<u32>,
    tick: bool,
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            0u64..25,
            0u32..3,
            prop::collection::btree_set(0u32..3, 0..=3),
            any::<bool>(),
        )
            .prop_map(|(advance, host, present, tick)| Step {
                advance,
                host,
                present,
                tick,
            }),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Against a model of the rule: a host's block on a rail is held while its
    /// NIC is registered or has been missing for less than the grace period;
    /// it never moves (same index, same CIDR), and no two hosts share a block.
    #[test]
    fn blocks_follow_the_grace_rule_and_never_move(steps in arb_steps()) {
        let net = upstream();
        let mut p = planned(&net, 3, 3);
        let original: BTreeMap<String, HostPlan> =
            p.hosts().map(|(n, h)| (n.clone(), h.clone())).collect();
        // (host, rail) -> (held, missing since)
        let mut model: BTreeMap<(u32, u32), (bool, Option<u64>)> = (0..3)
            .flat_map(|h| (0..3).map(move |r| ((h, r), (true, None))))
            .collect();
        let mut now = 0;
        for step in steps {
            now += step.advance;
            let rails: Vec<u32> = step.present.iter().copied().collect();
            p.upsert_host_at(&with_rails(step.host, 3, &rails), now);
            for r in 0..3 {
                let e = model.get_mut(&(step.host, r)).expect("modelled");
                if step.present.contains(&r) {
                    *e = (true, None);
                } else if e.0 {
                    let since = e.1.unwrap_or(now);
                    *e = if now >= since + NIC_GRACE {
                        (false, None)
                    } else {
                        (true, Some(since))
                    };
                }
            }
            if step.tick {
                p.expire_nics(now);
                for e in model.values_mut() {
                    if e.1.is_some_and(|s| now >= s + NIC_GRACE) {
                        *e = (false, None);
                    }
                }
            }
            let mut seen = BTreeSet::new();
            for h in 0..3u32 {
                let name = format!("host-{h:05}");
                let got = p.host(&name).expect("planned");
                let want: BTreeSet<u32> =
                    (0..3).filter(|r| model[&(h, *r)].0).collect();
                prop_assert_eq!(rails_of(got), want, "{} at {}", &name, now);
                prop_assert_eq!(got.index, original[&name].index);
                for b in &got.blocks {
                    prop_assert!(original[&name].blocks.contains(b), "{:?} moved", b);
                    prop_assert!(seen.insert(b.cidr), "{} held twice", b.cidr);
                }
                for (cidr, since) in &got.nic_missing_since {
                    let b = got.blocks.iter().find(|b| b.cidr == *cidr).expect("kept block");
                    prop_assert_eq!(model[&(h, b.interface)].1, Some(*since));
                }
            }
        }
    }
}
