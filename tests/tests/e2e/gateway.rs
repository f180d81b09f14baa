//! `spec.ipam.gateway`: a macvlan network whose pods route through a chosen
//! address of each host block. The route-daemons' gateway shims hold that
//! address, railyard-cni routes the pods' blocks through it, IPAM never
//! hands it out and offset 1 (the gateway everywhere else) is a pod's.
//!
//! `gateway: none` is for ipvlan l3 and l3s only, which this machine's
//! kernel lacks: its cluster runs in the full-kernel VM
//! (`tests/tests/full_kernel.rs`, "ipvlan-l3-no-gateway").

use std::net::IpAddr;

use crate::common::{spec, TestCluster};
use railyard_e2e::cluster::cmd::ip_in;
use railyard_e2e::cluster::topology::gateway_shims;
use railyard_e2e::{Delegate, Family};

#[test]
fn macvlan_pods_are_connected_through_a_chosen_gateway() {
    // Management ids are a u8 (10.254.<id>.0/24): this test's range
    // 270-279 taken modulo 256.
    let mut s = spec("e2e-gateway", 14);
    s.delegate = Delegate::Macvlan;
    s.family = Family::Dual;
    // The last usable IPv4 address of each host block (IPv6: the last but one).
    s.gateway = Some("-2".into());
    let mut c = TestCluster::up(s.clone());
    c.distinct_addresses();
    c.assert_connected(None);

    let plan = c
        .observer()
        .expect("etcd")
        .plan(&s.network)
        .expect("read plan")
        .expect("a plan");
    let mut gateways: Vec<IpAddr> = Vec::new();
    for i in 0..s.hosts {
        let shims = gateway_shims(&s, i);
        assert_eq!(shims.len(), s.rails, "host {i}: {shims:?}");
        for b in &plan.hosts[&s.host(i)].blocks {
            let gw = s.block_gateway(b.cidr).expect("a gateway");
            // Counted from the block's end: not the block's first address.
            assert_eq!(
                u128_of(gw),
                u128_of(b.cidr.broadcast()) - 1,
                "{gw} in {}",
                b.cidr
            );
            gateways.push(gw);
            let shim = shims
                .iter()
                .find(|sh| b.nic == sh.parent)
                .unwrap_or_else(|| panic!("host {i}: no shim on {}: {shims:?}", b.nic));
            assert!(
                shim.addresses
                    .contains(&format!("{gw}/{}", b.cidr.prefix_len())),
                "host {i} {}: {:?} lacks {gw}",
                b.nic,
                shim.addresses
            );
        }
    }

    // No pod holds a gateway; offset 1 of a block is a pod's now (each
    // host's first pod got it, as the allocator starts there).
    let held: Vec<IpAddr> = c
        .state
        .pods
        .iter()
        .flat_map(|p| p.addresses.clone())
        .collect();
    assert!(
        held.iter().all(|a| !gateways.contains(a)),
        "a pod holds a gateway: {held:?}"
    );
    let firsts = plan
        .hosts
        .values()
        .flat_map(|h| &h.blocks)
        .filter(|b| held.contains(&first_address(b.cidr)))
        .count();
    assert!(firsts > 0, "no pod got a block's offset 1: {held:?}");

    // Each pod routes its rail through its block's chosen gateway.
    for p in &c.state.pods {
        let routes = ip_in(&p.name, &["-4", "route", "show"]).expect("ip route in the pod");
        let via: Vec<&IpAddr> = gateways
            .iter()
            .filter(|g| g.is_ipv4() && routes.contains(&format!("via {g} ")))
            .collect();
        assert_eq!(via.len(), s.rails, "{}: {routes}", p.name);
    }
}

fn u128_of(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn first_address(block: ipnet::IpNet) -> IpAddr {
    let a = u128_of(block.network()) + 1;
    match block {
        ipnet::IpNet::V4(_) => IpAddr::V4((a as u32).into()),
        ipnet::IpNet::V6(_) => IpAddr::V6(a.into()),
    }
}
