//! needs root: creates network namespaces. Kernel events reach the watch channel.

mod common;

use std::time::Duration;

use common::{netns, veth};
use railyard_route_daemon::{KernelEvent, KernelWatch};

/// Waits for `want`, skipping other events; fails after a second, the daemon's
/// budget for noticing drift.
async fn expect_event(watch: &mut KernelWatch, want: KernelEvent, after: &str) {
    let wait = async {
        while let Some(ev) = watch.recv().await {
            if ev == want {
                return;
            }
        }
        panic!("watch ended while waiting for {want:?} after {after}");
    };
    tokio::time::timeout(Duration::from_secs(1), wait)
        .await
        .unwrap_or_else(|_| panic!("no {want:?} within 1 s after {after}"));
}

/// Drops whatever is queued, so the next expectation is caused by the next step.
async fn drain(watch: &mut KernelWatch) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    while watch.try_recv().is_some() {}
}

#[test]
fn link_address_and_route_changes_arrive() {
    let ns = netns();
    veth(&ns, "rail0", "veth-r0", &["10.10.0.5/16"]);
    let name = ns.name().to_owned();
    ns.run(move || async move {
        let ns = NsCmd(name);
        let mut watch = KernelWatch::start().expect("subscribe");

        ns.ip("link set rail0 down");
        expect_event(&mut watch, KernelEvent::LinksChanged, "link down").await;
        drain(&mut watch).await;
        ns.ip("link set rail0 up");
        expect_event(&mut watch, KernelEvent::LinksChanged, "link up").await;
        drain(&mut watch).await;

        ns.ip("addr add fd00:10::5/64 dev rail0 nodad");
        expect_event(&mut watch, KernelEvent::LinksChanged, "v6 address add").await;
        drain(&mut watch).await;
        ns.ip("addr del 10.10.0.5/16 dev rail0");
        expect_event(&mut watch, KernelEvent::LinksChanged, "v4 address delete").await;
        drain(&mut watch).await;

        ns.ip("route add 10.200.0.0/24 dev rail0 table 70000");
        expect_event(
            &mut watch,
            KernelEvent::RoutesChanged { table: 70_000 },
            "route add",
        )
        .await;
        ns.ip("route add fd00:200::/64 via fd00:10::1 dev rail0 table 100");
        expect_event(
            &mut watch,
            KernelEvent::RoutesChanged { table: 100 },
            "v6 route add",
        )
        .await;
        ns.ip("route del fd00:200::/64 table 100");
        expect_event(
            &mut watch,
            KernelEvent::RoutesChanged { table: 100 },
            "v6 route del",
        )
        .await;
    })
    .expect("netns");
}

#[test]
fn a_burst_is_coalesced() {
    let ns = netns();
    veth(&ns, "rail0", "veth-r0", &["10.10.0.5/16"]);
    let batch: String = (0..500)
        .map(|i| {
            format!(
                "route add 10.{}.{}.0/24 via 10.10.0.1 table 300\n",
                128 + i / 256,
                i % 256
            )
        })
        .collect();
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), batch).expect("write");
    let path = file.path().display().to_string();
    let name = ns.name().to_owned();
    ns.run(move || async move {
        let ns = NsCmd(name);
        let mut watch = KernelWatch::start().expect("subscribe");
        // The runtime is blocked while ip runs, so all 500 events are queued
        // by the time the watch reads them. They come out as a few events (one
        // per read burst), and the enlarged buffer loses none of them.
        ns.ip(&format!("-batch {path}"));
        // Everything until the watch goes quiet; a loaded machine may deliver
        // the burst in more pieces, but never anywhere near one per route.
        let mut events = Vec::new();
        while let Ok(Some(ev)) =
            tokio::time::timeout(Duration::from_millis(300), watch.recv()).await
        {
            events.push(ev);
        }
        assert!(!events.is_empty() && events.len() < 50, "{events:?}");
        assert!(
            events
                .iter()
                .all(|e| *e == KernelEvent::RoutesChanged { table: 300 }),
            "{events:?}"
        );
    })
    .expect("netns");
}

/// `ip -n <ns>` from inside the namespace thread, which gets the name rather
/// than the `NamedNetns` (that one stays outside to delete the namespace).
struct NsCmd(String);

impl NsCmd {
    fn ip(&self, args: &str) {
        let out = std::process::Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args.split_whitespace())
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
