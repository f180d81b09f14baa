use proptest::prelude::*;
use railyard_core::{keys, BondMode, BondOptions, NetworkSpec};
use railyard_store::Range;

use super::*;

fn n(s: &str) -> IfName {
    s.parse().expect("valid interface name")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("valid CIDR")
}

/// A plain link, up, holding `addresses`.
fn nic(name: &str, addresses: &[&str]) -> RailLink {
    let mut addresses: Vec<IpNet> = addresses.iter().map(|a| net(a)).collect();
    addresses.sort_unstable();
    RailLink {
        name: n(name),
        kind: LinkKind::Other,
        controller: None,
        alias: None,
        up: true,
        addresses,
        default_route: false,
    }
}

fn bond(name: &str, slaves: &[&str]) -> Bond {
    Bond {
        name: n(name),
        interfaces: slaves.iter().map(|s| n(s)).collect(),
        mode: BondMode::ActiveBackup,
        options: BondOptions {
            miimon: Some(100),
            ..BondOptions::default()
        },
    }
}

fn wanted(network: &str, vlan: Option<u16>, bonds: Vec<Bond>, masters: &[&str]) -> WantedIfacer {
    WantedIfacer {
        network: network.to_owned(),
        ifacer: Ifacer {
            vlan_id: vlan,
            bonds,
        },
        master_nets: masters.iter().map(|m| net(m)).collect(),
    }
}

/// Plans, applies to the model, and checks the second plan is empty; returns
/// the first plan and the links after it.
fn converge(w: &[WantedIfacer], links: &[RailLink]) -> (IfacerPlan, LinkModel) {
    let first = plan_ifacers(w, links);
    let mut model = LinkModel::new(links);
    for s in &first.steps {
        model.apply(s);
    }
    let second = plan_ifacers(w, &model.links());
    assert!(
        second.steps.is_empty(),
        "not a fixed point: {:?} after {:?}",
        second.steps,
        first.steps
    );
    (first, model)
}

fn texts(p: &IfacerPlan) -> Vec<String> {
    p.steps.iter().map(ToString::to_string).collect()
}

#[test]
fn a_vlan_is_made_on_every_rail_nic_and_the_rail_address_moves_onto_it() {
    let links = [
        nic("rail0", &["10.0.0.5/16", "fd00:10::5/64"]),
        nic("rail1", &["10.1.0.5/16"]),
        nic("mgmt0", &["172.16.0.5/24"]),
    ];
    let w = [wanted(
        "net",
        Some(42),
        vec![],
        &["10.0.0.0/16", "10.1.0.0/16", "fd00:10::/64"],
    )];
    let (p, model) = converge(&w, &links);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(
        texts(&p),
        [
            "create vlan rail0.42 id 42 on rail0 (network net)",
            "move 10.0.0.5/16 from rail0 to rail0.42",
            "move fd00:10::5/64 from rail0 to rail0.42",
            "set rail0.42 up",
            "create vlan rail1.42 id 42 on rail1 (network net)",
            "move 10.1.0.5/16 from rail1 to rail1.42",
            "set rail1.42 up",
        ]
    );
    let v = &model.0[&n("rail0.42")];
    assert_eq!(v.alias.as_deref(), Some("railyard:ifacer net"));
    assert!(model.0[&n("rail0")].addresses.is_empty());
    assert_eq!(
        model.0[&n("mgmt0")].addresses.len(),
        1,
        "not a rail address"
    );
}

#[test]
fn a_dual_stack_rail_moves_whole_though_masternets_name_one_family() {
    let links = [
        nic("rail0", &["10.0.0.5/16", "fd00:10::5/64"]),
        nic("eth5", &["fd00:99::5/64"]),
    ];
    let w = [wanted("net", Some(42), vec![], &["10.0.0.0/16"])];
    let (p, model) = converge(&w, &links);
    assert_eq!(
        model.0[&n("rail0.42")].addresses,
        [net("10.0.0.5/16"), net("fd00:10::5/64")],
        "{:?}",
        p.steps
    );
    assert_eq!(model.0[&n("eth5")].addresses.len(), 1, "not a rail NIC");
    assert!(!model.0.contains_key(&n("eth5.42")));
}

#[test]
fn a_bond_takes_its_slaves_and_their_rail_address_then_gets_its_vlan() {
    let links = [
        nic("bond0a", &["10.0.0.5/16"]),
        nic("bond0b", &[]),
        nic("eth9", &["10.9.0.1/16"]),
    ];
    let w = [wanted(
        "net",
        Some(7),
        vec![bond("rail0", &["bond0a", "bond0b"])],
        &["10.0.0.0/16"],
    )];
    let (p, model) = converge(&w, &links);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(
        texts(&p),
        [
            "create bond rail0 mode active-backup miimon 100 (network net)",
            "move 10.0.0.5/16 from bond0a to rail0",
            "enslave bond0a to bond rail0",
            "enslave bond0b to bond rail0",
            "set rail0 up",
            "create vlan rail0.7 id 7 on rail0 (network net)",
            "move 10.0.0.5/16 from rail0 to rail0.7",
            "set rail0.7 up",
        ]
    );
    assert_eq!(model.0[&n("bond0b")].controller, Some(n("rail0")));
    assert_eq!(model.0[&n("rail0.7")].addresses, [net("10.0.0.5/16")]);
}

#[test]
fn an_address_put_back_on_the_old_link_moves_again_and_nothing_else_happens() {
    let mut vlan = nic("rail0.42", &["10.0.0.5/16"]);
    vlan.kind = LinkKind::Vlan {
        parent: Some(n("rail0")),
        id: 42,
    };
    vlan.alias = Some(ifacer_alias("net"));
    let links = [nic("rail0", &["10.0.0.5/16"]), vlan];
    let w = [wanted("net", Some(42), vec![], &["10.0.0.0/16"])];
    let (p, _) = converge(&w, &links);
    assert_eq!(texts(&p), ["move 10.0.0.5/16 from rail0 to rail0.42"]);

    let mut slave = nic("bond0a", &["10.0.0.5/16"]);
    slave.controller = Some(n("rail0"));
    let mut b = nic("rail0", &[]);
    b.kind = LinkKind::Bond;
    let links = [slave, b];
    let w = [wanted(
        "net",
        None,
        vec![bond("rail0", &["bond0a"])],
        &["10.0.0.0/16"],
    )];
    let (p, _) = converge(&w, &links);
    assert_eq!(texts(&p), ["move 10.0.0.5/16 from bond0a to rail0"]);
}

#[test]
fn a_slave_that_may_be_the_management_nic_is_never_enslaved() {
    let mut gw = nic("bond0b", &[]);
    gw.default_route = true;
    let links = [nic("bond0a", &["10.0.0.5/16", "172.16.0.5/24"]), gw];
    let w = [wanted(
        "net",
        None,
        vec![bond("rail0", &["bond0a", "bond0b"])],
        &["10.0.0.0/16"],
    )];
    let (p, model) = converge(&w, &links);
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s, LinkStep::Enslave { .. } | LinkStep::MoveAddress { .. })),
        "{:?}",
        p.steps
    );
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(p.problems[0].contains("172.16.0.5/24"), "{:?}", p.problems);
    assert!(p.problems[1].contains("default route"), "{:?}", p.problems);
    assert_eq!(model.0[&n("bond0a")].addresses.len(), 2);
}

#[test]
fn links_of_a_wanted_name_but_another_kind_are_conflicts_left_alone() {
    let links = [
        nic("rail0", &["10.0.0.5/16"]),
        nic("rail0.42", &[]),
        nic("rail1", &[]),
        nic("a", &[]),
        nic("b", &[]),
    ];
    let w = [wanted(
        "net",
        Some(42),
        vec![bond("rail1", &["a", "b"])],
        &["10.0.0.0/16"],
    )];
    let (p, _) = converge(&w, &links);
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(p.problems.iter().all(|x| x.contains("left alone")));

    // A VLAN of the right name on another parent is someone else's too.
    let mut other = nic("rail0.42", &[]);
    other.kind = LinkKind::Vlan {
        parent: Some(n("eth5")),
        id: 42,
    };
    let links = [nic("rail0", &["10.0.0.5/16"]), other];
    let w = [wanted("net", Some(42), vec![], &["10.0.0.0/16"])];
    let (p, _) = converge(&w, &links);
    assert!(p.steps.is_empty() && p.problems.len() == 1, "{p:?}");
}

#[test]
fn a_vlan_name_longer_than_ifnamsiz_is_a_problem_not_a_truncation() {
    let links = [nic("enp129s0f1np1", &["10.0.0.5/16"])];
    let w = [wanted("net", Some(4000), vec![], &["10.0.0.0/16"])];
    let (p, _) = converge(&w, &links);
    assert!(p.steps.is_empty());
    assert!(
        p.problems[0].contains("\"enp129s0f1np1.4000\" is longer than 15 bytes"),
        "{:?}",
        p.problems
    );
}

#[test]
fn the_first_network_by_name_wins_a_rail_two_ask_for_differently() {
    let links = [
        nic("rail0", &["10.0.0.5/16"]),
        nic("a", &[]),
        nic("b", &[]),
        nic("c", &[]),
    ];
    let w = [
        wanted(
            "net-b",
            Some(43),
            vec![bond("rail9", &["b", "c"])],
            &["10.0.0.0/16"],
        ),
        wanted(
            "net-a",
            Some(42),
            vec![bond("rail8", &["a", "b"])],
            &["10.0.0.0/16"],
        ),
    ];
    let (p, model) = converge(&w, &links);
    assert!(model.0.contains_key(&n("rail0.42")));
    assert!(!model.0.contains_key(&n("rail0.43")));
    assert!(model.0.contains_key(&n("rail8")));
    assert!(!model.0.contains_key(&n("rail9")));
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(p.problems.iter().all(|x| x.starts_with("network net-b")));
    // On the next pass too: the loser stays refused, nothing flips.
    let again = plan_ifacers(&w, &model.links());
    assert_eq!(again.problems.len(), 2, "{:?}", again.problems);
}

#[test]
fn a_changed_vlan_id_makes_the_new_vlan_on_the_old_ones_parent() {
    let mut old = nic("rail0.42", &["10.0.0.5/16"]);
    old.kind = LinkKind::Vlan {
        parent: Some(n("rail0")),
        id: 42,
    };
    old.alias = Some(ifacer_alias("net"));
    let links = [nic("rail0", &[]), old];
    let w = [wanted("net", Some(43), vec![], &["10.0.0.0/16"])];
    let (p, model) = converge(&w, &links);
    assert_eq!(
        texts(&p),
        [
            "create vlan rail0.43 id 43 on rail0 (network net)",
            "move 10.0.0.5/16 from rail0.42 to rail0.43",
            "set rail0.43 up",
        ]
    );
    assert!(model.0.contains_key(&n("rail0.42")), "never deleted");
}

#[test]
fn no_ifacer_plans_nothing() {
    let links = [nic("rail0", &["10.0.0.5/16"])];
    assert_eq!(plan_ifacers(&[], &links), IfacerPlan::default());
    let w = [wanted("net", None, vec![], &["10.0.0.0/16"])];
    assert_eq!(plan_ifacers(&w, &links), IfacerPlan::default());
}

// --- the specs, from the plan metas --------------------------------------

fn meta_kv(network: &str, spec: Option<NetworkSpec>) -> KeyValue {
    let meta = PlanMeta {
        network: network.to_owned(),
        spec,
        ..PlanMeta::default()
    };
    KeyValue {
        key: keys::plan_meta(network),
        value: serde_json::to_vec(&meta).expect("json"),
        create_revision: 3,
        mod_revision: 3,
        version: 1,
        lease: None,
    }
}

fn spec_with(ifacer: &str) -> NetworkSpec {
    serde_yaml::from_str(&format!(
        "subnet: 192.168.0.0/16\nipam: {{hostBlock: 6, interfaceBlock: 2}}\nmasterNets: [10.0.0.0/16]\n{ifacer}"
    ))
    .expect("spec")
}

#[test]
fn specs_follow_the_accepted_spec_in_the_plan_meta() {
    let mut specs = IfacerSpecs::default();
    let with = spec_with("ifacer: {vlanID: 42}");
    let snapshot = WatchUpdate::Snapshot(Range {
        kvs: vec![
            meta_kv("a", Some(with.clone())),
            meta_kv("b", Some(spec_with(""))),
        ],
        revision: 3,
    });
    assert!(specs.apply(&snapshot));
    let w = specs.wanted();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].network, "a");
    assert_eq!(w[0].ifacer.vlan_id, Some(42));
    assert_eq!(w[0].master_nets, [net("10.0.0.0/16")]);
    assert!(!specs.apply(&snapshot), "unchanged");

    // An unreadable meta keeps what was known; removing ifacer drops it.
    let mut broken = meta_kv("a", None);
    broken.value = b"{".to_vec();
    assert!(!specs.apply(&WatchUpdate::Events(vec![WatchEvent::Put(broken)])));
    assert_eq!(specs.wanted().len(), 1);
    let put = WatchEvent::Put(meta_kv("a", Some(spec_with(""))));
    assert!(specs.apply(&WatchUpdate::Events(vec![put])));
    assert!(specs.is_empty());
}

// --- the fixed point, on arbitrary hosts --------------------------------

const NAMES: [&str; 7] = [
    "rail0", "rail1", "bond0a", "bond0b", "eth0", "x", "rail0.42",
];
const ADDRESSES: [&str; 5] = [
    "10.0.0.5/16",
    "10.1.0.5/16",
    "172.16.0.5/24",
    "fd00:10::5/64",
    "10.0.0.6/16",
];
const MASTERS: [&str; 3] = ["10.0.0.0/16", "10.1.0.0/16", "fd00:10::/64"];

fn arb_link(name: &'static str) -> impl Strategy<Value = Option<RailLink>> {
    (
        any::<bool>(),
        0u8..4,
        prop::collection::vec(any::<bool>(), ADDRESSES.len()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(exists, kind, addrs, up, default_route, ours)| {
            exists.then(|| {
                let held: Vec<&str> = ADDRESSES
                    .iter()
                    .zip(&addrs)
                    .filter(|(_, on)| **on)
                    .map(|(a, _)| *a)
                    .collect();
                let mut l = nic(name, &held);
                l.kind = match kind {
                    0 | 1 => LinkKind::Other,
                    2 => LinkKind::Bond,
                    _ => LinkKind::Vlan {
                        parent: Some(n("rail0")),
                        id: 42,
                    },
                };
                l.up = up;
                l.default_route = default_route;
                l.alias = ours.then(|| ifacer_alias("n1"));
                l
            })
        })
}

fn arb_wanted(network: &'static str) -> impl Strategy<Value = WantedIfacer> {
    (
        prop::option::of(prop::sample::select(vec![42u16, 43, 7])),
        0u8..4,
        prop::collection::vec(any::<bool>(), MASTERS.len()),
    )
        .prop_map(move |(vlan, bonds, masters)| {
            let bonds = match bonds {
                0 => vec![],
                1 => vec![bond("rail0", &["bond0a", "bond0b"])],
                2 => vec![bond("rail1", &["eth0", "x"])],
                _ => vec![bond("rail0", &["bond0a", "x"])],
            };
            let masters: Vec<&str> = MASTERS
                .iter()
                .zip(&masters)
                .filter(|(_, on)| **on)
                .map(|(m, _)| *m)
                .collect();
            wanted(network, vlan, bonds, &masters)
        })
}

proptest! {
    #[test]
    fn applying_the_steps_reaches_a_fixed_point_and_never_enslaves_the_management_nic(
        links in (
            arb_link(NAMES[0]), arb_link(NAMES[1]), arb_link(NAMES[2]), arb_link(NAMES[3]),
            arb_link(NAMES[4]), arb_link(NAMES[5]), arb_link(NAMES[6]),
        ),
        w in prop::collection::vec(prop_oneof![arb_wanted("n1"), arb_wanted("n2")], 0..3),
    ) {
        let (a, b, c, d, e, f, g) = links;
        let links: Vec<RailLink> = [a, b, c, d, e, f, g].into_iter().flatten().collect();
        let (p, model) = converge(&w, &links);
        let before = LinkModel::new(&links);
        // Every address the host held, it still holds (on some link).
        for l in &links {
            for addr in &l.addresses {
                prop_assert!(
                    model.0.values().any(|m| m.addresses.contains(addr)),
                    "{addr} lost: {:?}", p.steps
                );
            }
        }
        for s in &p.steps {
            if let LinkStep::Enslave { slave, .. } = s {
                let was = &before.0[slave];
                prop_assert!(!was.default_route, "{s}");
                prop_assert!(was.controller.is_none(), "{s}");
            }
        }
        // No link disappears.
        for name in before.0.keys() {
            prop_assert!(model.0.contains_key(name));
        }
    }
}
