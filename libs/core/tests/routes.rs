mod common;

use common::{host, hosts, upstream};
use railyard_core::{desired_routes, diff, plan, ActualRoute, Route};

fn r(dst: &str, gw: &str, dev: &str, table: u32) -> Route {
    Route {
        dst: dst.parse().unwrap(),
        gateway: gw.parse().unwrap(),
        dev: dev.parse().unwrap(),
        table,
    }
}

#[test]
fn host_routes_to_every_other_host_block_through_the_matching_nic() {
    let p = plan(&upstream(), &hosts(3, 2), None, 0, 600);
    let routes = desired_routes(&p, "host-00000", 100);
    assert_eq!(
        routes,
        vec![
            r("192.168.1.0/24", "10.0.0.2", "eth0", 100),
            r("192.168.2.0/24", "10.0.0.3", "eth0", 100),
            r("192.168.65.0/24", "10.0.1.2", "eth1", 100),
            r("192.168.66.0/24", "10.0.1.3", "eth1", 100),
        ]
    );
    assert!(desired_routes(&p, "nobody", 100).is_empty());
}

#[test]
fn departed_hosts_get_no_routes_and_missing_rails_are_skipped() {
    let mut inv = hosts(3, 2);
    inv[2].nics.truncate(1); // host-00002 is only on rail 0
    let p1 = plan(&upstream(), &inv, None, 0, 600);
    let r0 = desired_routes(&p1, "host-00000", 7);
    assert_eq!(r0.len(), 3);
    inv.remove(1);
    let p2 = plan(&upstream(), &inv, Some(&p1), 5, 600);
    let dsts: Vec<String> = desired_routes(&p2, "host-00000", 7)
        .iter()
        .map(|r| r.dst.to_string())
        .collect();
    assert_eq!(dsts, vec!["192.168.2.0/24"]);
}

#[test]
fn dual_stack_routes_use_each_family_gateway() {
    let net = common::network(
        "metadata: {name: nd}\nspec:\n  subnet: '192.168.0.0/16,fd10::/48'\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
    );
    let inv: Vec<_> = (0..2).map(|n| host(&format!("h{n}"), n, 1, true)).collect();
    let p = plan(&net, &inv, None, 0, 600);
    let routes = desired_routes(&p, "h0", 9);
    assert_eq!(
        routes,
        vec![
            r("192.168.1.0/24", "10.0.0.2", "eth0", 9),
            r("fd10:0:0:100::/56", "fd00:0::2", "eth0", 9),
        ]
    );
}

fn owned(route: Route) -> ActualRoute {
    ActualRoute { route, owned: true }
}

fn foreign(route: Route) -> ActualRoute {
    ActualRoute {
        route,
        owned: false,
    }
}

#[test]
fn diff_adds_replaces_deletes_and_never_touches_foreign_routes() {
    let desired = vec![
        r("192.168.1.0/24", "10.0.0.2", "eth0", 100), // present, same
        r("192.168.2.0/24", "10.0.0.3", "eth0", 100), // present, other gateway
        r("192.168.3.0/24", "10.0.0.4", "eth0", 100), // absent
        r("192.168.4.0/24", "10.0.0.5", "eth0", 100), // held by a foreign route
    ];
    let actual = vec![
        owned(r("192.168.1.0/24", "10.0.0.2", "eth0", 100)),
        owned(r("192.168.2.0/24", "10.0.0.9", "eth0", 100)),
        foreign(r("192.168.4.0/24", "10.0.0.1", "eth0", 100)),
        owned(r("192.168.9.0/24", "10.0.0.9", "eth0", 100)), // stale: ours
        foreign(r("10.9.0.0/16", "10.0.0.1", "eth0", 100)),  // not ours: untouched
        owned(r("192.168.1.0/24", "10.0.0.2", "eth0", 200)), // ours, other table
    ];
    let d = diff(&desired, &actual);
    assert_eq!(d.add, vec![r("192.168.3.0/24", "10.0.0.4", "eth0", 100)]);
    assert_eq!(
        d.replace,
        vec![r("192.168.2.0/24", "10.0.0.3", "eth0", 100)]
    );
    assert_eq!(
        d.delete,
        vec![
            r("192.168.9.0/24", "10.0.0.9", "eth0", 100),
            r("192.168.1.0/24", "10.0.0.2", "eth0", 200),
        ]
    );
    assert_eq!(
        d.conflicts,
        vec![r("192.168.4.0/24", "10.0.0.5", "eth0", 100)]
    );
    assert!(!d.delete.iter().any(|x| x.dst.to_string() == "10.9.0.0/16"));
}

#[test]
fn diff_of_converged_state_is_empty_and_duplicates_collapse() {
    let p = plan(&upstream(), &hosts(10, 2), None, 0, 600);
    let desired = desired_routes(&p, "host-00003", 100);
    let actual: Vec<ActualRoute> = desired.iter().rev().cloned().map(owned).collect();
    assert!(diff(&desired, &actual).is_empty());
    // Two owned copies of one destination: one survives, the other goes.
    let mut twice = actual.clone();
    twice.push(owned(r("192.168.1.0/24", "10.0.0.77", "eth0", 100)));
    let d = diff(&desired, &twice);
    assert_eq!(
        d.delete,
        vec![r("192.168.1.0/24", "10.0.0.77", "eth0", 100)]
    );
    assert!(d.add.is_empty() && d.replace.is_empty());
}
