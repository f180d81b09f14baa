//! needs root: creates network namespaces. NIC discovery against a real kernel.

mod common;

use common::{ip, netns, veth};
use railyard_core::Nic;
use railyard_route_daemon::discovery::{discover, NicFilter, SysfsDir};
use railyard_route_daemon::Netlink;

fn by_name<'a>(nics: &'a [Nic], name: &str) -> &'a Nic {
    nics.iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("{name} not discovered in {nics:?}"))
}

async fn discover_here() -> Vec<Nic> {
    let nl = Netlink::connect().expect("netlink");
    discover(&nl, &SysfsDir::default(), &NicFilter::default())
        .await
        .expect("discover")
}

#[test]
fn discovers_veth_rails_with_addresses_mtu_mac_and_state() {
    let ns = netns();
    veth(&ns, "rail0", "veth-r0", &["10.10.0.5/16", "fd00:10::5/64"]);
    ip(&ns, "link set rail0 mtu 9000 address 02:00:00:00:00:0a");
    // Admin up, but its peer is down: no carrier, so not up.
    veth(&ns, "rail1", "veth-r1", &["10.11.0.5/16"]);
    ip(&ns, "link set veth-r1 down");
    // Admin down: not up, and sysfs refuses its speed.
    veth(&ns, "rail2", "veth-r2", &["10.12.0.5/16"]);
    ip(&ns, "link set rail2 down");
    // The management NIC (default route) and a bridge are never rails.
    veth(&ns, "mgmt0", "veth-m0", &["192.0.2.10/24"]);
    ip(&ns, "route add default via 192.0.2.1 dev mgmt0");
    ip(&ns, "link add br0 type bridge");

    let nics = ns.run(discover_here).expect("netns");
    let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["rail0", "rail1", "rail2"]);

    let r0 = by_name(&nics, "rail0");
    assert_eq!(
        r0.addresses,
        vec![
            "10.10.0.5/16".parse().expect("net"),
            "fd00:10::5/64".parse().expect("net")
        ],
        "link-local fe80:: must not be listed"
    );
    assert_eq!(r0.mtu, Some(9000));
    assert_eq!(r0.mac.as_deref(), Some("02:00:00:00:00:0a"));
    assert!(r0.up);
    assert_eq!(
        r0.speed_mbps,
        Some(10_000),
        "veth reports 10G through sysfs"
    );
    // A virtual NIC has no PCI device: every hardware fact is absent, not an error.
    assert_eq!(
        (r0.numa_node, &r0.pci_address, &r0.driver),
        (None, &None, &None)
    );

    assert!(!by_name(&nics, "rail1").up);
    let r2 = by_name(&nics, "rail2");
    assert!(!r2.up);
    assert_eq!(r2.speed_mbps, None);
}

#[test]
fn rediscovery_sees_link_and_address_changes() {
    let ns = netns();
    veth(&ns, "rail0", "veth-r0", &["10.10.0.5/16"]);
    let before = ns.run(discover_here).expect("netns");
    assert!(before[0].up);

    ip(&ns, "link set rail0 down");
    ip(&ns, "addr add fd00:10::5/64 dev rail0 nodad");
    ip(&ns, "addr del 10.10.0.5/16 dev rail0");
    let after = ns.run(discover_here).expect("netns");
    assert!(!after[0].up);
    assert_eq!(
        after[0].addresses,
        vec!["fd00:10::5/64".parse().expect("net")]
    );
}

/// The kernel runs one dump at a time per netlink socket and answers a second
/// with EBUSY; registration, reconcile and drift repair all dump through one
/// connection, so the connection must queue them.
#[test]
fn concurrent_dumps_on_one_connection_all_succeed() {
    let ns = netns();
    for k in 0..8 {
        veth(
            &ns,
            &format!("rail{k}"),
            &format!("veth-r{k}"),
            &[&format!("10.{k}.0.5/16")],
        );
    }
    let failures = ns
        .run(|| async {
            let nl = Netlink::connect().expect("netlink");
            let (sysfs, filter) = (SysfsDir::default(), NicFilter::default());
            let runs = (0..32).map(|_| discover(&nl, &sysfs, &filter));
            futures::future::join_all(runs)
                .await
                .into_iter()
                .filter_map(|r| r.err().map(|e| e.to_string()))
                .collect::<Vec<_>>()
        })
        .expect("netns");
    assert!(
        failures.is_empty(),
        "{} of 32 discoveries failed: {:?}",
        failures.len(),
        failures.first()
    );
}
