//! External IPAM (`multiNICIPAM: false`, `spec.ipam.external`): host-local
//! allocates every pod address, once per rail, inside the host block the
//! real route-daemon names (its `choose` request), and the routes railyard
//! programs for those blocks carry the pods' traffic across hosts. The
//! daemons hold no allocation of these pods; host-local's records (one
//! `dataDir` per host) do, and a DEL frees them.

use std::net::IpAddr;

use crate::common::{spec, TestCluster};
use railyard_e2e::cluster::{cmd, pods};
use railyard_e2e::Delegate;

#[test]
fn host_local_pods_get_their_hosts_blocks_and_reach_each_other_across_hosts() {
    // Management ids are a u8 (10.254.<id>.0/24): this test's range
    // 260-269 taken modulo 256.
    let mut s = spec("e2e-extipam", 4);
    s.delegate = Delegate::Ptp;
    s.pods = 0;
    s.external_ipam = Some(serde_json::json!({"type": "host-local"}));
    let made = [(0, 0), (0, 1), (1, 0)];
    // Pods made here are not in the cluster's state: a killed earlier run
    // may have left their namespaces.
    for (i, k) in made {
        let _ = cmd::netns_del(&s.pod(i, k));
    }
    let _ = std::fs::remove_dir_all(s.state_dir.join("host-local"));
    let mut c = TestCluster::up(s.clone());
    let plan = c
        .observer()
        .expect("etcd")
        .plan(&s.network)
        .expect("read plan")
        .expect("a plan");

    let mut attached = Vec::new();
    for (i, k) in made {
        let pod = pods::attach_with(&s, i, k, None)
            .unwrap_or_else(|e| panic!("pod {i}/{k} attaches: {e}"));
        c.state.pods.push(pod.clone());
        attached.push(pod);
    }
    for p in &attached {
        assert_eq!(p.addresses.len(), s.rails, "{}: {:?}", p.name, p.addresses);
        let blocks = &plan.hosts[&p.host].blocks;
        for (rail, addr) in p.addresses.iter().enumerate() {
            let block = blocks
                .iter()
                .find(|b| b.interface == rail as u32)
                .expect("a block per rail");
            assert!(
                block.cidr.contains(addr),
                "{}: {addr} outside its host's rail-{rail} block {}",
                p.name,
                block.cidr
            );
            assert_ne!(
                *addr,
                s.block_gateway(block.cidr).expect("a gateway"),
                "never the gateway"
            );
        }
    }
    c.distinct_addresses();
    let records = c
        .observer()
        .expect("etcd")
        .allocations(&s.network)
        .expect("read allocations");
    assert!(records.is_empty(), "the daemons hold nothing: {records:?}");

    // Across hosts on every rail, and between two pods of one host.
    for (from, to) in [(0, 2), (2, 0), (1, 2), (0, 1)] {
        for dst in &attached[to].addresses {
            pods::ping(&attached[from].name, *dst).unwrap_or_else(|e| {
                panic!(
                    "{} -> {} ({dst}): {e}",
                    attached[from].name, attached[to].name
                )
            });
        }
    }

    // DEL frees host-local's records of that pod only.
    let file = |host: usize, rail: usize, addr: &IpAddr| {
        s.external_ipam_dir(host)
            .join(format!("{}.rail{rail}", s.network))
            .join(addr.to_string())
    };
    let gone = attached.remove(1);
    pods::detach(&s, 0, &gone.name).expect("DEL");
    c.state.pods.retain(|p| p.name != gone.name);
    for (rail, addr) in gone.addresses.iter().enumerate() {
        assert!(!file(0, rail, addr).exists(), "{addr} still held");
    }
    for (rail, addr) in attached[0].addresses.iter().enumerate() {
        assert!(
            file(0, rail, addr).exists(),
            "{addr} released with the other pod"
        );
    }
}
