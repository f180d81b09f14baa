//! The read-only views and DeviceClass: CRD shapes, what to apply and delete.

use super::*;

#[test]
fn device_class_converts_to_the_policy_type() {
    let class = DeviceClass::new(
        "fast",
        DeviceClassSpec {
            rules: vec![DeviceMatchSpec {
                vendor: Some("0x15b3".into()),
                products: vec!["1017".into()],
                driver: Some("mlx5_core".into()),
                min_speed_mbps: Some(100_000),
            }],
        },
    );
    let core = class.to_core();
    assert_eq!(core.name, "fast");
    let nic = railyard_core::attach::Candidate {
        name: "eth1".into(),
        vendor: Some("15b3".into()),
        product: Some("0x1017".into()),
        driver: Some("mlx5_core".into()),
        speed_mbps: Some(200_000),
        up: true,
        ..Default::default()
    };
    assert!(core.matches(&nic));
    let slow = railyard_core::attach::Candidate {
        speed_mbps: Some(25_000),
        ..nic
    };
    assert!(!core.matches(&slow));
}

#[test]
fn views_mirror_inventory_and_plan() {
    let host = HostInventory {
        name: "node-1".into(),
        nics: vec![Nic {
            name: "eth1".into(),
            addresses: vec!["10.0.1.5/24".parse().unwrap()],
            speed_mbps: Some(100_000),
            up: true,
            ..Nic::default()
        }],
    };
    let view = HostInterfaceSpec::from(&host);
    assert_eq!(view.host_name, "node-1");
    assert_eq!(view.interfaces[0].addresses, vec!["10.0.1.5/24"]);
    assert_eq!(view.interfaces[0].speed_mbps, Some(100_000));

    let net = validated(&sample());
    let plan = railyard_core::plan(&net, std::slice::from_ref(&host), None, 0, 600);
    let cidr = CidrSpec::from(&plan);
    assert_eq!(cidr.network, "multi-nic-sample");
    assert_eq!(cidr.interfaces.len(), 1);
    assert_eq!(cidr.interfaces[0].net_address, "10.0.1.0/24");
    assert_eq!(cidr.hosts[0].host, "node-1");
    assert_eq!(cidr.hosts[0].blocks[0].nic_address, "10.0.1.5");
    assert_eq!(cidr.hosts[0].blocks[0].cidr, "192.168.0.0/24");
}

// ---------------------------------------------------------------------------
// HostInterface and CIDR views: what to apply and delete

fn put(key: &str, value: &impl serde::Serialize) -> WatchEvent {
    WatchEvent::Put(kv(key, &serde_json::to_vec(value).unwrap(), 10))
}

fn gone(key: &str) -> WatchEvent {
    WatchEvent::Delete {
        key: key.into(),
        mod_revision: 11,
    }
}

fn snapshot(events: Vec<WatchEvent>) -> WatchUpdate {
    let kvs = events
        .into_iter()
        .filter_map(|e| match e {
            WatchEvent::Put(kv) => Some(kv),
            WatchEvent::Delete { .. } => None,
        })
        .collect();
    WatchUpdate::Snapshot(railyard_store::Range { kvs, revision: 10 })
}

fn inventory(name: &str, third_octet: u8) -> HostInventory {
    HostInventory {
        name: name.into(),
        nics: vec![Nic {
            name: "eth1".into(),
            addresses: vec![format!("10.0.1.{third_octet}/24").parse().unwrap()],
            up: true,
            ..Nic::default()
        }],
    }
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What the controller would hold after applying everything `mirror` shows.
fn applied_hosts(mirror: &views::Mirror) -> BTreeMap<String, HostInterfaceSpec> {
    mirror
        .host_names()
        .map(|n| (n.to_string(), mirror.host_view(n).unwrap()))
        .collect()
}

#[test]
fn a_burst_applies_only_the_views_that_changed() {
    let mut mirror = views::Mirror::default();
    let start = snapshot(
        (1..=3)
            .map(|i| {
                put(
                    &keys::host(&format!("node-{i}")),
                    &inventory(&format!("node-{i}"), i),
                )
            })
            .collect(),
    );
    assert_eq!(
        mirror.follow_hosts(&start),
        names(&["node-1", "node-2", "node-3"])
    );
    let applied = applied_hosts(&mirror);
    let everything = names(&["node-1", "node-2", "node-3"]);
    assert!(
        views::decide(&everything, |n| mirror.host_view(n), &applied).is_empty(),
        "nothing changed, nothing to send"
    );

    // One batch: node-4 joins, node-1 re-registers unchanged, node-2 leaves,
    // node-3 changes.
    let batch = WatchUpdate::Events(vec![
        put(&keys::host("node-4"), &inventory("node-4", 4)),
        put(&keys::host("node-1"), &inventory("node-1", 1)),
        gone(&keys::host("node-2")),
        put(&keys::host("node-3"), &inventory("node-3", 33)),
    ]);
    let touched = mirror.follow_hosts(&batch);
    assert_eq!(touched, names(&["node-1", "node-2", "node-3", "node-4"]));
    let changes = views::decide(&touched, |n| mirror.host_view(n), &applied);
    let applied_names: Vec<&str> = changes.apply.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(applied_names, vec!["node-3", "node-4"]);
    assert_eq!(
        changes.apply[0].1.interfaces[0].addresses,
        vec!["10.0.1.33/24"]
    );
    assert_eq!(changes.delete, vec!["node-2"]);
    assert!(changes.unnamable.is_empty());
}

#[test]
fn a_snapshot_touches_hosts_before_and_after_it() {
    let mut mirror = views::Mirror::default();
    mirror.follow_hosts(&snapshot(vec![put(
        &keys::host("old"),
        &inventory("old", 1),
    )]));
    // After a compaction or reconnect: "old" left while nobody watched.
    let touched = mirror.follow_hosts(&snapshot(vec![put(
        &keys::host("new"),
        &inventory("new", 2),
    )]));
    assert_eq!(touched, names(&["new", "old"]));
    assert!(mirror.host_view("old").is_none());
    let applied = BTreeMap::from([("old".to_string(), HostInterfaceSpec::default())]);
    let changes = views::decide(&touched, |n| mirror.host_view(n), &applied);
    assert_eq!(changes.delete, vec!["old"]);
    assert_eq!(changes.apply.len(), 1);
}

#[test]
fn an_unreadable_registration_keeps_its_last_view() {
    let mut mirror = views::Mirror::default();
    mirror.follow_hosts(&snapshot(vec![put(
        &keys::host("node-1"),
        &inventory("node-1", 1),
    )]));
    let before = mirror.host_view("node-1");
    mirror.follow_hosts(&WatchUpdate::Events(vec![WatchEvent::Put(kv(
        &keys::host("node-1"),
        b"{not json",
        12,
    ))]));
    assert_eq!(mirror.host_view("node-1"), before);
    assert!(before.is_some());
}

#[test]
fn hosts_whose_names_cannot_be_object_names_get_no_view() {
    let mut mirror = views::Mirror::default();
    let touched = mirror.follow_hosts(&snapshot(vec![put(
        &keys::host("Node_1"),
        &inventory("Node_1", 1),
    )]));
    let changes = views::decide(&touched, |n| mirror.host_view(n), &BTreeMap::new());
    assert!(changes.apply.is_empty());
    assert_eq!(changes.unnamable.len(), 1);
    let (name, reason) = &changes.unnamable[0];
    assert_eq!(name, "Node_1");
    assert!(
        reason.contains("metadata.name") && reason.contains("\"Node_1\""),
        "{reason}"
    );
}

#[test]
fn the_cidr_view_follows_the_plan_keys() {
    let net = validated(&sample());
    let hosts = vec![inventory("node-1", 5), inventory("node-2", 6)];
    let plan = railyard_core::plan(&net, &hosts, None, 0, 600);
    let (meta, host_plans) = plan.split();
    let name = "multi-nic-sample";
    let mut events = vec![put(&keys::plan_meta(name), &meta)];
    events.extend(
        host_plans
            .iter()
            .map(|(h, p)| put(&keys::plan_host(name, h), p)),
    );
    // Keys of another shape under the prefix are not plan parts.
    events.push(put(&format!("{}{name}/other", keys::PLANS), &json!({})));
    let mut mirror = views::Mirror::default();
    assert_eq!(mirror.follow_plans(&snapshot(events)), names(&[name]));
    assert_eq!(mirror.cidr_view(name), Some(CidrSpec::from(&plan)));

    // One host's entry goes (its grace period ran out): one CIDR apply.
    let applied = BTreeMap::from([(name.to_string(), CidrSpec::from(&plan))]);
    let touched = mirror.follow_plans(&WatchUpdate::Events(vec![gone(&keys::plan_host(
        name, "node-2",
    ))]));
    let changes = views::decide(&touched, |n| mirror.cidr_view(n), &applied);
    assert_eq!(changes.apply.len(), 1);
    assert_eq!(changes.apply[0].1.hosts.len(), 1);
    assert_eq!(changes.apply[0].1.hosts[0].host, "node-1");

    // The network is deleted (the planner drops the whole prefix): the CIDR goes,
    // also while host keys are still being removed.
    let touched = mirror.follow_plans(&WatchUpdate::Events(vec![gone(&keys::plan_meta(name))]));
    assert_eq!(mirror.cidr_view(name), None);
    let changes = views::decide(&touched, |n| mirror.cidr_view(n), &applied);
    assert_eq!(changes.delete, vec![name]);
}

/// The HostInterface view carries each NIC's rails and its facts under DRA's
/// attribute names; a plan update marks the hosts whose rails it changes.
#[test]
fn the_host_view_publishes_rails_and_dra_attributes() {
    let mut host = inventory("node-1", 5);
    host.nics[0].pcie_root = Some("pci0000:3a".into());
    host.nics[0].pci_address = Some("0000:3b:00.0".into());
    host.nics[0].numa_node = Some(1);
    let net = validated(&sample());
    let plan = railyard_core::plan(&net, std::slice::from_ref(&host), None, 0, 600);
    let (meta, host_plans) = plan.split();
    let name = "multi-nic-sample";
    let mut mirror = views::Mirror::default();
    mirror.follow_hosts(&snapshot(vec![put(&keys::host("node-1"), &host)]));
    let before = mirror.host_view("node-1").unwrap();
    assert!(before.interfaces[0].rails.is_empty());

    let mut events = vec![put(&keys::plan_meta(name), &meta)];
    events.extend(
        host_plans
            .iter()
            .map(|(h, p)| put(&keys::plan_host(name, h), p)),
    );
    let update = WatchUpdate::Events(events);
    mirror.follow_plans(&update);
    assert_eq!(mirror.hosts_of_plans(&update), names(&["node-1"]));
    // Another host's plan entry changes only that host's view; a re-list
    // may change any.
    mirror.follow_hosts(&WatchUpdate::Events(vec![put(
        &keys::host("node-2"),
        &inventory("node-2", 6),
    )]));
    let other = WatchUpdate::Events(vec![put(&keys::plan_host(name, "node-2"), &json!({}))]);
    assert_eq!(mirror.hosts_of_plans(&other), names(&["node-2"]));
    let relist = snapshot(vec![put(&keys::plan_meta(name), &meta)]);
    assert_eq!(mirror.hosts_of_plans(&relist), names(&["node-1", "node-2"]));
    let nic = &mirror.host_view("node-1").unwrap().interfaces[0];
    assert_eq!(nic.rails, BTreeMap::from([(name.to_string(), 0)]));
    let attrs = serde_json::to_value(&nic.attributes).unwrap();
    assert_eq!(
        attrs,
        json!({
            "resource.kubernetes.io/pcieRoot": {"string": "pci0000:3a"},
            "dra.net/pciAddress": {"string": "0000:3b:00.0"},
            "dra.net/numaNode": {"int": 1},
            "railyard.dev/rail": {"int": 0},
        })
    );
}

/// IPAllocation: one view per network and host, from the mirrored records;
/// the last record gone deletes it, and other hosts' views are untouched.
#[test]
fn ip_allocations_follow_the_records_per_network_and_host() {
    let record = |net: &str, host: &str, cid: &str, pod: &str, addr: &str| {
        let key = format!("{}{net}/{host}/{cid}/net1", keys::ALLOCATIONS);
        let value = json!({
            "id": {"network": net, "containerId": cid, "ifname": "net1"},
            "pod": {"namespace": "ml", "name": pod},
            "nics": [{"nic": "eth1", "interface": 1, "addresses": [format!("{addr}/24")],
                      "gateways": ["192.168.64.1"], "routes": []}],
        });
        (key, value)
    };
    let a = record("rails", "node-1", "bbbb", "trainer-1", "192.168.64.11");
    let b = record("rails", "node-1", "aaaa", "trainer-0", "192.168.64.10");
    let c = record("rails", "node-2", "cccc", "trainer-2", "192.168.65.10");
    let d = record("storage", "node-1", "dddd", "loader", "10.9.0.5");
    let mut mirror = views::Mirror::default();
    let touched = mirror.follow_allocations(&snapshot(
        [&a, &b, &c, &d].iter().map(|(k, v)| put(k, v)).collect(),
    ));
    assert_eq!(
        touched,
        names(&["rails.node-1", "rails.node-2", "storage.node-1"])
    );
    let view = mirror.allocation_view("rails.node-1").unwrap();
    assert_eq!(
        (view.network.as_str(), view.host.as_str(), view.pods),
        ("rails", "node-1", 2)
    );
    let pods: Vec<&str> = view.allocations.iter().map(|p| p.pod.as_str()).collect();
    assert_eq!(pods, ["ml/trainer-0", "ml/trainer-1"], "sorted by pod");
    assert_eq!(view.allocations[0].rails[0].addresses, ["192.168.64.10"]);
    assert_eq!(view.allocations[0].rails[0].rail, 1);

    // node-2's last record goes: its view is deleted, node-1's untouched.
    let applied: BTreeMap<String, _> = ["rails.node-1", "rails.node-2"]
        .iter()
        .map(|n| (n.to_string(), mirror.allocation_view(n).unwrap()))
        .collect();
    let touched = mirror.follow_allocations(&WatchUpdate::Events(vec![gone(&c.0)]));
    assert_eq!(touched, names(&["rails.node-2"]));
    let changes = views::decide(&touched, |n| mirror.allocation_view(n), &applied);
    assert_eq!(changes.delete, ["rails.node-2"]);
    assert!(changes.apply.is_empty());
    // Keys of another shape under the prefix make no view.
    let stray = mirror.follow_allocations(&WatchUpdate::Events(vec![put(
        &format!("{}rails", keys::ALLOCATIONS),
        &json!({}),
    )]));
    assert!(stray.is_empty());
}

/// A host with more attachments than one object may list: the first
/// MAX_LISTED by pod, the count of the rest, and every one counted.
#[test]
fn an_ip_allocation_lists_at_most_max_listed_attachments() {
    use railyard_core::ipam::AllocationRecord;
    use railyard_k8s::crd::allocations::MAX_LISTED;
    let records: Vec<AllocationRecord> = (0..MAX_LISTED + 5)
        .map(|i| {
            serde_json::from_value(json!({
                "id": {"network": "rails", "containerId": format!("c{i:05}"), "ifname": "net1"},
                "pod": {"namespace": "ml", "name": format!("p{i:05}")},
                "nics": [],
            }))
            .unwrap()
        })
        .collect();
    let view = railyard_k8s::crd::IpAllocationSpec::of("rails", "node-1", records.iter());
    assert_eq!(view.pods, (MAX_LISTED + 5) as i64);
    assert_eq!(view.allocations.len(), MAX_LISTED);
    assert_eq!(view.omitted, 5);
    assert_eq!(view.allocations[0].pod, "ml/p00000");
}
