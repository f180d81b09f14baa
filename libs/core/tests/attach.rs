//! The attach policy: examples of each rule, then properties over random hosts.

use std::collections::HashSet;

use proptest::prelude::*;
use railyard_core::attach::{
    select_nics, wanted_class, Candidate, DeviceClass, DeviceMatch, SelectError,
};
use railyard_core::ipam::{codes, Selection};
use railyard_core::{Nic, Strategy as Policy};

fn nic(name: &str, rail: u32, speed: u32, numa: i32, load: u32) -> Candidate {
    Candidate {
        name: name.into(),
        interface: rail,
        speed_mbps: Some(speed),
        numa_node: Some(numa),
        pcie_root: None,
        vendor: Some("0x15b3".into()),
        product: Some("0x1019".into()),
        driver: Some("mlx5_core".into()),
        up: true,
        allocations: load,
        unusable: None,
    }
}

/// Four rails: eth2 is the fast one, eth3 the idle one, eth0/eth1 on NUMA node 1.
fn host() -> Vec<Candidate> {
    vec![
        nic("eth3", 3, 25_000, 0, 0),
        nic("eth0", 0, 100_000, 1, 5),
        nic("eth1", 1, 100_000, 1, 2),
        nic("eth2", 2, 200_000, 0, 9),
    ]
}

fn names(v: &[&Candidate]) -> Vec<String> {
    v.iter().map(|c| c.name.clone()).collect()
}

fn pick(s: Policy, target: &str, sel: Selection) -> Result<Vec<String>, SelectError> {
    let cands = host();
    select_nics(s, target, &cands, &sel, None).map(|v| names(&v))
}

fn sel() -> Selection {
    Selection::default()
}

#[test]
fn none_takes_every_rail_or_the_first_n() {
    assert_eq!(
        pick(Policy::None, "", sel()).unwrap(),
        ["eth0", "eth1", "eth2", "eth3"]
    );
    let two = Selection {
        nics: Some(2),
        ..sel()
    };
    assert_eq!(pick(Policy::None, "", two).unwrap(), ["eth0", "eth1"]);
}

#[test]
fn masters_takes_exactly_the_named_nics_in_the_given_order() {
    assert_eq!(
        pick(Policy::Masters, "eth2, eth0", sel()).unwrap(),
        ["eth2", "eth0"]
    );
    // The pod narrows the network's list...
    let pod = Selection {
        masters: vec!["eth0".into()],
        ..sel()
    };
    assert_eq!(pick(Policy::Masters, "eth2,eth0", pod).unwrap(), ["eth0"]);
    // ...but cannot widen it.
    let wide = Selection {
        masters: vec!["eth1".into()],
        ..sel()
    };
    let e = pick(Policy::Masters, "eth2,eth0", wide).unwrap_err();
    assert!(
        matches!(e, SelectError::NotAllowed { ref name, .. } if name == "eth1"),
        "{e}"
    );
    assert_eq!(e.code(), codes::NO_NIC);
}

#[test]
fn masters_names_an_unknown_or_down_nic() {
    let typo = Selection {
        masters: vec!["eth9".into()],
        ..sel()
    };
    let e = pick(Policy::Masters, "", typo).unwrap_err();
    assert!(e.to_string().contains("\"eth9\""), "{e}");
    assert!(e.to_string().contains("eth0, eth1, eth2, eth3"), "{e}");

    let mut cands = host();
    cands[1].up = false; // eth0
    let e = select_nics(Policy::Masters, "eth0,eth1", &cands, &sel(), None).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("eth0 (down)"), "{msg}");
    assert!(
        msg.contains("asked for 2 NICs of eth0, eth1, 1 available (eth1)"),
        "{msg}"
    );
    // A NIC the network lists but this host lacks is named too.
    let e = pick(Policy::Masters, "eth0,eth7", sel()).unwrap_err();
    assert!(
        e.to_string().contains("eth7 (no block on this host)"),
        "{e}"
    );
    // With a count that the remaining NICs meet, it succeeds.
    let one = Selection {
        nics: Some(1),
        ..sel()
    };
    assert_eq!(pick(Policy::Masters, "eth7,eth0", one).unwrap(), ["eth0"]);
}

#[test]
fn masters_without_any_name_is_a_config_error() {
    let e = pick(Policy::Masters, " , ", sel()).unwrap_err();
    assert_eq!(e.code(), codes::INVALID_CONFIG, "{e}");
}

fn class(rules: Vec<DeviceMatch>) -> DeviceClass {
    DeviceClass {
        name: "fast".into(),
        rules,
    }
}

#[test]
fn dev_class_filters_then_counts() {
    let mut cands = host();
    cands[0].vendor = Some("8086".into()); // eth3 is an Intel NIC
    let c = class(vec![DeviceMatch {
        vendor: Some("15B3".into()),
        ..Default::default()
    }]);
    let got = select_nics(Policy::DevClass, "fast", &cands, &sel(), Some(&c)).unwrap();
    assert_eq!(names(&got), ["eth0", "eth1", "eth2"]);
    let three = Selection {
        nics: Some(4),
        ..sel()
    };
    let e = select_nics(Policy::DevClass, "fast", &cands, &three, Some(&c)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("attach policy devClass (DeviceClass fast): asked for 4 NICs, 3 available"),
        "{msg}"
    );
    assert!(msg.contains("eth3 (not in DeviceClass fast)"), "{msg}");

    let speedy = class(vec![DeviceMatch {
        min_speed_mbps: Some(150_000),
        ..Default::default()
    }]);
    let got = select_nics(Policy::DevClass, "fast", &cands, &sel(), Some(&speedy)).unwrap();
    assert_eq!(names(&got), ["eth2"]);
}

#[test]
fn dev_class_must_be_the_one_asked_for() {
    let cands = host();
    let missing = select_nics(Policy::DevClass, "fast", &cands, &sel(), None).unwrap_err();
    assert_eq!(missing.code(), codes::INVALID_CONFIG);
    let other = DeviceClass {
        name: "slow".into(),
        rules: vec![DeviceMatch::default()],
    };
    assert!(select_nics(Policy::DevClass, "fast", &cands, &sel(), Some(&other)).is_err());
    // A pod cannot swap the network's class for another.
    let swap = Selection {
        class: Some("slow".into()),
        ..sel()
    };
    assert!(wanted_class(Policy::DevClass, "fast", &swap).is_err());
    // Under another policy a pod's class narrows.
    let narrow = Selection {
        class: Some("fast".into()),
        ..sel()
    };
    assert_eq!(
        wanted_class(Policy::Balance, "", &narrow).unwrap(),
        Some("fast")
    );
    let c = class(vec![DeviceMatch {
        products: vec!["1019".into()],
        driver: Some("mlx5_core".into()),
        ..Default::default()
    }]);
    assert_eq!(
        select_nics(Policy::Balance, "", &cands, &narrow, Some(&c))
            .unwrap()
            .len(),
        4
    );
    // A class without rules grants nothing.
    let empty = class(vec![]);
    assert!(select_nics(Policy::DevClass, "fast", &cands, &sel(), Some(&empty)).is_err());
}

#[test]
fn device_class_loads_from_a_crd_spec() {
    let c: DeviceClass = serde_json::from_str(
        r#"{"name":"fast","ids":[{"vendor":"15b3","products":["1019","101d"],"minSpeedMbps":100000}]}"#,
    )
    .unwrap();
    assert_eq!(c.rules[0].min_speed_mbps, Some(100_000));
    assert!(c.matches(&nic("eth0", 0, 100_000, 0, 0)));
    assert!(!c.matches(&nic("eth0", 0, 25_000, 0, 0)));
}

#[test]
fn perf_prefers_speed_then_load_then_rail() {
    assert_eq!(
        pick(Policy::Perf, "", sel()).unwrap(),
        ["eth2", "eth1", "eth0", "eth3"]
    );
    let one = Selection {
        nics: Some(1),
        ..sel()
    };
    assert_eq!(pick(Policy::Perf, "", one).unwrap(), ["eth2"]);
}

#[test]
fn balance_prefers_the_least_loaded() {
    let two = Selection {
        nics: Some(2),
        ..sel()
    };
    assert_eq!(pick(Policy::Balance, "", two).unwrap(), ["eth3", "eth1"]);
}

#[test]
fn topology_prefers_the_requested_numa_node() {
    let want = Selection {
        numa: Some(0),
        nics: Some(3),
        ..sel()
    };
    assert_eq!(
        pick(Policy::Topology, "", want).unwrap(),
        ["eth2", "eth3", "eth0"]
    );
    let node1 = Selection {
        numa: Some(1),
        ..sel()
    };
    assert_eq!(
        pick(Policy::Topology, "", node1).unwrap(),
        ["eth0", "eth1", "eth2", "eth3"]
    );
}

#[test]
fn pod_masters_restrict_any_policy() {
    let sel = Selection {
        masters: vec!["eth3".into(), "eth2".into()],
        nics: Some(1),
        ..sel()
    };
    assert_eq!(pick(Policy::Perf, "", sel.clone()).unwrap(), ["eth2"]);
    assert_eq!(pick(Policy::Balance, "", sel).unwrap(), ["eth3"]);
}

#[test]
fn unsatisfiable_requests_select_nothing_and_say_why() {
    let five = Selection {
        nics: Some(5),
        ..sel()
    };
    let e = pick(Policy::Balance, "", five).unwrap_err();
    assert_eq!(
        e.to_string(),
        "attach policy balance: asked for 5 NICs, 4 available (eth3, eth1, eth0, eth2)"
    );
    let e = select_nics(Policy::None, "", &[], &sel(), None).unwrap_err();
    assert!(
        e.to_string().contains("no NIC of this host has a block"),
        "{e}"
    );
    let mut down = host();
    down.iter_mut().for_each(|c| c.up = false);
    let e = select_nics(Policy::None, "", &down, &sel(), None).unwrap_err();
    assert!(
        e.to_string().contains("asked for every NIC, 0 available"),
        "{e}"
    );
    let zero = Selection {
        nics: Some(0),
        ..sel()
    };
    assert_eq!(
        pick(Policy::None, "", zero).unwrap_err().code(),
        codes::INVALID_CONFIG
    );
    let mut twice = host();
    twice[0].name = "eth0".into();
    assert!(select_nics(Policy::None, "", &twice, &sel(), None).is_err());
}

#[test]
fn candidate_from_a_discovered_nic() {
    let n = Nic {
        name: "ens1".into(),
        speed_mbps: Some(400_000),
        numa_node: Some(1),
        up: false,
        ..Nic::default()
    };
    let c = Candidate::from_nic(&n, 4, 7);
    assert_eq!(
        (c.interface, c.allocations, c.up, c.speed_mbps),
        (4, 7, false, Some(400_000))
    );
}

// ---- properties ----

fn strategy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::None),
        Just(Policy::Masters),
        Just(Policy::DevClass),
        Just(Policy::Perf),
        Just(Policy::Balance),
        Just(Policy::Topology),
    ]
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (
            0u32..8,
            prop::option::of(prop::sample::select(vec![
                10_000u32, 25_000, 100_000, 200_000,
            ])),
            prop::option::of(0i32..2),
            prop::sample::select(vec!["15b3", "8086"]),
            any::<bool>(),
            0u32..5,
        ),
        0..7,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (rail, speed, numa, vendor, up, load))| Candidate {
                name: format!("eth{i}"),
                interface: rail,
                speed_mbps: speed,
                numa_node: numa,
                vendor: Some(vendor.into()),
                up,
                allocations: load,
                ..Candidate::default()
            })
            .collect()
    })
}

fn selection() -> impl Strategy<Value = Selection> {
    (
        prop::option::of(1u32..6),
        prop::collection::vec(0usize..8, 0..4),
        prop::option::of(0i32..2),
    )
        .prop_map(|(nics, masters, numa)| Selection {
            nics,
            masters: masters.into_iter().map(|i| format!("eth{i}")).collect(),
            class: None,
            numa,
            ips: Vec::new(),
            ..Selection::default()
        })
}

/// The default asks for every NIC with a block: one that is down or lost an
/// address the plan needs fails the request (naming it) instead of shrinking it.
#[test]
fn every_nic_means_every_planned_nic_even_when_one_is_down_or_unusable() {
    let mut h = host();
    h[1].up = false; // eth0
    let e = select_nics(Policy::None, "", &h, &sel(), None).unwrap_err();
    assert_eq!(e.code(), codes::NO_NIC);
    assert_eq!(
        e.to_string(),
        "attach policy none: asked for every NIC, 3 available (eth1, eth2, eth3); left out: eth0 (down)"
    );
    let mut h = host();
    h[2].unusable = Some("no IPv6 address".into()); // eth1
    let e = select_nics(Policy::Balance, "", &h, &sel(), None).unwrap_err();
    assert!(e.to_string().contains("eth1 (no IPv6 address)"), "{e}");
    // A count or a name list that avoids the NIC is fine: a subset was asked.
    let two = Selection {
        nics: Some(2),
        ..sel()
    };
    assert_eq!(
        names(&select_nics(Policy::None, "", &h, &two, None).unwrap()),
        ["eth0", "eth2"]
    );
    assert!(select_nics(Policy::Masters, "eth2,eth3", &h, &sel(), None).is_ok());
    assert!(select_nics(Policy::Masters, "eth1,eth3", &h, &sel(), None).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn selections_obey_every_rule(
        s in strategy(),
        cands in candidates(),
        sel in selection(),
        target in prop::sample::select(vec!["", "eth0,eth1", "eth2", "eth1,eth3,eth5"]),
        seed in any::<u64>(),
    ) {
        let target = if s == Policy::DevClass { "fast" } else { target };
        let class = DeviceClass {
            name: "fast".into(),
            rules: vec![DeviceMatch { vendor: Some("15b3".into()), ..Default::default() }],
        };
        let result = select_nics(s, target, &cands, &sel, Some(&class));

        // Deterministic and independent of the candidates' order.
        let mut shuffled = cands.clone();
        let n = shuffled.len();
        if n > 1 {
            for i in 0..n {
                shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n);
            }
        }
        let again = select_nics(s, target, &shuffled, &sel, Some(&class));
        prop_assert_eq!(result.clone().map(|v| names(&v)), again.map(|v| names(&v)));

        let Ok(got) = result else { return Ok(()); };
        let got_names = names(&got);
        let unique: HashSet<&String> = got_names.iter().collect();
        prop_assert_eq!(unique.len(), got.len(), "no duplicates");
        prop_assert!(!got.is_empty());
        for c in &got {
            prop_assert!(cands.contains(c), "a subset of the candidates");
            prop_assert!(c.up, "never a down NIC");
            if s == Policy::DevClass {
                prop_assert!(class.matches(c));
            }
            if !sel.masters.is_empty() {
                prop_assert!(sel.masters.contains(&c.name), "pod masters restrict");
            }
            if s == Policy::Masters && sel.masters.is_empty() {
                prop_assert!(target.split(',').any(|t| t == c.name), "network masters restrict");
            }
        }
        if let Some(n) = sel.nics {
            prop_assert_eq!(got.len(), n as usize, "exactly the count asked");
        } else if sel.masters.is_empty() && s != Policy::Masters {
            let eligible = cands.iter().filter(|c| c.up && (s != Policy::DevClass || class.matches(c))).count();
            prop_assert_eq!(got.len(), eligible, "without a count, every eligible NIC");
        }
        for w in got.windows(2) {
            let (a, b) = (w[0], w[1]);
            let rail = (a.interface, &a.name) < (b.interface, &b.name);
            match s {
                Policy::None | Policy::DevClass => prop_assert!(rail),
                Policy::Perf => {
                    let (sa, sb) = (a.speed_mbps.unwrap_or(0), b.speed_mbps.unwrap_or(0));
                    let load = a.allocations < b.allocations || (a.allocations == b.allocations && rail);
                    prop_assert!(sa > sb || (sa == sb && load));
                }
                Policy::Balance => {
                    prop_assert!(a.allocations < b.allocations || (a.allocations == b.allocations && rail));
                }
                Policy::Topology => {
                    let off = |c: &Candidate| sel.numa.is_some() && c.numa_node != sel.numa;
                    prop_assert!(!off(a) || off(b), "requested NUMA node first");
                    if off(a) == off(b) { prop_assert!(rail); }
                }
                Policy::Masters => {}
            }
        }
        // Ranked policies take the best: nothing left out beats what was picked.
        if s == Policy::Balance && sel.masters.is_empty() {
            let worst = got.iter().map(|c| c.allocations).max().unwrap_or(0);
            for c in cands.iter().filter(|c| c.up && !got_names.contains(&c.name)) {
                prop_assert!(c.allocations >= worst);
            }
        }
    }

    #[test]
    fn without_a_count_or_names_a_down_nic_fails_the_request(
        cands in candidates(),
        s in strategy(),
    ) {
        let sel = Selection::default();
        let r = select_nics(s, "", &cands, &sel, None);
        if s != Policy::Masters && s != Policy::DevClass && cands.iter().any(|c| !c.up) {
            prop_assert!(r.is_err(), "{:?} with a down NIC gave {:?}", s, r.map(|v| names(&v)));
        }
    }

    #[test]
    fn a_refusal_means_the_request_really_cannot_be_met(
        cands in candidates(),
        nics in 1u32..8,
    ) {
        let sel = Selection { nics: Some(nics), ..Selection::default() };
        let up = cands.iter().filter(|c| c.up).count();
        let r = select_nics(Policy::Balance, "", &cands, &sel, None);
        prop_assert_eq!(r.is_ok(), up >= nics as usize);
        if let Err(e) = r {
            prop_assert_eq!(e.code(), codes::NO_NIC);
            let asked = format!("asked for {nics} NIC");
            prop_assert!(e.to_string().contains(&asked));
        }
    }
}
