//! needs root: network namespaces, a real etcd, the planner in-process and one
//! route-daemon per host namespace (see `topology.rs`). End to end: the plan
//! becomes routes on every host, hosts leave and return, drift is repaired, an
//! etcd outage changes nothing, and pods reach each other over every rail.

#[path = "../common/mod.rs"]
mod common;
mod ping;
mod pods;
mod topology;

use std::time::{Duration, Instant};

use railyard_core::{keys, route_table_for};
use topology::{Cluster, HOSTS, NET, SUBNET};

const CONVERGE: Duration = Duration::from_secs(15);
const ALL: [usize; HOSTS] = [0, 1, 2];

async fn cluster(grace: Duration) -> Cluster {
    common::require_root();
    let c = Cluster::start(grace).await;
    c.apply(NET, SUBNET).await;
    c.converge(NET, HOSTS, &ALL, CONVERGE).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_gets_the_plans_routes_in_the_networks_table_with_its_rules() {
    let c = cluster(Duration::from_secs(600)).await;
    let table = route_table_for(NET);
    for (i, h) in c.hosts.iter().enumerate() {
        // 2 peers x 2 rails x 2 families.
        assert_eq!(c.kernel_routes(i, table).len(), 8, "{}", h.name);
        let main = c.kernel_routes(i, 254);
        assert!(main.is_empty(), "nothing of ours in main: {main:?}");
        for family in ["-4", "-6"] {
            let rules = h.ns.ip(&[family, "rule", "show"]).expect("ip rule");
            let from = if family == "-4" {
                "192.168.0.0/16"
            } else {
                "fd00:ab::/48"
            };
            let want = format!("3000:\tfrom {from} lookup {table} proto 167");
            assert!(rules.contains(&want), "{}: no {want:?} in\n{rules}", h.name);
        }
    }

    // A second network lands in its own table; deleting the first takes its
    // routes and rules away and leaves the second alone.
    c.apply("other", "172.20.0.0/16").await;
    c.converge("other", HOSTS, &ALL, CONVERGE).await;
    c.store
        .delete(&keys::network(NET))
        .await
        .expect("delete spec");
    let start = Instant::now();
    loop {
        let left: usize = ALL.iter().map(|&i| c.kernel_routes(i, table).len()).sum();
        let rules = c.hosts[0].ns.ip(&["rule", "show"]).expect("ip rule");
        if left == 0 && !rules.contains("192.168.0.0/16") {
            break;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "{left} routes and rules {rules} left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.kernel_routes(0, route_table_for("other")).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_leaves_loses_its_routes_elsewhere_and_returns_with_its_index() {
    let grace = Duration::from_secs(3);
    let mut c = cluster(grace).await;
    let table = route_table_for(NET);
    let index = |plan: &railyard_core::Plan| plan.hosts["h2"].index;
    let before = index(&c.plan(NET).await.expect("plan"));
    let h2_routes = c.kernel_routes(2, table);

    // The daemon stops and its lease goes: h2 departs.
    let lease = c.registration_lease(2).await.expect("h2 registered");
    c.stop_daemon(2);
    c.store.revoke(lease).await.expect("revoke");
    c.converge(NET, 2, &[0, 1], CONVERGE).await;
    assert_eq!(
        c.kernel_routes(0, table).len(),
        4,
        "h0 keeps only h1's routes"
    );
    assert_eq!(
        c.kernel_routes(2, table),
        h2_routes,
        "a stopped daemon leaves routes"
    );

    // Back within the grace period: the same index, routes everywhere again.
    c.start_daemon(2).await;
    c.converge(NET, 3, &ALL, CONVERGE).await;
    assert_eq!(index(&c.plan(NET).await.expect("plan")), before);

    // Gone for longer than the grace period: the entry is dropped; routes stay gone.
    let lease = c.registration_lease(2).await.expect("h2 registered again");
    c.stop_daemon(2);
    c.store.revoke(lease).await.expect("revoke");
    let start = Instant::now();
    while c
        .plan(NET)
        .await
        .is_some_and(|p| p.hosts.contains_key("h2"))
    {
        assert!(
            start.elapsed() < grace + CONVERGE,
            "h2 never dropped from the plan"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.converge(NET, 2, &[0, 1], CONVERGE).await;
    c.start_daemon(2).await;
    c.converge(NET, 3, &ALL, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_route_is_back_within_a_second() {
    let c = cluster(Duration::from_secs(600)).await;
    let table = route_table_for(NET);
    let want = c.kernel_routes(1, table);
    // An operator's route in the same table is not railyard's business.
    c.hosts[1]
        .ns
        .ip(&[
            "route",
            "add",
            "10.99.0.0/24",
            "via",
            "10.10.1.1",
            "dev",
            "rail0",
            "table",
            &table.to_string(),
        ])
        .expect("foreign route");
    for (dst, _, _) in want.iter().take(2) {
        c.hosts[1]
            .ns
            .ip(&["route", "del", dst, "table", &table.to_string()])
            .expect("delete one of ours");
        let start = Instant::now();
        while c.kernel_routes(1, table) != want {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{dst} not restored within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("{dst} restored after {:?}", start.elapsed());
    }
    let shown = c.hosts[1]
        .ns
        .ip(&["route", "show", "table", &table.to_string()])
        .expect("ip");
    assert!(
        shown.contains("10.99.0.0/24"),
        "foreign route removed:\n{shown}"
    );
    let repaired = c.hosts[1]
        .daemon
        .as_ref()
        .map(|d| d.metrics.routes_repaired.get());
    assert_eq!(repaired, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_changes_no_route_and_the_cluster_converges_after_it() {
    let mut c = cluster(Duration::from_secs(600)).await;
    let table = route_table_for(NET);
    let before: Vec<_> = ALL.iter().map(|&i| c.kernel_routes(i, table)).collect();

    tokio::task::block_in_place(|| c.etcd.stop());
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now: Vec<_> = ALL.iter().map(|&i| c.kernel_routes(i, table)).collect();
        assert_eq!(now, before, "routes changed while etcd was down");
    }
    // Drift is still repaired from the last plan seen.
    let (dst, _, _) = before[0].iter().next().cloned().expect("a route");
    c.hosts[0]
        .ns
        .ip(&["route", "del", &dst, "table", &table.to_string()])
        .expect("delete");
    let start = Instant::now();
    while c.kernel_routes(0, table) != before[0] {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "no repair during the outage"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    tokio::task::block_in_place(|| c.etcd.restart()).expect("etcd restarts");
    c.apply("after", "172.21.0.0/16").await;
    c.converge("after", HOSTS, &ALL, Duration::from_secs(30))
        .await;
    c.converge(NET, HOSTS, &ALL, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_the_pods_of_every_other_host_on_every_rail_v4_and_v6() {
    let c = cluster(Duration::from_secs(600)).await;
    let plan = c.plan(NET).await.expect("plan");
    let pods: Vec<pods::Pod> = c.hosts.iter().map(|h| pods::add_pod(h, &plan)).collect();
    let mut failures = Vec::new();
    let mut count = 0;
    for (i, from) in pods.iter().enumerate() {
        for (k, to) in pods.iter().enumerate().filter(|(k, _)| *k != i) {
            for rail in 0..2 {
                for family in 0..2 {
                    let (src, dst) = (from.addrs[rail][family], to.addrs[rail][family]);
                    count += 1;
                    if let Err(e) = pods::ping_from(from, src, dst, Duration::from_secs(3)) {
                        failures.push(format!("h{i} -> h{k} rail {rail}: {e}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} pings failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(count, 24);
    // The probe itself can fail: nobody answers for a block no host owns.
    let nowhere = topology::nth("192.168.9.0/24".parse().expect("net"), 5);
    let src = pods[0].addrs[0][0];
    let lost = pods::ping_from(&pods[0], src, nowhere, Duration::from_millis(500));
    assert!(
        lost.is_err(),
        "a reply from an address nobody holds: {lost:?}"
    );
}
