use railyard_core::{Block, Interface, NetworkManifest};
use railyard_store::Range;

use super::*;

fn kv(key: &str, value: &[u8], rev: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        lease: None,
    }
}

fn spec(name: &str, subnet: &str) -> KeyValue {
    let json = format!(
        r#"{{"metadata":{{"name":"{name}"}},"spec":{{"subnet":"{subnet}","ipam":{{"hostBlock":6,"interfaceBlock":2}}}}}}"#
    );
    kv(&keys::network(name), json.as_bytes(), 2)
}

/// Host `i` has NIC eth1 at 10.0.1.(i+1) on rail 0, with block 192.168.i.0/24.
fn host_plan(i: u32) -> HostPlan {
    HostPlan {
        index: i,
        departed_at: None,
        nic_missing_since: Default::default(),
        blocks: vec![Block {
            interface: 0,
            nic: "eth1".parse().expect("valid name"),
            nic_address: format!("10.0.1.{}", i + 1).parse().expect("ip"),
            cidr: format!("192.168.{i}.0/24").parse().expect("net"),
        }],
    }
}

fn host_kv(net: &str, host: &str, plan: &HostPlan) -> KeyValue {
    let json = serde_json::to_vec(plan).expect("json");
    kv(&keys::plan_host(net, host), &json, 3)
}

fn meta_kv(net: &str) -> KeyValue {
    meta_kv_with(net, "192.168.0.0/16")
}

/// The plan meta publishing an accepted spec with `subnet`.
fn meta_kv_with(net: &str, subnet: &str) -> KeyValue {
    let accepted: NetworkManifest =
        serde_json::from_slice(&spec(net, subnet).value).expect("manifest");
    let meta = PlanMeta {
        spec: Some(accepted.spec),
        spec_revision: 2,
        network: net.to_owned(),
        interfaces: vec![Interface {
            index: 0,
            net_address: "10.0.1.0/24".parse().expect("net"),
            cidrs: vec!["192.168.0.0/18".parse().expect("net")],
        }],
        ..PlanMeta::default()
    };
    kv(
        &keys::plan_meta(net),
        &serde_json::to_vec(&meta).expect("json"),
        3,
    )
}

fn snapshot(kvs: Vec<KeyValue>) -> WatchUpdate {
    WatchUpdate::Snapshot(Range { kvs, revision: 10 })
}

fn synced_view() -> ClusterView {
    let mut v = ClusterView::default();
    v.apply_networks(snapshot(vec![spec("net-a", "192.168.0.0/16")]));
    v.apply_plans(snapshot(vec![
        meta_kv("net-a"),
        host_kv("net-a", "h0", &host_plan(0)),
        host_kv("net-a", "h1", &host_plan(1)),
        host_kv("net-a", "h2", &host_plan(2)),
    ]));
    v
}

const OWN: RoutingMode = RoutingMode::OwnTable;

#[test]
fn plan_keys_parse() {
    assert_eq!(
        parse_plan_key("/railyard/v1/plans/n/meta"),
        Some(PlanKey::Meta { network: "n" })
    );
    assert_eq!(
        parse_plan_key("/railyard/v1/plans/n/hosts/h-1"),
        Some(PlanKey::Host {
            network: "n",
            host: "h-1"
        })
    );
    for bad in [
        "/railyard/v1/plans//meta",
        "/railyard/v1/plans/n/other",
        "/railyard/v1/plans/n/hosts/",
        "/railyard/v1/hosts/h",
    ] {
        assert_eq!(parse_plan_key(bad), None, "{bad}");
    }
}

#[test]
fn nothing_is_wanted_before_both_listings() {
    let mut v = ClusterView::default();
    v.apply_networks(snapshot(vec![spec("net-a", "192.168.0.0/16")]));
    assert!(!v.synced());
    v.apply_plans(snapshot(Vec::new()));
    assert!(v.synced());
}

#[test]
fn desired_routes_and_rules_follow_the_plan() {
    let v = synced_view();
    let t = OWN.table("net-a");
    let routes = v.desired("h0", t, OWN);
    let dsts: Vec<String> = routes.iter().map(|r| r.dst.to_string()).collect();
    assert_eq!(dsts, ["192.168.1.0/24", "192.168.2.0/24"]);
    assert_eq!(routes[0].gateway.to_string(), "10.0.1.2");
    assert!(v.desired("stranger", t, OWN).is_empty());
    let rules: Vec<PolicyRule> = v.rules(OWN, 3000).into_iter().collect();
    assert_eq!(
        rules,
        [PolicyRule {
            from: "192.168.0.0/16".parse().expect("net"),
            table: t,
            priority: 3000
        }]
    );
    assert!(v.rules(RoutingMode::MainTable, 3000).is_empty());
    assert_eq!(
        v.network_of(&"192.168.2.0/24".parse().expect("net")),
        Some("net-a")
    );
}

#[test]
fn host_events_change_only_that_host() {
    let mut v = synced_view();
    let t = OWN.table("net-a");
    let mut departed = host_plan(2);
    departed.departed_at = Some(1);
    let changed = v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Put(host_kv(
        "net-a", "h2", &departed,
    ))]));
    assert_eq!(
        changed,
        [PlanChange::Host {
            network: "net-a".into(),
            host: "h2".into(),
            before: Some(host_plan(2))
        }]
    );
    assert_eq!(v.desired("h0", t, OWN).len(), 1);
    assert!(v
        .routes_to("net-a", "h0", "h2", Some(&departed), t)
        .is_empty());
    let to_h1 = v.routes_to("net-a", "h0", "h1", Some(&host_plan(1)), t);
    assert_eq!(to_h1, v.desired("h0", t, OWN));
    let changed = v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Delete {
        key: keys::plan_host("net-a", "h1"),
        mod_revision: 12,
    }]));
    assert!(matches!(
        &changed[..],
        [PlanChange::Host {
            before: Some(_),
            ..
        }]
    ));
    assert!(v.desired("h0", t, OWN).is_empty());
    assert_eq!(v.plan("net-a").map(|p| p.hosts.len()), Some(2));
    // A meta update changes no route and is not reported.
    let changed = v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Put(meta_kv("net-a"))]));
    assert!(changed.is_empty());
}

#[test]
fn only_the_planner_deleting_the_plan_takes_the_network_away() {
    let mut v = synced_view();
    // The /networks key going (a raw delete, pods still attached) changes nothing
    // here: the planner decides, and deletes the plan when the network goes.
    let changed = v.apply_networks(WatchUpdate::Events(vec![WatchEvent::Delete {
        key: keys::network("net-a"),
        mod_revision: 20,
    }]));
    assert!(changed.is_empty());
    assert_eq!(v.rules(OWN, 3000).len(), 1);
    let mut deletes = vec![WatchEvent::Delete {
        key: keys::plan_meta("net-a"),
        mod_revision: 21,
    }];
    deletes.extend((0..3).map(|i| WatchEvent::Delete {
        key: keys::plan_host("net-a", &format!("h{i}")),
        mod_revision: 21,
    }));
    let changed = v.apply_plans(WatchUpdate::Events(deletes));
    assert!(changed.contains(&PlanChange::Network("net-a".into())));
    assert!(v.tables(OWN).is_empty());
    assert!(v.desired("h0", OWN.table("net-a"), OWN).is_empty());
    assert!(v.rules(OWN, 3000).is_empty());
}

#[test]
fn relisting_drops_what_vanished_meanwhile() {
    let mut v = synced_view();
    let changed = v.apply_plans(snapshot(vec![meta_kv_with("net-b", "10.64.0.0/16")]));
    assert_eq!(v.networks().collect::<Vec<_>>(), ["net-b"]);
    assert!(changed.contains(&PlanChange::Network("net-a".into())));
    assert!(v.plan("net-a").is_none());
}

#[test]
fn a_refused_spec_changes_nothing_and_an_accepted_one_moves_the_rules() {
    let mut v = synced_view();
    // A change the planner refuses lives only in /networks: no rule follows it.
    let refused = spec("net-a", "10.99.0.0/16");
    let changed = v.apply_networks(WatchUpdate::Events(vec![WatchEvent::Put(refused)]));
    assert!(changed.is_empty());
    let froms: Vec<String> = v
        .rules(OWN, 3000)
        .iter()
        .map(|r| r.from.to_string())
        .collect();
    assert_eq!(froms, ["192.168.0.0/16"]);
    // An overlapping network the planner refused has no plan: nothing at all.
    v.apply_networks(WatchUpdate::Events(vec![WatchEvent::Put(spec(
        "net-b",
        "192.168.0.0/17",
    ))]));
    assert_eq!(v.networks().collect::<Vec<_>>(), ["net-a"]);
    // A meta without a readable spec keeps the known subnets.
    let bad = kv(
        &keys::plan_meta("net-a"),
        br#"{"network":"net-a","interfaces":[],"spec":{"subnet":"nope"}}"#,
        30,
    );
    let changed = v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Put(bad)]));
    assert!(changed.is_empty());
    assert_eq!(v.rules(OWN, 3000).len(), 1);
    // The planner accepts a dual-stack change: a rule per family, reported.
    let dual = meta_kv_with("net-a", "192.168.0.0/16,fd00:ab::/48");
    let changed = v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Put(dual)]));
    assert_eq!(changed, [PlanChange::Network("net-a".into())]);
    assert_eq!(v.rules(OWN, 3000).len(), 2);
}

#[test]
fn unreadable_plan_values_keep_the_previous_entry() {
    let mut v = synced_view();
    let t = OWN.table("net-a");
    let garbage = kv(&keys::plan_host("net-a", "h1"), b"{", 40);
    v.apply_plans(WatchUpdate::Events(vec![WatchEvent::Put(garbage.clone())]));
    assert_eq!(v.desired("h0", t, OWN).len(), 2);
    v.apply_plans(snapshot(vec![
        meta_kv("net-a"),
        host_kv("net-a", "h0", &host_plan(0)),
        garbage,
    ]));
    assert_eq!(v.desired("h0", t, OWN).len(), 1, "h1 kept from before");
}

#[test]
fn networks_sharing_the_main_table_merge_sorted() {
    let mut v = ClusterView::default();
    v.apply_networks(snapshot(Vec::new()));
    let mut b1 = host_plan(1);
    b1.blocks[0].cidr = "10.64.1.0/24".parse().expect("net");
    v.apply_plans(snapshot(vec![
        meta_kv("net-a"),
        meta_kv_with("net-b", "10.64.0.0/16"),
        host_kv("net-a", "h0", &host_plan(0)),
        host_kv("net-a", "h1", &host_plan(1)),
        host_kv("net-b", "h0", &host_plan(0)),
        host_kv("net-b", "h1", &b1),
    ]));
    let main = RoutingMode::MainTable;
    assert_eq!(v.tables(main).len(), 1);
    let dsts: Vec<String> = v
        .desired("h0", 254, main)
        .iter()
        .map(|r| r.dst.to_string())
        .collect();
    assert_eq!(dsts, ["10.64.1.0/24", "192.168.1.0/24"]);
}
