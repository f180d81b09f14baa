//! Routed rails (`docs/design/routed-rails.md`): the spec field, the plan of
//! a routed fabric, and the decisions a routed host makes from it.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use railyard_core::fabric::{
    is_source_table, leaf_gateway, route_via_leaves, routed_links, router_id, sessions,
    source_routes, source_tables, AcceptRange, Bgp, Fabric, LinkProblem, RoutedLink, RoutedNetwork,
    SOURCE_TABLES, SOURCE_TABLE_FIRST,
};
use railyard_core::{
    desired_routes, plan, CoreError, HostInventory, IfName, Network, NetworkManifest, Nic, Plan,
};

fn manifest(fabric: &str, master_nets: &str) -> NetworkManifest {
    serde_yaml::from_str(&format!(
        r#"
metadata: {{name: rails}}
spec:
  subnet: "192.168.0.0/16"
  ipam: {{hostBlock: 6, interfaceBlock: 2}}
  masterNets: {master_nets}
{fabric}
"#
    ))
    .expect("manifest parses")
}

fn refusal(fabric: &str, master_nets: &str) -> (String, String, String) {
    match manifest(fabric, master_nets).validate() {
        Err(CoreError::Invalid {
            field,
            value,
            reason,
        }) => (field, value, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const RAILS: &str = "[10.10.0.0/16, 10.11.0.0/16]";

fn routed_network() -> Network {
    manifest(
        "  fabric: {mode: routed, bgp: {asn: 64512, peerAsn: 65000}}",
        RAILS,
    )
    .validate()
    .expect("valid")
}

#[test]
fn no_fabric_is_l2_and_serializes_as_before() {
    let m = manifest("", RAILS);
    let net = m.validate().unwrap();
    assert_eq!(net.spec.fabric().unwrap(), Fabric::L2);
    let json = serde_json::to_string(&net.spec).unwrap();
    assert!(!json.contains("fabric"), "{json}");
    let l2 = manifest("  fabric: {mode: l2}", RAILS).validate().unwrap();
    assert_eq!(l2.spec.fabric().unwrap(), Fabric::L2);
}

#[test]
fn routed_fabric_is_validated_with_defaults() {
    let net = manifest("  fabric: {mode: routed, bgp: {peerAsn: 65000}}", RAILS)
        .validate()
        .unwrap();
    assert_eq!(
        net.spec.fabric().unwrap(),
        Fabric::Routed(Bgp {
            asn: 64_512,
            peer_asn: 65_000,
            hold_time: 9
        })
    );
    let four_byte = manifest(
        "  fabric: {mode: routed, bgp: {asn: 4200000001, peerAsn: 4200000000, holdTime: 30}}",
        RAILS,
    )
    .validate()
    .unwrap();
    assert!(matches!(
        four_byte.spec.fabric().unwrap(),
        Fabric::Routed(Bgp {
            asn: 4_200_000_001,
            peer_asn: 4_200_000_000,
            hold_time: 30
        })
    ));
}

#[test]
fn refusals_name_the_field_and_the_value() {
    let cases = [
        ("  fabric: {mode: bgp}", RAILS, "spec.fabric.mode", "bgp"),
        (
            "  fabric: {mode: routed, bgp: {asn: 1}}",
            RAILS,
            "spec.fabric.bgp.peerAsn",
            "",
        ),
        (
            "  fabric: {mode: routed, bgp: {peerAsn: 65000}}",
            "[]",
            "spec.masterNets",
            "",
        ),
        (
            "  fabric: {mode: l2, bgp: {peerAsn: 65000}}",
            RAILS,
            "spec.fabric.bgp",
            r#"{"peerAsn":65000}"#,
        ),
        (
            "  fabric: {mode: routed, bgp: {peerAsn: 0}}",
            RAILS,
            "spec.fabric.bgp.peerAsn",
            "0",
        ),
        (
            "  fabric: {mode: routed, bgp: {asn: 23456, peerAsn: 65000}}",
            RAILS,
            "spec.fabric.bgp.asn",
            "23456",
        ),
        (
            "  fabric: {mode: routed, bgp: {asn: 4294967296, peerAsn: 65000}}",
            RAILS,
            "spec.fabric.bgp.asn",
            "4294967296",
        ),
        (
            "  fabric: {mode: routed, bgp: {asn: 65000, peerAsn: 65000}}",
            RAILS,
            "spec.fabric.bgp.peerAsn",
            "65000",
        ),
        (
            "  fabric: {mode: routed, bgp: {peerAsn: 65000, holdTime: 2}}",
            RAILS,
            "spec.fabric.bgp.holdTime",
            "2",
        ),
        (
            "  fabric: {mode: routed, bgp: {peerAsn: 65000, holdTime: 70000}}",
            RAILS,
            "spec.fabric.bgp.holdTime",
            "70000",
        ),
        (
            "  fabric: {mode: routed, bgp: {peerAS: 65000}}",
            RAILS,
            "spec.fabric.bgp.peerAS",
            "65000",
        ),
        (
            "  fabric: {routed: true}",
            RAILS,
            "spec.fabric.routed",
            "true",
        ),
    ];
    for (fabric, nets, field, value) in cases {
        let (f, v, reason) = refusal(fabric, nets);
        assert_eq!(
            (f.as_str(), v.as_str()),
            (field, value),
            "{fabric}: {reason}"
        );
        assert!(!reason.is_empty());
    }
}

/// Host `n` of a routed fabric: NIC `rail<k>` on the /31 `10.1k.0.(2n+1)`,
/// its leaf at `10.1k.0.(2n)`.
fn routed_host(name: &str, n: u32, rails: u32) -> HostInventory {
    HostInventory {
        name: name.into(),
        nics: (0..rails)
            .map(|k| Nic {
                name: format!("rail{k}"),
                addresses: vec![format!("10.1{k}.0.{}/31", 2 * n + 1).parse().unwrap()],
                up: true,
                ..Nic::default()
            })
            .collect(),
    }
}

fn routed_plan(hosts: u32) -> (Network, Plan, Vec<HostInventory>) {
    let net = routed_network();
    let inv: Vec<HostInventory> = (0..hosts)
        .map(|n| routed_host(&format!("h{n}"), n, 2))
        .collect();
    let p = plan(&net, &inv, None, 0, 600);
    (net, p, inv)
}

fn addresses(h: &HostInventory) -> Vec<(IfName, IpNet)> {
    h.nics
        .iter()
        .flat_map(|n| {
            let name = IfName::new(&n.name).unwrap();
            n.addresses.iter().map(move |a| (name, *a))
        })
        .collect()
}

#[test]
fn routed_hosts_are_put_on_the_master_net_holding_their_link() {
    let (_, p, _) = routed_plan(3);
    assert_eq!(p.interfaces.len(), 2);
    assert!(p.unplanned.is_empty(), "{:?}", p.unplanned);
    for (name, h) in &p.hosts {
        assert_eq!(h.blocks.len(), 2, "{name}");
    }
    // The same /31 NICs on an l2 network name a rail each: without the routed
    // mode only exact masterNets subnets count, so no NIC is on a rail.
    let l2 = manifest("", RAILS).validate().unwrap();
    let inv: Vec<HostInventory> = (0..3)
        .map(|n| routed_host(&format!("h{n}"), n, 2))
        .collect();
    assert_eq!(plan(&l2, &inv, None, 0, 600).unplanned.len(), 3);
}

#[test]
fn the_leaf_is_the_other_end_of_the_link() {
    let gw = |s: &str| leaf_gateway(s.parse().unwrap());
    assert_eq!(gw("10.10.0.1/31"), Ok("10.10.0.0".parse().unwrap()));
    assert_eq!(gw("10.10.0.2/31"), Ok("10.10.0.3".parse().unwrap()));
    assert_eq!(gw("fd00::1/127"), Ok("fd00::".parse().unwrap()));
    assert_eq!(gw("10.10.0.6/29"), Ok("10.10.0.1".parse().unwrap()));
    assert_eq!(gw("fd00::5/64"), Ok("fd00::1".parse().unwrap()));
    for bad in [
        "10.10.0.1/32",
        "fd00::1/128",
        "10.10.0.1/30",
        "10.10.0.0/30",
    ] {
        assert!(gw(bad).is_err(), "{bad}");
    }
}

#[test]
fn routes_go_through_the_own_leaf_and_links_without_a_gateway_are_reported() {
    let (_, p, inv) = routed_plan(3);
    let me = &inv[1];
    let mine = &p.hosts["h1"].blocks;
    let (links, problems) = routed_links(mine, &addresses(me));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(links.len(), 2);
    let routes = desired_routes(&p, "h1", 7);
    assert_eq!(routes.len(), 4);
    let (via, dropped) = route_via_leaves(routes.clone(), &links);
    assert!(dropped.is_empty());
    for (r, before) in via.iter().zip(&routes) {
        assert_eq!(
            (r.dst, r.dev, r.table),
            (before.dst, before.dev, before.table)
        );
        let leaf = links.iter().find(|l| l.nic == r.dev).unwrap().gateway;
        assert_eq!(r.gateway, leaf, "{r:?}");
        // h1 is 10.1k.0.3/31: its leaf is 10.1k.0.2 on both rails.
        assert!(r.gateway.to_string().ends_with(".0.2"), "{r:?}");
    }

    // The NIC's address moved since the plan; and a /32 has no leaf.
    let mut moved = addresses(me);
    moved[0].1 = "10.10.0.9/31".parse().unwrap();
    moved[1].1 = "10.11.0.3/32".parse().unwrap();
    let (links, problems) = routed_links(mine, &moved);
    assert!(links.is_empty());
    assert!(matches!(problems[0], LinkProblem::NoAddress { .. }));
    assert!(matches!(problems[1], LinkProblem::NoGateway { .. }));
    let (via, dropped) = route_via_leaves(routes, &links);
    assert!(via.is_empty());
    assert_eq!(dropped.len(), 4);
}

fn bgp() -> Bgp {
    Bgp {
        asn: 64_512,
        peer_asn: 65_000,
        hold_time: 9,
    }
}

#[test]
fn a_host_announces_only_its_own_blocks_each_to_its_rails_leaf() {
    let (_, p, inv) = routed_plan(3);
    let (links, _) = routed_links(&p.hosts["h1"].blocks, &addresses(&inv[1]));
    let nets = [RoutedNetwork {
        name: "rails",
        bgp: bgp(),
        plan: &p,
    }];
    let (s, conflicts) = sessions(&nets, "h1", &links);
    assert!(conflicts.is_empty());
    assert_eq!(s.len(), 2);
    for (k, session) in s.iter().enumerate() {
        let block = p.hosts["h1"]
            .blocks
            .iter()
            .find(|b| b.nic == session.nic)
            .unwrap();
        assert_eq!(session.nic, format!("rail{k}").as_str());
        assert_eq!(session.announce, vec![block.cidr]);
        assert_eq!(session.neighbor.to_string(), format!("10.1{k}.0.2"));
        let rail = p
            .interfaces
            .iter()
            .find(|i| i.index == block.interface)
            .unwrap();
        assert_eq!(
            session.accept,
            vec![AcceptRange {
                range: rail.cidrs[0],
                prefix: 24
            }]
        );
        // What a rogue or misconfigured leaf may send, and what passes.
        let other = &p.hosts["h2"]
            .blocks
            .iter()
            .find(|b| b.nic == session.nic)
            .unwrap()
            .cidr;
        assert!(session.accepts(other));
        for rogue in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "192.168.0.0/16",
            "192.168.0.0/25",
            &rail.cidrs[0].to_string(),
            &block.cidr.to_string(),
        ] {
            assert!(
                !session.accepts(&rogue.parse().unwrap()),
                "{rogue} on {}",
                session.nic
            );
        }
        let other_rail = p
            .interfaces
            .iter()
            .find(|i| i.index != block.interface)
            .unwrap();
        let foreign_block = IpNet::new(other_rail.cidrs[0].addr(), 24).unwrap();
        assert!(!session.accepts(&foreign_block));
    }
    assert_eq!(router_id(&s, 1).to_string(), "10.10.0.3");

    // Departed: nothing to announce, no session.
    let mut gone = p.clone();
    gone.hosts.get_mut("h1").unwrap().departed_at = Some(1);
    let nets = [RoutedNetwork {
        name: "rails",
        bgp: bgp(),
        plan: &gone,
    }];
    assert!(sessions(&nets, "h1", &links).0.is_empty());
}

#[test]
fn networks_sharing_a_link_share_its_session_or_are_reported() {
    let (_, p, inv) = routed_plan(2);
    let (links, _) = routed_links(&p.hosts["h0"].blocks, &addresses(&inv[0]));
    let mut q = p.clone();
    for h in q.hosts.values_mut() {
        for b in &mut h.blocks {
            b.cidr = IpNet::new(
                IpAddr::V4(match b.cidr.addr() {
                    IpAddr::V4(a) => std::net::Ipv4Addr::from_bits(a.to_bits() ^ 0x0100_0000),
                    IpAddr::V6(_) => unreachable!(),
                }),
                b.cidr.prefix_len(),
            )
            .unwrap();
        }
    }
    let same = [
        RoutedNetwork {
            name: "b",
            bgp: bgp(),
            plan: &q,
        },
        RoutedNetwork {
            name: "a",
            bgp: bgp(),
            plan: &p,
        },
    ];
    let (s, conflicts) = sessions(&same, "h0", &links);
    assert!(conflicts.is_empty());
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|s| s.announce.len() == 2));
    let other = Bgp {
        peer_asn: 65_001,
        ..bgp()
    };
    let differ = [
        RoutedNetwork {
            name: "b",
            bgp: other,
            plan: &q,
        },
        RoutedNetwork {
            name: "a",
            bgp: bgp(),
            plan: &p,
        },
    ];
    let (s, conflicts) = sessions(&differ, "h0", &links);
    assert_eq!(conflicts.len(), 2);
    assert!(conflicts.iter().all(|c| c.network == "b"));
    assert!(s.iter().all(|s| s.announce.len() == 1 && s.bgp == bgp()));
}

#[test]
fn an_ipv6_only_host_gets_a_router_id_from_its_index() {
    assert_eq!(router_id(&[], 41).to_string(), "0.0.0.42");
}

fn link(nic: &str, addr: &str) -> RoutedLink {
    let address: IpNet = addr.parse().unwrap();
    RoutedLink {
        nic: IfName::new(nic).unwrap(),
        address,
        gateway: leaf_gateway(address).unwrap(),
    }
}

#[test]
fn source_tables_route_replies_out_of_their_nic() {
    let links = vec![
        link("rail0", "10.10.0.1/31"),
        link("rail0", "fd10::1/127"),
        link("rail1", "10.11.0.1/31"),
    ];
    let tables = source_tables(&[], &links);
    assert_eq!(tables["rail0"], SOURCE_TABLE_FIRST);
    assert_eq!(tables["rail1"], SOURCE_TABLE_FIRST + 1);
    let (routes, rules) = source_routes(&links, &tables);
    assert_eq!(routes.len(), 3);
    assert_eq!(rules.len(), 3);
    let r0: Vec<String> = routes
        .iter()
        .filter(|r| r.table == SOURCE_TABLE_FIRST)
        .map(|r| format!("{} via {} dev {}", r.dst, r.gateway, r.dev))
        .collect();
    assert_eq!(
        r0,
        [
            "0.0.0.0/0 via 10.10.0.0 dev rail0",
            "::/0 via fd10:: dev rail0"
        ]
    );
    assert_eq!(rules[0].from.to_string(), "10.10.0.1/32");

    // A restart reads the rules back: the same tables, even in another order,
    // and a NIC that was given table +7 before keeps it.
    let existing: Vec<(IpAddr, u32)> = vec![
        ("10.11.0.1".parse().unwrap(), SOURCE_TABLE_FIRST + 7),
        ("10.10.0.1".parse().unwrap(), SOURCE_TABLE_FIRST),
    ];
    let again = source_tables(&existing, &links);
    assert_eq!(again["rail0"], SOURCE_TABLE_FIRST);
    assert_eq!(again["rail1"], SOURCE_TABLE_FIRST + 7);
}

fn arb_links() -> impl Strategy<Value = Vec<RoutedLink>> {
    prop::collection::vec((0u8..12, 0u8..40), 0..20).prop_map(|v| {
        v.into_iter()
            .map(|(nic, a)| link(&format!("n{nic}"), &format!("10.{nic}.{a}.1/31")))
            .collect()
    })
}

fn arb_existing() -> impl Strategy<Value = Vec<(IpAddr, u32)>> {
    prop::collection::vec((0u8..12, 0u8..40, 0u32..24, any::<bool>()), 0..20).prop_map(|v| {
        v.into_iter()
            .map(|(nic, a, t, ours)| {
                let table = if ours {
                    SOURCE_TABLE_FIRST + t
                } else {
                    1_000 + t
                };
                (format!("10.{nic}.{a}.1").parse().unwrap(), table)
            })
            .collect()
    })
}

proptest! {
    /// Table ids are collision-free by construction: for any rules already in
    /// the kernel and any NICs, no two NICs share a table, every table is in
    /// railyard's range, a NIC that owns an existing table alone keeps it, and
    /// the answer does not depend on the order of either input.
    #[test]
    fn source_tables_are_injective_stable_and_order_free(
        links in arb_links(),
        existing in arb_existing(),
        seed in any::<u64>(),
    ) {
        let tables = source_tables(&existing, &links);
        let nics: std::collections::BTreeSet<IfName> = links.iter().map(|l| l.nic).collect();
        prop_assert_eq!(tables.len(), nics.len());
        let mut seen = BTreeMap::new();
        for (nic, t) in &tables {
            prop_assert!(is_source_table(*t));
            prop_assert!(*t < SOURCE_TABLE_FIRST + SOURCE_TABLES);
            if let Some(other) = seen.insert(*t, *nic) {
                prop_assert!(false, "{} and {} share table {}", other, nic, t);
            }
        }
        // A NIC whose addresses point at exactly one of our tables, which no
        // other NIC's address points at, keeps it.
        for nic in &nics {
            let addrs: Vec<IpAddr> = links.iter().filter(|l| l.nic == *nic).map(|l| l.address.addr()).collect();
            let mine: std::collections::BTreeSet<u32> = existing.iter()
                .filter(|(a, t)| is_source_table(*t) && addrs.contains(a)).map(|(_, t)| *t).collect();
            let shared = existing.iter().any(|(a, t)| mine.contains(t) && !addrs.contains(a)
                && links.iter().any(|l| l.nic != *nic && l.address.addr() == *a));
            if mine.len() == 1 && !shared {
                prop_assert_eq!(tables[nic], *mine.iter().next().unwrap());
            }
        }
        // Order-free: reversed and rotated inputs give the same tables.
        let mut l2 = links.clone();
        l2.reverse();
        let mut e2 = existing.clone();
        if !e2.is_empty() {
            let k = (seed as usize) % e2.len();
            e2.rotate_left(k);
        }
        prop_assert_eq!(source_tables(&e2, &l2), tables.clone());
        // Applied, then read back: the same again (a restart changes nothing).
        let (_, rules) = source_routes(&links, &tables);
        let back: Vec<(IpAddr, u32)> = rules.iter().map(|r| (r.from.addr(), r.table)).collect();
        prop_assert_eq!(source_tables(&back, &links), tables);
    }

    /// Whatever a leaf sends, a session accepts only a host block of its own
    /// rail (exactly the block length, inside the rail's range), never its own.
    #[test]
    fn the_import_filter_admits_only_peer_blocks_of_the_rail(
        addr in any::<u32>(),
        len in 0u8..=32,
    ) {
        let (_, p, inv) = routed_plan(3);
        let (links, _) = routed_links(&p.hosts["h1"].blocks, &addresses(&inv[1]));
        let nets = [RoutedNetwork { name: "rails", bgp: bgp(), plan: &p }];
        let (s, _) = sessions(&nets, "h1", &links);
        let net = IpNet::new(IpAddr::V4(std::net::Ipv4Addr::from_bits(addr)), len).unwrap().trunc();
        for session in &s {
            let block = p.hosts["h1"].blocks.iter().find(|b| b.nic == session.nic).unwrap();
            let rail = p.interfaces.iter().find(|i| i.index == block.interface).unwrap().cidrs[0];
            let want = len == 24 && rail.contains(&net.addr()) && net != block.cidr;
            prop_assert_eq!(session.accepts(&net), want, "{} on {}", net, session.nic);
        }
    }
}
