//! The pod's devices through the engine: GPU alignment from the NICs' PCIe
//! roots as the daemon registered them, and rails that need the pod's own
//! VF. The policy itself is `railyard_core::attach` (tested there); this is
//! that the engine hands it the facts and allocates nothing when it refuses.

mod common;

use common::*;
use railyard_allocdb::DbError;
use railyard_core::align::GpuPlace;
use railyard_core::ipam::{codes, DeviceRail};
use railyard_core::Strategy;

fn four_rails() -> railyard_allocdb::NetworkConfig {
    let mut cfg = config(&[
        ("eth0", 0, "192.168.1.0/24"),
        ("eth1", 1, "192.168.65.0/24"),
        ("eth2", 2, "192.168.129.0/24"),
        ("eth3", 3, "192.168.193.0/24"),
    ]);
    cfg.strategy = Strategy::Topology;
    cfg
}

/// eth<i> under root pci0000:<i>0, rails 0-1 on NUMA node 0, 2-3 on node 1.
fn placed_nics() -> Vec<railyard_core::Nic> {
    let mut host = nics(&["eth0", "eth1", "eth2", "eth3"]);
    for (i, n) in host.iter_mut().enumerate() {
        n.pcie_root = Some(format!("pci0000:{i}0"));
        n.numa_node = Some(i32::from(i >= 2));
    }
    host
}

#[tokio::test]
async fn gpus_pick_the_nics_under_their_roots() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), four_rails()).await;
    let mut a = args("gpu");
    a.selection.gpus = ["pci0000:30", "pci0000:10"]
        .iter()
        .map(|r| GpuPlace {
            id: "gpu".into(),
            pcie_root: Some((*r).into()),
            numa_node: None,
        })
        .collect();
    let got = db.add(&a, &placed_nics(), &[]).await.unwrap();
    let nics: Vec<&str> = got.iter().map(|n| n.nic.as_str()).collect();
    assert_eq!(nics, ["eth1", "eth3"]);
}

#[tokio::test]
async fn a_rail_without_the_pods_vf_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), four_rails()).await;
    let mut a = args("vf");
    a.selection.device_rails = (0..4)
        .map(|rail| DeviceRail {
            rail,
            nics: if rail == 2 {
                vec![]
            } else {
                vec![format!("eth{rail}")]
            },
        })
        .collect();
    let e = db.add(&a, &placed_nics(), &[]).await.unwrap_err();
    assert!(
        matches!(&e, DbError::Select(s) if s.code() == codes::NO_NIC),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("eth2 (the pod holds no device of rail 2)"),
        "{e}"
    );
    assert_eq!(db.stats().attachments, 0);
    assert!(db.stats().blocks.iter().all(|b| b.allocated == 0));
}
