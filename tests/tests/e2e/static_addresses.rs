//! Static addresses through the CNI `ips` capability (`runtimeConfig.ips`, what
//! Multus fills from a network selection element), with the real daemons:
//! the pod gets exactly the addresses it asked for, is connected, keeps them
//! when recreated under the same name on the same host (a StatefulSet pod),
//! and an address that cannot be had is refused, naming it, with nothing
//! left behind. An address belongs to its host's block: a pod recreated on
//! another host cannot take it there (docs/design/static-addresses.md).

use std::net::IpAddr;

use crate::common::{spec, TestCluster};
use railyard_e2e::cluster::pods;

/// The address `n` past `base` in the same family.
fn offset(base: IpAddr, n: u8) -> IpAddr {
    match base {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            o[3] = o[3].wrapping_add(n);
            IpAddr::from(o)
        }
        IpAddr::V6(a) => {
            let mut o = a.octets();
            o[15] = o[15].wrapping_add(n);
            IpAddr::from(o)
        }
    }
}

#[test]
fn a_pod_gets_the_addresses_it_asks_for_keeps_them_when_recreated_and_a_taken_one_is_refused() {
    let mut s = spec("e2e-static", 240);
    s.pods = 1;
    // Pods made here are not in the cluster's state: a killed earlier run
    // may have left their namespaces.
    for (i, k) in [(0, 7), (0, 8), (1, 8)] {
        let _ = railyard_e2e::cluster::cmd::netns_del(&s.pod(i, k));
    }
    let mut c = TestCluster::up(s.clone());
    // Host 0's pod shows its blocks: ask for addresses 40 further on.
    let first = c
        .state
        .pods
        .iter()
        .find(|p| p.host_index == 0)
        .expect("pod")
        .clone();
    let wanted: Vec<IpAddr> = first.addresses.iter().map(|a| offset(*a, 40)).collect();
    let rc =
        serde_json::json!({"ips": wanted.iter().map(|a| format!("{a}/24")).collect::<Vec<_>>()});

    let pod = pods::attach_with(&s, 0, 7, Some(&rc)).expect("static pod attaches");
    let mut got = pod.addresses.clone();
    got.sort();
    let mut want = wanted.clone();
    want.sort();
    assert_eq!(got, want, "the pod holds exactly what it asked for");
    c.state.pods.push(pod.clone());
    c.distinct_addresses();
    c.assert_connected(None);

    // Recreated under the same name on the same host: the same addresses.
    pods::detach(&s, 0, &pod.name).expect("DEL");
    c.state.pods.retain(|p| p.name != pod.name);
    let again = pods::attach_with(&s, 0, 7, Some(&rc)).expect("recreated");
    let mut got = again.addresses.clone();
    got.sort();
    assert_eq!(got, want);
    c.state.pods.push(again);
    c.assert_connected(None);

    // Another pod asking for one of them is refused, naming it and who holds it.
    let err = pods::attach_with(&s, 0, 8, Some(&rc)).expect_err("taken");
    let text = err.to_string();
    assert!(
        text.contains(&wanted[0].to_string()) && text.contains(&pod.name),
        "{text}"
    );
    // On another host the address is outside its blocks: refused by name.
    let err = pods::attach_with(&s, 1, 8, Some(&rc)).expect_err("other host");
    let text = err.to_string();
    assert!(
        text.contains(&wanted[0].to_string()) && text.contains("none of the blocks"),
        "{text}"
    );
    // Neither refusal left a namespace or an address.
    for name in [s.pod(0, 8), s.pod(1, 8)] {
        assert!(
            !std::path::Path::new("/run/netns").join(&name).exists(),
            "{name}"
        );
    }
    c.distinct_addresses();
    c.assert_connected(None);
    pods::detach(&s, 0, &s.pod(0, 7)).expect("DEL");
}
