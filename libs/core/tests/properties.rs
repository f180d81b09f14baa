//! Property tests of the planner and the allocator: the invariants that must hold
//! for any network and any sequence of joins and leaves.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use railyard_core::{
    plan, BlockAllocator, Gateway, HostInventory, Network, NetworkSpec, Nic, Plan, Planner,
};

/// A valid network with small bit widths so exhaustion and excludes actually occur.
fn arb_network() -> impl Strategy<Value = Network> {
    (
        16u8..=24,
        0u8..=3,
        0u8..=5,
        prop::collection::vec((0u32..64, 0u8..=6), 0..3),
    )
        .prop_filter_map("needs pod bits", |(prefix, ib, hb, ex)| {
            if 32 - prefix - ib - hb < 2 {
                return None;
            }
            let subnet: IpNet = format!("172.16.0.0/{prefix}").parse().ok()?;
            let excludes: Vec<String> = ex
                .iter()
                .map(|(off, extra)| {
                    let p = (prefix + ib + extra).min(32);
                    let step = 1u32 << (32 - p).min(31);
                    let base = u32::from(std::net::Ipv4Addr::new(172, 16, 0, 0));
                    let size = 1u32 << (32 - prefix);
                    let addr = base + (off * step) % size;
                    format!("{}/{p}", std::net::Ipv4Addr::from(addr))
                })
                .collect();
            let spec = NetworkSpec {
                subnet: subnet.to_string(),
                ipam: railyard_core::spec::IpamField::Text(format!(
                    r#"{{"hostBlock": {hb}, "interfaceBlock": {ib}, "excludeCIDRs": {}}}"#,
                    serde_json::to_string(&excludes).ok()?
                )),
                ..NetworkSpec::default()
            };
            spec.validate("prop").ok()
        })
}

/// Hosts named h0..hN, each on a random subset of 5 candidate NIC subnets.
fn arb_hosts(max: usize) -> impl Strategy<Value = Vec<HostInventory>> {
    prop::collection::btree_map(
        0u32..200,
        prop::collection::btree_set(0u32..5, 0..5),
        0..max,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(n, rails)| HostInventory {
                name: format!("h{n}"),
                nics: rails
                    .into_iter()
                    .map(|k| Nic {
                        name: format!("eth{k}"),
                        addresses: vec![format!("10.{k}.{}.{}/16", n / 250, n % 250 + 1)
                            .parse()
                            .unwrap()],
                        up: true,
                        ..Nic::default()
                    })
                    .collect(),
            })
            .collect()
    })
}

fn assert_blocks_sound(net: &Network, p: &Plan) {
    let mut all: Vec<IpNet> = Vec::new();
    let mut indexes = HashSet::new();
    for (name, h) in &p.hosts {
        assert!(indexes.insert(h.index), "index {} twice ({name})", h.index);
        assert!(h.index < 1 << net.host_block);
        for b in &h.blocks {
            assert!(
                net.subnets[0].contains(&b.cidr),
                "{} outside subnet",
                b.cidr
            );
            let rail = p
                .interfaces
                .iter()
                .find(|i| i.index == b.interface)
                .unwrap();
            assert!(
                rail.cidrs[0].contains(&b.cidr),
                "{} outside its rail",
                b.cidr
            );
            all.push(b.cidr);
        }
    }
    all.sort();
    for w in all.windows(2) {
        assert!(
            !w[0].contains(&w[1].network()),
            "{} overlaps {}",
            w[0],
            w[1]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn blocks_are_disjoint_and_inside_the_subnet(net in arb_network(), hosts in arb_hosts(40)) {
        let p = plan(&net, &hosts, None, 0, 600);
        assert_blocks_sound(&net, &p);
        // Every host is either planned or named as unplanned, never lost.
        let named: BTreeSet<&str> = p.hosts.keys().map(String::as_str)
            .chain(p.unplanned.iter().map(|u| u.host.as_str())).collect();
        for h in &hosts {
            prop_assert!(named.contains(h.name.as_str()), "{} lost", h.name);
        }
    }

    #[test]
    fn plan_is_deterministic_whatever_the_input_order(net in arb_network(), hosts in arb_hosts(30)) {
        let a = plan(&net, &hosts, None, 0, 600);
        let mut rev = hosts.clone();
        rev.reverse();
        prop_assert_eq!(a, plan(&net, &rev, None, 0, 600));
    }

    #[test]
    fn assignments_survive_unrelated_joins_and_leaves(
        net in arb_network(),
        hosts in arb_hosts(30),
        leave in prop::collection::vec(any::<bool>(), 30),
        joiners in arb_hosts(10),
    ) {
        let before = plan(&net, &hosts, None, 0, 600);
        let mut next: Vec<HostInventory> = hosts.iter().zip(leave.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, l)| !**l).map(|(h, _)| h.clone()).collect();
        let names: BTreeSet<String> = next.iter().map(|h| h.name.clone()).collect();
        next.extend(joiners.into_iter().filter(|j| !names.contains(&j.name)).map(|mut j| { j.name = format!("new-{}", j.name); j }));
        let after = plan(&net, &next, Some(&before), 10, 600);
        for (name, h) in &before.hosts {
            let a = &after.hosts[name];
            prop_assert_eq!(a.index, h.index, "{} renumbered", name);
        }
        for r in &before.interfaces {
            prop_assert!(after.interfaces.contains(r), "rail {} moved", r.net_address);
        }
        assert_blocks_sound(&net, &after);
    }

    #[test]
    fn incremental_joins_match_a_full_plan(net in arb_network(), hosts in arb_hosts(30)) {
        // A full plan numbers new hosts by name; joining in that order must agree.
        let mut sorted = hosts.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut p = Planner::new(&net, None);
        p.register_rails(&hosts);
        for h in &sorted { p.upsert_host(h); }
        prop_assert_eq!(p.into_plan(), plan(&net, &hosts, None, 0, 600));
    }

    #[test]
    fn allocator_never_hands_out_an_address_twice(
        prefix in 22u8..=30,
        ops in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>()), 1..600),
    ) {
        let block: IpNet = format!("10.9.0.0/{prefix}").parse().unwrap();
        let mut a = BlockAllocator::new(block, &["10.9.0.16/30".parse().unwrap()]);
        let mut live: Vec<IpAddr> = Vec::new();
        for (alloc, pick) in ops {
            if alloc || live.is_empty() {
                match a.allocate() {
                    Some(ip) => {
                        prop_assert!(!live.contains(&ip), "{} handed out twice", ip);
                        prop_assert!(block.contains(&ip));
                        prop_assert!(Some(ip) != a.gateway());
                        live.push(ip);
                    }
                    None => prop_assert_eq!(a.free(), 0),
                }
            } else {
                let ip = live.swap_remove(pick.index(live.len()));
                prop_assert!(a.release(ip));
            }
            prop_assert_eq!(a.allocated() as usize, live.len());
        }
    }

    #[test]
    fn the_gateway_is_never_handed_to_a_pod(
        prefix in 24u8..=30,
        choice in prop_oneof![Just(None), (-64i64..64).prop_map(Some)],
        ops in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>()), 1..300),
    ) {
        let block: IpNet = format!("10.9.0.0/{prefix}").parse().unwrap();
        let size = 1i64 << (32 - prefix);
        let gateway = match choice {
            None => Gateway::None,
            // Offsets validation accepts: inside, not network or broadcast.
            Some(o) => {
                let o = o.rem_euclid(size - 2) + 1;
                Gateway::Offset(if choice.unwrap_or(0) < 0 { o - size } else { o })
            }
        };
        let mut a = BlockAllocator::with_gateway(block, &[], gateway);
        let gw = a.gateway();
        prop_assert_eq!(gw.is_none(), gateway == Gateway::None);
        prop_assert_eq!(a.free() as i64, size - 2 - i64::from(gw.is_some()));
        let mut live: Vec<IpAddr> = Vec::new();
        let mut first = None;
        for (alloc, pick) in ops {
            if alloc || live.is_empty() {
                match a.allocate() {
                    Some(ip) => {
                        first.get_or_insert(ip);
                        prop_assert!(Some(ip) != gw, "{} is the gateway", ip);
                        prop_assert!(!live.contains(&ip));
                        live.push(ip);
                    }
                    None => prop_assert_eq!(a.free(), 0),
                }
            } else {
                let ip = live.swap_remove(pick.index(live.len()));
                prop_assert!(a.release(ip));
            }
        }
        // Without a gateway, offset 1 is the first address a pod gets.
        if gateway == Gateway::None {
            prop_assert_eq!(first, Some("10.9.0.1".parse::<IpAddr>().unwrap()));
        }
        if let Some(gw) = gw {
            prop_assert!(!a.release(gw));
            prop_assert!(a.allocate_specific(gw).is_err());
        }
    }

    #[test]
    fn validation_never_panics(
        subnet in "[0-9a-f:./,]{0,40}",
        hb in -5i64..40,
        ib in -5i64..20,
        ex in prop::collection::vec("[0-9a-f:./]{0,20}", 0..3),
    ) {
        let spec = NetworkSpec {
            subnet,
            ipam: railyard_core::spec::IpamField::Object(railyard_core::spec::IpamSpec {
                host_block: Some(hb), interface_block: Some(ib), exclude_cidrs: ex, ..Default::default()
            }),
            ..NetworkSpec::default()
        };
        if let Ok(net) = spec.validate("fuzz") {
            let hosts = common::hosts(5, 2);
            let p = plan(&net, &hosts, None, 0, 600);
            assert_blocks_sound(&net, &p);
        }
    }
}

fn arb_route() -> impl Strategy<Value = railyard_core::Route> {
    (0u8..40, 0u8..3, 0u8..2, 0u32..2).prop_map(|(d, g, dev, table)| railyard_core::Route {
        dst: format!("192.168.{d}.0/24").parse().unwrap(),
        gateway: format!("10.0.0.{g}").parse().unwrap(),
        dev: format!("eth{dev}").parse().expect("valid name"),
        table,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Applying the diff to the kernel state yields exactly the wanted owned routes,
    /// and no foreign route is ever added to, replaced or deleted.
    #[test]
    fn diff_converges_and_never_touches_foreign_routes(
        desired in prop::collection::vec(arb_route(), 0..40),
        actual in prop::collection::vec((arb_route(), any::<bool>()), 0..40),
        sort_inputs in any::<bool>(),
    ) {
        use railyard_core::{diff, ActualRoute};
        let mut desired = desired;
        let mut actual: Vec<ActualRoute> = actual.into_iter().map(|(route, owned)| ActualRoute { route, owned }).collect();
        if sort_inputs {
            desired.sort_by_key(|r| (r.table, r.dst));
            actual.sort_by_key(|a| (a.route.table, a.route.dst));
        }
        let d = diff(&desired, &actual);
        let key = |r: &railyard_core::Route| (r.table, r.dst);
        let foreign: Vec<_> = actual.iter().filter(|a| !a.owned).map(|a| a.route.clone()).collect();
        // Apply: deletes remove one owned copy; replace/add install ours.
        let mut state: Vec<ActualRoute> = actual.clone();
        for r in &d.delete {
            let pos = state.iter().position(|a| a.owned && a.route == *r);
            prop_assert!(pos.is_some(), "deleting a route that is not ours: {:?}", r);
            state.remove(pos.unwrap());
        }
        for r in &d.replace {
            let pos = state.iter().position(|a| a.owned && key(&a.route) == key(r));
            prop_assert!(pos.is_some(), "replacing a route that is not ours: {:?}", r);
            state[pos.unwrap()].route = r.clone();
        }
        for r in &d.add {
            prop_assert!(!state.iter().any(|a| key(&a.route) == key(r)), "adding over an existing route: {:?}", r);
            state.push(ActualRoute { route: r.clone(), owned: true });
        }
        // First wanted route per destination.
        let mut wanted: Vec<&railyard_core::Route> = Vec::new();
        for r in &desired {
            if !wanted.iter().any(|w| key(w) == key(r)) {
                wanted.push(r);
            }
        }
        for w in &wanted {
            let held_by_foreign = foreign.iter().any(|f| key(f) == key(w));
            let ours: Vec<_> = state.iter().filter(|a| a.owned && key(&a.route) == key(w)).collect();
            if held_by_foreign && !actual.iter().any(|a| a.owned && key(&a.route) == key(w)) {
                prop_assert!(d.conflicts.contains(w));
                prop_assert!(ours.is_empty());
            } else {
                prop_assert_eq!(ours.len(), 1, "want exactly one owned {:?}", w);
                prop_assert_eq!(&ours[0].route, *w);
            }
        }
        for a in &state {
            if a.owned {
                prop_assert!(wanted.iter().any(|w| key(w) == key(&a.route)), "stale owned route left: {:?}", a.route);
            }
        }
        for f in &foreign {
            prop_assert!(state.iter().any(|a| !a.owned && a.route == *f), "foreign route lost: {:?}", f);
        }
    }
}

/// What `desired_routes` must return, computed the obvious way: every live peer's
/// block on each of my rails, through my NIC on that rail, sorted.
fn naive_routes(p: &Plan, me: &str, table: u32) -> Vec<railyard_core::Route> {
    let Some(mine) = p.hosts.get(me) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, peer) in &p.hosts {
        if name == me || peer.departed_at.is_some() {
            continue;
        }
        for m in &mine.blocks {
            let v4 = m.cidr.addr().is_ipv4();
            if let Some(b) = peer
                .blocks
                .iter()
                .find(|b| b.interface == m.interface && b.cidr.addr().is_ipv4() == v4)
            {
                out.push(railyard_core::Route {
                    dst: b.cidr,
                    gateway: b.nic_address,
                    dev: m.nic,
                    table,
                });
            }
        }
    }
    out.sort_by_key(|r| (r.table, r.dst));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The fast path (peer-major walk into rail lanes, holes for missing rails)
    /// gives exactly the obvious answer, whoever asks and whoever has departed.
    #[test]
    fn desired_routes_match_the_obvious_computation(
        net in arb_network(),
        hosts in arb_hosts(30),
        leavers in prop::collection::btree_set(0usize..30, 0..5),
        me in 0usize..30,
    ) {
        use railyard_core::desired_routes;
        let p1 = plan(&net, &hosts, None, 0, 600);
        let staying: Vec<HostInventory> = hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| !leavers.contains(i))
            .map(|(_, h)| h.clone())
            .collect();
        let p2 = plan(&net, &staying, Some(&p1), 10, 600);
        let me = hosts.get(me).map_or("nobody", |h| h.name.as_str());
        for p in [&p1, &p2] {
            prop_assert_eq!(desired_routes(p, me, 42), naive_routes(p, me, 42));
        }
    }
}
