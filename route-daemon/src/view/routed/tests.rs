use railyard_core::fabric::SOURCE_TABLE_FIRST;
use railyard_core::{keys, Block, HostPlan, Interface, NetworkManifest, PlanMeta};
use railyard_store::{KeyValue, Range, WatchEvent, WatchUpdate};

use super::*;
use crate::kernel::RoutingMode;
use crate::view::PlanChange;

/// The network's own table, where `desired` puts its routes.
fn table() -> u32 {
    RoutingMode::OwnTable.table("net")
}

fn kv(key: &str, value: Vec<u8>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
        create_revision: 3,
        mod_revision: 3,
        version: 1,
        lease: None,
    }
}

/// The accepted spec: one rail (10.10.0.0/16), routed or not.
fn meta(routed: bool) -> KeyValue {
    let fabric = if routed {
        r#","fabric":{"mode":"routed","bgp":{"peerAsn":65000}}"#
    } else {
        ""
    };
    let manifest: NetworkManifest = serde_json::from_str(&format!(
        r#"{{"metadata":{{"name":"net"}},"spec":{{"subnet":"192.168.0.0/16","ipam":{{"hostBlock":6,"interfaceBlock":2}},"masterNets":["10.10.0.0/16"]{fabric}}}}}"#
    ))
    .expect("manifest");
    let meta = PlanMeta {
        spec: Some(manifest.spec),
        spec_revision: 2,
        network: "net".into(),
        interfaces: vec![Interface {
            index: 0,
            net_address: "10.10.0.0/16".parse().expect("net"),
            cidrs: vec!["192.168.0.0/18".parse().expect("net")],
        }],
        ..PlanMeta::default()
    };
    kv(
        &keys::plan_meta("net"),
        serde_json::to_vec(&meta).expect("json"),
    )
}

/// Host `i`: `rail0` at 10.10.0.(2i+1)/31 (its leaf 10.10.0.(2i)), block
/// 192.168.i.0/24.
fn host(i: u32) -> KeyValue {
    let plan = HostPlan {
        index: i,
        departed_at: None,
        nic_missing_since: Default::default(),
        blocks: vec![Block {
            interface: 0,
            nic: "rail0".parse().expect("name"),
            nic_address: format!("10.10.0.{}", 2 * i + 1).parse().expect("ip"),
            cidr: format!("192.168.{i}.0/24").parse().expect("net"),
        }],
    };
    kv(
        &keys::plan_host("net", &format!("h{i}")),
        serde_json::to_vec(&plan).expect("json"),
    )
}

fn view(routed: bool) -> ClusterView {
    let mut v = ClusterView::default();
    v.apply_networks(WatchUpdate::Snapshot(Range {
        kvs: vec![],
        revision: 1,
    }));
    v.apply_plans(WatchUpdate::Snapshot(Range {
        kvs: vec![meta(routed), host(0), host(1), host(2)],
        revision: 3,
    }));
    assert!(v.synced());
    v
}

fn h1_addresses() -> Vec<(IfName, IpNet)> {
    vec![
        (
            "rail0".parse().expect("name"),
            "10.10.0.3/31".parse().expect("net"),
        ),
        (
            "mgmt0".parse().expect("name"),
            "172.16.0.2/24".parse().expect("net"),
        ),
    ]
}

fn shown(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| format!("{} via {} dev {}", r.dst, r.gateway, r.dev))
        .collect()
}

#[test]
fn l2_networks_are_untouched() {
    let mut v = view(false);
    let before = v.desired("h1", table(), RoutingMode::OwnTable);
    v.set_addresses(h1_addresses());
    let after = v.desired("h1", table(), RoutingMode::OwnTable);
    assert_eq!(before, after);
    assert_eq!(
        shown(&after),
        [
            "192.168.0.0/24 via 10.10.0.1 dev rail0",
            "192.168.2.0/24 via 10.10.0.5 dev rail0"
        ]
    );
    assert!(!v.any_routed());
    let host = v.routed_host("h1", &[], 3000);
    assert!(host.links.is_empty() && host.source_rules.is_empty());
    assert!(!host.bird.contains("protocol bgp"));
}

#[test]
fn routed_networks_go_through_the_own_leaf() {
    let mut v = view(true);
    assert!(v.any_routed());
    // No link addresses yet: no route to a peer NIC that is not on-link.
    assert!(v
        .desired("h1", 7, crate::kernel::RoutingMode::OwnTable)
        .is_empty());
    assert!(v.set_addresses(h1_addresses()));
    assert!(!v.set_addresses(h1_addresses()));
    let routes = v.desired("h1", table(), RoutingMode::OwnTable);
    assert_eq!(
        shown(&routes),
        [
            "192.168.0.0/24 via 10.10.0.2 dev rail0",
            "192.168.2.0/24 via 10.10.0.2 dev rail0"
        ]
    );
    let plan = v.plan("net").expect("plan");
    let peer = plan.hosts.get("h2").cloned();
    let one = v.routes_to("net", "h1", "h2", peer.as_ref(), table());
    assert_eq!(shown(&one), ["192.168.2.0/24 via 10.10.0.2 dev rail0"]);
}

#[test]
fn the_routed_host_gets_source_tables_and_a_bird_announcing_its_block() {
    let mut v = view(true);
    v.set_addresses(h1_addresses());
    let host = v.routed_host("h1", &[], 3000);
    assert!(host.problems.is_empty(), "{:?}", host.problems);
    assert_eq!(host.links.len(), 1);
    assert_eq!(
        shown(&host.source_routes),
        ["0.0.0.0/0 via 10.10.0.2 dev rail0"]
    );
    assert_eq!(host.source_routes[0].table, SOURCE_TABLE_FIRST);
    let rules: Vec<String> = host.source_rules.iter().map(ToString::to_string).collect();
    assert_eq!(
        rules,
        [format!(
            "from 10.10.0.3/32 lookup {SOURCE_TABLE_FIRST} priority 3000"
        )]
    );
    assert!(host.bird.contains("router id 10.10.0.3;"));
    assert!(host.bird.contains("route 192.168.1.0/24 blackhole;"));
    assert!(host.bird.contains("neighbor 10.10.0.2 as 65000;"));
    assert!(!host.bird.contains("192.168.0.0/24 blackhole"));

    // After a restart the kernel's rule keeps its table.
    let kept = PolicyRule {
        from: "10.10.0.3/32".parse().expect("net"),
        table: SOURCE_TABLE_FIRST + 9,
        priority: 3000,
    };
    let again = v.routed_host("h1", &[kept], 3000);
    assert_eq!(again.source_routes[0].table, SOURCE_TABLE_FIRST + 9);
    assert!(again.source_rules.contains(&kept));
}

#[test]
fn a_departed_host_announces_nothing() {
    let mut v = view(true);
    v.set_addresses(h1_addresses());
    let mut gone: HostPlan = serde_json::from_slice(&host(1).value).expect("json");
    gone.departed_at = Some(1);
    v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Put(kv(
        &keys::plan_host("net", "h1"),
        serde_json::to_vec(&gone).expect("json"),
    ))]));
    let host = v.routed_host("h1", &[], 3000);
    assert!(host.links.is_empty() && host.source_rules.is_empty());
    assert!(!host.bird.contains("protocol bgp"));
}

#[test]
fn turning_a_network_routed_is_a_change_of_the_whole_network() {
    let mut v = view(false);
    let changes = v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Put(meta(true))]));
    assert_eq!(changes, [PlanChange::Network("net".into())]);
    assert!(v.fabric("net").is_routed());
    let same = v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Put(meta(true))]));
    assert!(same.is_empty());
}
