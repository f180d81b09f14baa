//! GPU-aligned choice and per-rail devices in the attach policy: examples on a
//! DGX-like host, then properties over random hosts and GPUs.

use proptest::prelude::*;
use railyard_core::align::{alignment, Alignment, GpuPlace};
use railyard_core::attach::{select_nics, Candidate};
use railyard_core::ipam::{codes, DeviceRail, Selection};
use railyard_core::Strategy as Policy;

/// Eight rails, one NIC per PCIe root; roots 0-3 on NUMA node 0, 4-7 on node 1.
fn dgx() -> Vec<Candidate> {
    (0..8)
        .map(|i| Candidate {
            name: format!("eth{i}"),
            interface: i,
            numa_node: Some(i32::from(i >= 4)),
            pcie_root: Some(format!("pci0000:{:02x}", 0x10 * (i + 1))),
            up: true,
            ..Candidate::default()
        })
        .collect()
}

fn gpu(root: u32, numa: i32) -> GpuPlace {
    GpuPlace {
        id: format!("0000:{:02x}:00.0", 0x10 * (root + 1) + 1),
        pcie_root: Some(format!("pci0000:{:02x}", 0x10 * (root + 1))),
        numa_node: Some(numa),
    }
}

fn with_gpus(gpus: Vec<GpuPlace>) -> Selection {
    Selection {
        gpus,
        ..Selection::default()
    }
}

fn pick(cands: &[Candidate], sel: &Selection) -> Result<Vec<String>, String> {
    select_nics(Policy::Topology, "", cands, sel, None)
        .map(|v| v.iter().map(|c| c.name.clone()).collect())
        .map_err(|e| e.to_string())
}

#[test]
fn a_two_gpu_pod_gets_the_nics_under_its_gpus_pcie_roots() {
    let sel = with_gpus(vec![gpu(5, 1), gpu(2, 0)]);
    assert_eq!(pick(&dgx(), &sel).unwrap(), ["eth2", "eth5"]);
}

#[test]
fn without_a_shared_root_the_gpus_numa_node_decides() {
    // The GPU's root has no NIC: every NIC of its NUMA node.
    let mut far = gpu(9, 1);
    far.pcie_root = Some("pci0000:ee".into());
    assert_eq!(
        pick(&dgx(), &with_gpus(vec![far.clone()])).unwrap(),
        ["eth4", "eth5", "eth6", "eth7"]
    );
    // Nothing known about the GPU: every NIC, as without GPUs.
    let unknown = GpuPlace {
        id: "GPU-3f1c".into(),
        ..GpuPlace::default()
    };
    assert_eq!(pick(&dgx(), &with_gpus(vec![unknown])).unwrap().len(), 8);
    // A count takes the closest first: the root, then its NUMA node's rails.
    let three = Selection {
        nics: Some(3),
        ..with_gpus(vec![gpu(6, 1)])
    };
    assert_eq!(pick(&dgx(), &three).unwrap(), ["eth6", "eth4", "eth5"]);
}

#[test]
fn a_numa_cni_arg_overrides_the_gpus() {
    let sel = Selection {
        numa: Some(0),
        nics: Some(1),
        ..with_gpus(vec![gpu(6, 1)])
    };
    assert_eq!(pick(&dgx(), &sel).unwrap(), ["eth0"]);
}

#[test]
fn a_down_aligned_nic_fails_the_request_naming_it() {
    let mut host = dgx();
    host[2].up = false;
    let e = pick(&host, &with_gpus(vec![gpu(2, 0), gpu(5, 1)])).unwrap_err();
    assert_eq!(
        e,
        "attach policy topology (aligned with 2 GPUs): asked for every NIC, 1 available \
         (eth5); left out: eth0 (gpu-numa), eth1 (gpu-numa), eth2 (down), eth3 (gpu-numa), \
         eth4 (gpu-numa), eth6 (gpu-numa), eth7 (gpu-numa)"
    );
}

#[test]
fn rails_that_need_a_device_take_only_nics_the_pod_holds_one_on() {
    let host = dgx();
    let sel = Selection {
        device_rails: vec![
            DeviceRail {
                rail: 1,
                nics: vec!["eth1".into()],
            },
            DeviceRail {
                rail: 3,
                nics: vec![],
            },
        ],
        ..Selection::default()
    };
    let e = select_nics(Policy::None, "", &host, &sel, None).unwrap_err();
    assert_eq!(e.code(), codes::NO_NIC);
    assert!(
        e.to_string()
            .contains("eth3 (the pod holds no device of rail 3)"),
        "{e}"
    );
    let two = Selection {
        nics: Some(2),
        masters: vec!["eth1".into(), "eth3".into()],
        ..sel.clone()
    };
    let e = select_nics(Policy::None, "", &host, &two, None).unwrap_err();
    assert!(
        e.to_string().contains("eth3 (the pod holds no device"),
        "{e}"
    );
    let ok = Selection {
        masters: vec!["eth1".into(), "eth2".into()],
        ..sel
    };
    let got = select_nics(Policy::None, "", &host, &ok, None).unwrap();
    assert_eq!(got.len(), 2);
}

fn host() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (
            prop::option::of(0u32..4),
            prop::option::of(0i32..2),
            prop::bool::weighted(0.9),
        ),
        1..9,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (root, numa, up))| Candidate {
                name: format!("eth{i}"),
                interface: i as u32,
                numa_node: numa,
                pcie_root: root.map(|r| format!("pci0000:{r:02x}")),
                up,
                ..Candidate::default()
            })
            .collect()
    })
}

fn gpus() -> impl Strategy<Value = Vec<GpuPlace>> {
    prop::collection::vec((prop::option::of(0u32..6), prop::option::of(0i32..2)), 1..4).prop_map(
        |v| {
            v.into_iter()
                .map(|(root, numa)| GpuPlace {
                    id: "gpu".into(),
                    pcie_root: root.map(|r| format!("pci0000:{r:02x}")),
                    numa_node: numa,
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Nothing left out is closer to the GPUs than what was picked, the default
    /// takes exactly the closest tier, and a count takes exactly that many.
    #[test]
    fn the_closest_nics_are_taken_first(
        cands in host(),
        gpus in gpus(),
        nics in prop::option::of(1u32..5),
    ) {
        let sel = Selection { nics, gpus: gpus.clone(), ..Selection::default() };
        let at = |c: &Candidate| alignment(&gpus, c.pcie_root.as_deref(), c.numa_node);
        let best = cands.iter().map(at).min().unwrap_or(Alignment::Unaligned);
        let tier: Vec<&Candidate> = cands.iter().filter(|c| at(c) == best).collect();
        let Ok(got) = select_nics(Policy::Topology, "", &cands, &sel, None) else {
            match nics {
                Some(n) => prop_assert!(cands.iter().filter(|c| c.up).count() < n as usize),
                None => prop_assert!(tier.iter().any(|c| !c.up), "refused with the tier up"),
            }
            return Ok(());
        };
        let worst = got.iter().map(|c| at(c)).max().unwrap_or(Alignment::Unaligned);
        for c in cands.iter().filter(|c| c.up && !got.iter().any(|g| g.name == c.name)) {
            prop_assert!(at(c) >= worst, "{} left out but closer", c.name);
        }
        match nics {
            Some(n) => prop_assert_eq!(got.len(), n as usize),
            None => prop_assert_eq!(got.len(), tier.len()),
        }
    }

    /// A rail listed as needing a device never gets a NIC the pod holds none on.
    #[test]
    fn device_rails_are_never_served_without_the_device(
        cands in host(),
        holders in prop::collection::btree_map(0u32..8, prop::collection::vec(0usize..8, 0..2), 0..4),
        nics in prop::option::of(1u32..4),
    ) {
        let device_rails: Vec<DeviceRail> = holders
            .into_iter()
            .map(|(rail, v)| DeviceRail { rail, nics: v.into_iter().map(|i| format!("eth{i}")).collect() })
            .collect();
        let sel = Selection { nics, device_rails: device_rails.clone(), ..Selection::default() };
        if let Ok(got) = select_nics(Policy::None, "", &cands, &sel, None) {
            for c in got {
                if let Some(d) = device_rails.iter().find(|d| d.rail == c.interface) {
                    prop_assert!(d.nics.contains(&c.name));
                }
            }
        }
    }
}
