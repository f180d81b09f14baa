//! needs root: creates network namespaces. What only the netlink
//! implementation of the kernel port does: the kernel's own refusal texts, and
//! drift repair driven by the kernel's route events. The port's behaviour
//! (ownership, conflicts, refusals, rules, idempotence) is the conformance
//! suite's, run here by `tests/kernel_netlink.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{netns, route, sorted, v4_routes, veth};
use railyard_core::Route;
use railyard_route_daemon::kernel::netlink::NetlinkRoutes;
use railyard_route_daemon::kernel::RouteTable;
use railyard_route_daemon::kernel::RoutingMode;
use railyard_route_daemon::{reconcile, KernelEvent, KernelWatch, Netlink};
use railyard_test_support::NamedNetns;

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

/// The failures carry the kernel's reason (its extended ack), and a device
/// that does not exist is refused before anything is sent, naming it.
#[test]
fn refusals_carry_the_kernels_reason_and_name_missing_devices() {
    let ns = rail_host();
    veth(&ns, "rail1", "veth-r1", &["10.11.0.5/16"]);
    common::ip(&ns, "link set rail1 down");
    let t = table();
    let good = route("10.200.0.0/24", "10.10.0.1", "rail0", t);
    let want = vec![
        good.clone(),
        route("10.201.0.0/24", "10.10.0.1", "nosuch0", t),
        route("10.202.0.0/24", "10.11.0.1", "rail1", t),
    ];
    ns.run(move || async move {
        let k = kernel();
        let r = reconcile(want, &[t], &k).await.expect("reconcile");
        assert_eq!(r.added, 1);
        let text: Vec<String> = r.failures.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text.iter()
                .any(|f| f.contains("dev rail1") && f.contains("gateway")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|f| f.contains("nosuch0") && f.contains("does not exist")),
            "{text:?}"
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
