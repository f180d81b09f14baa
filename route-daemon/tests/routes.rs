//! needs root: creates network namespaces. Route programming, ownership,
//! conflicts, drift repair and policy rules against a real kernel.

mod common;

use std::time::{Duration, Instant};

use common::{ip, netns, route, sorted, v4_routes, v6_routes, veth};
use railyard_core::{route_table_for, Route};
use railyard_route_daemon::kernel_routes::{RoutingMode, DEFAULT_RULE_PRIORITY, MAIN_TABLE};
use railyard_route_daemon::netns::NamedNetns;
use railyard_route_daemon::{
    reconcile, KernelEvent, KernelWatch, Netlink, NetlinkRoutes, RouteTable,
};

fn table() -> u32 {
    RoutingMode::OwnTable.table("rail-net")
}

/// A namespace with one rail NIC on 10.10.0.0/16 and fd00:10::/64.
fn rail_host() -> NamedNetns {
    let ns = netns();
    veth(&ns, "rail0", "veth-r0", &["10.10.0.5/16", "fd00:10::5/64"]);
    ns
}

fn kernel() -> NetlinkRoutes {
    NetlinkRoutes::new(Netlink::connect().expect("netlink")).expect("route socket")
}

async fn ours(k: &NetlinkRoutes, tables: &[u32]) -> Vec<Route> {
    let all = k.routes(tables).await.expect("read routes");
    sorted(
        all.into_iter()
            .filter(|a| a.owned)
            .map(|a| a.route)
            .collect(),
    )
}

#[test]
fn thousand_routes_in_own_table_read_back_identical() {
    let ns = rail_host();
    let t = table();
    assert_eq!(t, route_table_for("rail-net"));
    let mut want = v4_routes(900, "rail0", t);
    want.extend(v6_routes(100, "rail0", t));
    let expected = sorted(want.clone());
    ns.run(move || async move {
        let k = kernel();
        let r = reconcile(want.clone(), &[t], &k).await.expect("reconcile");
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!((r.added, r.replaced, r.deleted), (1000, 0, 0));
        assert_eq!(ours(&k, &[t]).await, expected);
        let again = reconcile(want, &[t], &k).await.expect("reconcile again");
        assert_eq!(again.changed(), 0);
        assert_eq!(again.unchanged, 1000);
    })
    .expect("netns");
    let listed = ip(&ns, &format!("route show table {t} proto 167"));
    assert_eq!(listed.lines().count(), 900);
    let listed6 = ip(&ns, &format!("-6 route show table {t} proto 167"));
    assert_eq!(listed6.lines().count(), 100);
}

#[test]
fn next_hop_change_is_replaced_in_place_and_stale_routes_go() {
    let ns = rail_host();
    let t = table();
    let first = v4_routes(10, "rail0", t);
    let mut second = first.clone();
    second[0].gateway = "10.10.0.99".parse().expect("ip");
    second.truncate(8);
    second.push(route("fd00:200::/64", "fd00:10::7", "rail0", t));
    let expected = sorted(second.clone());
    ns.run(move || async move {
        let k = kernel();
        reconcile(first, &[t], &k).await.expect("seed");
        let r = reconcile(second, &[t], &k).await.expect("reconcile");
        assert_eq!((r.added, r.replaced, r.deleted), (1, 1, 2));
        assert_eq!(ours(&k, &[t]).await, expected);
    })
    .expect("netns");
    let shown = ip(&ns, &format!("route show 10.128.0.0/24 table {t}"));
    assert!(shown.contains("via 10.10.0.99"), "{shown}");
}

#[test]
fn foreign_routes_are_never_touched_and_conflicts_are_reported() {
    let ns = rail_host();
    let t = table();
    ip(
        &ns,
        &format!("route add 10.200.0.0/24 via 10.10.0.9 dev rail0 table {t} proto static"),
    );
    ip(
        &ns,
        &format!("route add 10.201.0.0/24 via 10.10.0.9 dev rail0 table {t} proto static"),
    );
    let conflicting = route("10.200.0.0/24", "10.10.0.1", "rail0", t);
    let free = route("10.202.0.0/24", "10.10.0.1", "rail0", t);
    let want = vec![conflicting.clone(), free.clone()];
    ns.run(move || async move {
        let k = kernel();
        let r = reconcile(want, &[t], &k).await.expect("reconcile");
        assert_eq!(r.conflicts, vec![conflicting]);
        assert_eq!(r.added, 1);
        assert_eq!(ours(&k, &[t]).await, vec![free]);
        // Wanting nothing deletes ours only.
        let r = reconcile(Vec::new(), &[t], &k).await.expect("empty");
        assert_eq!(r.deleted, 1);
    })
    .expect("netns");
    let shown = ip(&ns, &format!("route show table {t}"));
    assert!(
        shown.contains("10.200.0.0/24 via 10.10.0.9 dev rail0 proto static"),
        "{shown}"
    );
    assert!(
        shown.contains("10.201.0.0/24 via 10.10.0.9 dev rail0 proto static"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 2, "{shown}");
}

#[test]
fn main_table_mode_leaves_connected_and_static_routes_alone() {
    let ns = rail_host();
    ip(&ns, "route add 10.201.0.0/24 via 10.10.0.9 proto static");
    let before = ip(&ns, "route show table main");
    let want = vec![route("10.202.0.0/24", "10.10.0.1", "rail0", MAIN_TABLE)];
    // A desired route on the connected subnet itself is a conflict.
    let mut with_conflict = want.clone();
    with_conflict.push(route("10.10.0.0/16", "10.10.0.1", "rail0", MAIN_TABLE));
    ns.run(move || async move {
        let k = kernel();
        let r = reconcile(with_conflict, &[MAIN_TABLE], &k)
            .await
            .expect("reconcile");
        assert_eq!((r.added, r.conflicts.len()), (1, 1));
        let r = reconcile(Vec::new(), &[MAIN_TABLE], &k)
            .await
            .expect("empty");
        assert_eq!(r.deleted, 1);
    })
    .expect("netns");
    assert_eq!(ip(&ns, "route show table main"), before);
}

#[test]
fn refused_routes_are_reported_and_the_rest_applied() {
    let ns = rail_host();
    veth(&ns, "rail1", "veth-r1", &["10.11.0.5/16"]);
    ip(&ns, "link set rail1 down");
    let t = table();
    let good = route("10.200.0.0/24", "10.10.0.1", "rail0", t);
    let mut want = vec![
        good.clone(),
        route("10.201.0.0/24", "10.10.0.1", "nosuch0", t),
    ];
    // Whole windows of refusals (rail1 is down): every answer must be counted.
    want.extend(v4_routes(1000, "rail1", t));
    ns.run(move || async move {
        let k = kernel();
        let r = reconcile(want, &[t], &k).await.expect("reconcile");
        assert_eq!(r.added, 1);
        assert_eq!(r.failures.len(), 1001, "{:?}", &r.failures[..2]);
        let text: Vec<String> = r.failures.iter().map(ToString::to_string).collect();
        // The kernel's reason (its extended ack) is in the text.
        assert!(
            text.iter()
                .any(|f| f.contains("dev rail1") && f.contains("gateway")),
            "{:?}",
            &text[..2]
        );
        assert!(
            text.iter()
                .any(|f| f.contains("nosuch0") && f.contains("does not exist")),
            "{:?}",
            &text[..2]
        );
        assert_eq!(ours(&k, &[t]).await, vec![good]);
    })
    .expect("netns");
}

#[test]
fn drift_is_seen_by_the_watch_and_repaired_within_a_second() {
    let ns = rail_host();
    let t = table();
    let want = v4_routes(100, "rail0", t);
    let victim = want[42].dst;
    let name = ns.name().to_owned();
    ns.run(move || async move {
        let k = kernel();
        let mut watch = KernelWatch::start().expect("subscribe");
        reconcile(want.clone(), &[t], &k).await.expect("seed");
        // Let the echo of our own 100 adds pass.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while watch.try_recv().is_some() {}

        let start = Instant::now();
        let out = std::process::Command::new("ip")
            .args([
                "-n",
                &name,
                "route",
                "del",
                &victim.to_string(),
                "table",
                &t.to_string(),
            ])
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // What the daemon's loop does: reconcile the table an event names.
        let repaired = async {
            while let Some(ev) = watch.recv().await {
                if ev == (KernelEvent::RoutesChanged { table: t }) {
                    let r = reconcile(want.clone(), &[t], &k).await.expect("repair");
                    if r.added == 1 {
                        return r;
                    }
                }
            }
            panic!("watch ended");
        };
        let r = tokio::time::timeout(Duration::from_secs(1), repaired)
            .await
            .expect("repaired within 1 s");
        assert_eq!((r.added, r.deleted, r.replaced), (1, 0, 0));
        eprintln!("drift repaired {:?} after ip route del", start.elapsed());
        assert_eq!(ours(&k, &[t]).await, sorted(want));
    })
    .expect("netns");
}

#[test]
fn policy_rules_are_idempotent_and_foreign_rules_stay() {
    let ns = rail_host();
    let t = table();
    let p = DEFAULT_RULE_PRIORITY;
    ip(
        &ns,
        &format!("rule add from 10.20.0.0/16 lookup {t} priority {p}"),
    );
    ns.run(move || async move {
        let k = kernel();
        for from in ["10.30.0.0/16", "fd00:30::/48"] {
            let from = from.parse().expect("net");
            assert!(k.ensure_rule(from, t, p).await.expect("ensure"));
            assert!(!k.ensure_rule(from, t, p).await.expect("ensure again"));
        }
        // An operator's identical rule satisfies ensure and survives remove.
        let foreign = "10.20.0.0/16".parse().expect("net");
        assert!(!k.ensure_rule(foreign, t, p).await.expect("ensure foreign"));
        assert!(!k.remove_rule(foreign, t, p).await.expect("remove foreign"));

        let v4 = "10.30.0.0/16".parse().expect("net");
        assert!(k.remove_rule(v4, t, p).await.expect("remove"));
        assert!(!k.remove_rule(v4, t, p).await.expect("remove again"));
    })
    .expect("netns");
    let rules = ip(&ns, "rule show");
    assert!(
        rules.contains(&format!("from 10.20.0.0/16 lookup {t}")),
        "{rules}"
    );
    assert!(!rules.contains("10.30.0.0/16"), "{rules}");
    let rules6 = ip(&ns, "-6 rule show");
    assert_eq!(rules6.matches("fd00:30::/48").count(), 1, "{rules6}");
    assert!(rules6.contains("proto 167"), "{rules6}");
}
