//! Spec changes that move blocks pods already hold addresses in: every one of
//! them must be reported by `Planner::renumbered`, whatever field moved it, so
//! the service can refuse it (unless forced) instead of stranding pods.

mod common;

use std::collections::BTreeMap;

use common::{hosts, network};
use proptest::prelude::*;
use railyard_core::{plan, HostInventory, Network, NetworkSpec, Nic, Plan, Planner};

fn net(subnet: &str, ipam: &str, extra: &str) -> Network {
    network(&format!(
        "metadata: {{name: n}}\nspec:\n  subnet: {subnet}\n  ipam: '{ipam}'\n{extra}"
    ))
}

const BASE: &str = r#"{"hostBlock": 6, "interfaceBlock": 2}"#;

fn subjects(p: &Planner) -> Vec<String> {
    p.renumbered().iter().map(|r| r.subject.clone()).collect()
}

#[test]
fn the_same_spec_renumbers_nothing() {
    let n = net("192.168.0.0/16", BASE, "");
    let p1 = plan(&n, &hosts(3, 2), None, 0, 600);
    assert!(Planner::new(&n, Some(&p1)).renumbered().is_empty());
}

#[test]
fn a_smaller_host_block_that_still_fits_every_index_is_renumbering() {
    // The defect: 6 -> 5 keeps every index valid, so nothing was reported,
    // while every block moved (192.168.1.0/24 -> 192.168.2.0/23 ...).
    let p1 = plan(&net("192.168.0.0/16", BASE, ""), &hosts(3, 2), None, 0, 600);
    let smaller = net(
        "192.168.0.0/16",
        r#"{"hostBlock": 5, "interfaceBlock": 2}"#,
        "",
    );
    let p = Planner::new(&smaller, Some(&p1));
    let s = subjects(&p);
    for h in ["host host-00000", "host host-00001", "host host-00002"] {
        assert!(s.contains(&h.to_string()), "{h} missing from {s:?}");
    }
    // The rails keep their /18s: hostBlock only splits them differently.
    assert!(!s.iter().any(|s| s.starts_with("interface")), "{s:?}");
    let r = p
        .renumbered()
        .iter()
        .find(|r| r.subject == "host host-00001")
        .expect("host-00001");
    assert!(
        r.reason.contains("192.168.1.0/24") && r.reason.contains("192.168.2.0/23"),
        "{}",
        r.reason
    );
}

#[test]
fn a_new_subnet_or_interface_block_is_renumbering() {
    let p1 = plan(&net("192.168.0.0/16", BASE, ""), &hosts(2, 2), None, 0, 600);
    let moved_subnet = net("192.169.0.0/16", BASE, "");
    assert!(!Planner::new(&moved_subnet, Some(&p1))
        .renumbered()
        .is_empty());
    let wider_rails = net(
        "192.168.0.0/16",
        r#"{"hostBlock": 5, "interfaceBlock": 3}"#,
        "",
    );
    let s = subjects(&Planner::new(&wider_rails, Some(&p1)));
    assert!(s.contains(&"interface 10.0.1.0/24".to_string()), "{s:?}");
    // Dropping the second family of a dual-stack network drops blocks.
    let dual = net("192.168.0.0/16,fd10::/48", BASE, "");
    let v6_hosts: Vec<HostInventory> = (0..2)
        .map(|n| common::host(&format!("h{n}"), n, 2, true))
        .collect();
    let p2 = plan(&dual, &v6_hosts, None, 0, 600);
    let v4_only = net("192.168.0.0/16", BASE, "");
    let r = Planner::new(&v4_only, Some(&p2));
    assert!(
        r.renumbered().iter().any(|r| r.reason.contains("dropped")),
        "{:?}",
        r.renumbered()
    );
}

#[test]
fn an_exclude_over_a_live_index_or_rail_is_renumbering_and_one_elsewhere_is_not() {
    let p1 = plan(&net("192.168.0.0/16", BASE, ""), &hosts(2, 2), None, 0, 600);
    let over_host = net(
        "192.168.0.0/16",
        r#"{"hostBlock": 6, "interfaceBlock": 2, "excludeCIDRs": ["192.168.1.0/24"]}"#,
        "",
    );
    assert_eq!(
        subjects(&Planner::new(&over_host, Some(&p1))),
        vec!["host host-00001"]
    );
    let elsewhere = net(
        "192.168.0.0/16",
        r#"{"hostBlock": 6, "interfaceBlock": 2, "excludeCIDRs": ["192.168.60.0/24"]}"#,
        "",
    );
    assert!(Planner::new(&elsewhere, Some(&p1)).renumbered().is_empty());
}

#[test]
fn a_subnet_that_swallows_a_nic_subnet_is_renumbering() {
    let p1 = plan(&net("192.168.0.0/16", BASE, ""), &hosts(2, 2), None, 0, 600);
    // 10.0.0.0/8 holds the NICs' own addresses (10.0.k.x): no rail can stay.
    let swallowing = net("10.0.0.0/8", r#"{"hostBlock": 6, "interfaceBlock": 2}"#, "");
    let s = subjects(&Planner::new(&swallowing, Some(&p1)));
    assert!(s.iter().any(|s| s.starts_with("interface")), "{s:?}");
}

/// One host, one NIC per rail subnet 10.k.0.0/16 (outside every pod subnet below).
fn arb_hosts() -> impl Strategy<Value = Vec<HostInventory>> {
    prop::collection::btree_map(0u32..64, prop::collection::btree_set(0u32..4, 1..4), 1..12)
        .prop_map(|m| {
            m.into_iter()
                .map(|(n, rails)| HostInventory {
                    name: format!("h{n:02}"),
                    nics: rails
                        .into_iter()
                        .map(|k| Nic {
                            name: format!("eth{k}"),
                            addresses: vec![format!("10.{k}.0.{}/16", n + 1).parse().unwrap()],
                            up: true,
                            ..Nic::default()
                        })
                        .collect(),
                })
                .collect()
        })
}

/// A network varying every field that places a block: the subnet's base and
/// prefix, the second family, both block widths, excludes and masterNets.
fn arb_spec() -> impl Strategy<Value = Network> {
    (
        0u8..3,
        18u8..=22,
        any::<bool>(),
        0u8..=3,
        0u8..=5,
        prop::collection::vec((0u32..32, 2u8..=6), 0..2),
        prop::option::of(prop::sample::subsequence(vec![0u32, 1, 2, 3], 1..=4)),
    )
        .prop_filter_map(
            "must be valid",
            |(base, prefix, dual, ib, hb, ex, masters)| {
                let subnet = format!("172.{}.0.0/{prefix}", 16 + base);
                let net: ipnet::Ipv4Net = subnet.parse().ok()?;
                let excludes: Vec<String> = ex
                    .iter()
                    .map(|(off, extra)| {
                        let p = (prefix + ib + extra).min(32);
                        let size = 1u32 << (32 - prefix);
                        let step = 1u32 << (32 - p);
                        let addr = u32::from(net.network()) + (off * step) % size;
                        format!("{}/{p}", std::net::Ipv4Addr::from(addr))
                    })
                    .collect();
                let spec = NetworkSpec {
                    subnet: if dual {
                        format!("{subnet},fd10::/{}", 48 + prefix - 16)
                    } else {
                        subnet
                    },
                    ipam: railyard_core::spec::IpamField::Text(format!(
                        r#"{{"hostBlock": {hb}, "interfaceBlock": {ib}, "excludeCIDRs": {}}}"#,
                        serde_json::to_string(&excludes).ok()?
                    )),
                    master_nets: masters
                        .unwrap_or_default()
                        .into_iter()
                        .map(|k| format!("10.{k}.0.0/16"))
                        .collect(),
                    ..NetworkSpec::default()
                };
                spec.validate("prop").ok()
            },
        )
}

/// Every block each host held, by host.
fn blocks(p: &Plan) -> BTreeMap<&str, Vec<(u32, ipnet::IpNet)>> {
    p.hosts
        .iter()
        .map(|(n, h)| {
            (
                n.as_str(),
                h.blocks.iter().map(|b| (b.interface, b.cidr)).collect(),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// If any block the old plan gave a host is not in the new plan (the
    /// new plan as the service would write it: adopted, then every host
    /// re-upserted), the change must have been reported as renumbering.
    #[test]
    fn every_moved_block_is_reported(old in arb_spec(), new in arb_spec(), hosts in arb_hosts()) {
        let before = plan(&old, &hosts, None, 0, 600);
        let mut p = Planner::new(&new, Some(&before));
        let reported = !p.renumbered().is_empty();
        p.register_rails(&hosts);
        for h in &hosts {
            p.upsert_host(h);
        }
        let after = p.into_plan();
        let (was, now) = (blocks(&before), blocks(&after));
        for (host, held) in &was {
            for b in held {
                let kept = now.get(host).is_some_and(|n| n.contains(b));
                prop_assert!(
                    kept || reported,
                    "{}'s block {:?} moved ({:?} -> {:?}) and nothing was reported",
                    host, b, was.get(host), now.get(host)
                );
            }
        }
        // And the identical spec never reports anything.
        prop_assert!(Planner::new(&old, Some(&before)).renumbered().is_empty());
    }
}
