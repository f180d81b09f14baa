//! One behaviour for every [`PodResources`]: the in-memory table and the
//! gRPC client talking to the test server must answer alike. Each case takes
//! a fresh [`Memory`] to fill and a way to read it back through the
//! implementation under test.

use crate::{Memory, PodDevice, PodResources};

fn dev(resource: &str, id: &str, numa: &[i64]) -> PodDevice {
    PodDevice {
        resource: resource.into(),
        id: id.into(),
        numa_nodes: numa.to_vec(),
    }
}

/// Runs every case. `open` turns a filled table into the implementation
/// under test (for the gRPC client: a server serving it and a client).
pub fn run<P: PodResources>(open: impl Fn(&Memory) -> P) {
    an_unknown_pod_is_none(&open);
    devices_of_every_container_once_sorted(&open);
    other_pods_and_namespaces_are_not_mixed_in(&open);
    changes_are_seen_by_the_next_call(&open);
}

fn an_unknown_pod_is_none<P: PodResources>(open: &impl Fn(&Memory) -> P) {
    let pods = Memory::new();
    pods.set_pod("ml", "empty", vec![vec![]]);
    let p = open(&pods);
    assert_eq!(p.pod_devices("ml", "ghost").unwrap(), None);
    assert_eq!(p.pod_devices("ml", "empty").unwrap(), Some(vec![]));
}

fn devices_of_every_container_once_sorted<P: PodResources>(open: &impl Fn(&Memory) -> P) {
    let pods = Memory::new();
    let vf = dev("intel.com/rail1", "0000:3b:02.1", &[0]);
    let gpu = dev("nvidia.com/gpu", "0000:3c:00.0", &[0, 1]);
    pods.set_pod(
        "ml",
        "trainer",
        vec![vec![vf.clone(), gpu.clone()], vec![], vec![vf.clone()]],
    );
    let got = open(&pods).pod_devices("ml", "trainer").unwrap().unwrap();
    assert_eq!(
        got,
        vec![vf, gpu],
        "each device once, sorted, topology kept"
    );
}

fn other_pods_and_namespaces_are_not_mixed_in<P: PodResources>(open: &impl Fn(&Memory) -> P) {
    let pods = Memory::new();
    pods.set_pod("ml", "a", vec![vec![dev("r", "0000:01:00.1", &[])]]);
    pods.set_pod("dev", "a", vec![vec![dev("r", "0000:01:00.2", &[])]]);
    let p = open(&pods);
    let ids = |ns| -> Vec<String> {
        p.pod_devices(ns, "a")
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    };
    assert_eq!(ids("ml"), ["0000:01:00.1"]);
    assert_eq!(ids("dev"), ["0000:01:00.2"]);
}

fn changes_are_seen_by_the_next_call<P: PodResources>(open: &impl Fn(&Memory) -> P) {
    let pods = Memory::new();
    let p = open(&pods);
    assert_eq!(p.pod_devices("ml", "late").unwrap(), None);
    pods.set_pod("ml", "late", vec![vec![dev("r", "0000:01:00.3", &[1])]]);
    assert_eq!(
        p.pod_devices("ml", "late").unwrap().map(|v| v.len()),
        Some(1)
    );
    pods.remove_pod("ml", "late");
    assert_eq!(p.pod_devices("ml", "late").unwrap(), None);
}
