//! The demo's core path (`make demo-k8s`), through the real Multus thin plugin:
//! a MultiNicNetwork applied with kubectl becomes a NAD, two Pods on two hosts
//! are attached by Multus calling `railyard-cni` (one pod picks a single rail
//! with `cni-args`), Multus writes their network-status, and the pods reach each
//! other on the rail they share. Its own control plane: its controller leads the
//! local cluster's etcd, not the shared test planner's.
//!
//! Needs root (network namespaces). Management id 245.

use std::net::IpAddr;

use railyard_e2e::cluster::pods::ping;
use serde_json::Value;

use crate::demo::Demo;

/// The railyard addresses (not the loopback default network's) in a network-status.
fn railyard_ips(status: &Value) -> Vec<(String, IpAddr)> {
    status
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["default"] != true)
        .flat_map(|s| {
            let iface = s["interface"].as_str().unwrap_or_default().to_owned();
            s["ips"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |ip| Some((iface.clone(), ip.as_str()?.parse().ok()?)))
        })
        .collect()
}

#[test]
fn pods_attach_through_multus_and_reach_each_other() {
    let mut demo = Demo::up("k8s-mx", 245, "demo");
    let d = demo.get();

    let a = d
        .attach("pod-a", 0, r#"[{"name": "rails"}]"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let b = d
        .attach(
            "pod-b",
            1,
            r#"[{"name": "rails", "cni-args": {"masters": ["rail1"]}}]"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));

    let a_ips = railyard_ips(&d.network_status("pod-a").unwrap_or_else(|e| panic!("{e}")));
    let b_ips = railyard_ips(&d.network_status("pod-b").unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(a_ips.len(), 2, "pod-a has one address per rail: {a_ips:?}");
    assert_eq!(
        b_ips.len(),
        1,
        "pod-b's cni-args pick rail1 only: {b_ips:?}"
    );
    // Rail 1 is 192.168.64.0/18 (interfaceBlock 2 of the /16).
    let rail1: ipnet::IpNet = "192.168.64.0/18".parse().expect("a CIDR");
    let on_rail1 = |ip: &IpAddr| rail1.contains(ip);
    assert!(on_rail1(&b_ips[0].1), "{b_ips:?}");
    let a_rail1 = a_ips
        .iter()
        .find(|(_, ip)| on_rail1(ip))
        .expect("pod-a on rail1");
    ping(&a.netns, b_ips[0].1).unwrap_or_else(|e| panic!("pod-a -> pod-b on rail1: {e}"));
    ping(&b.netns, a_rail1.1).unwrap_or_else(|e| panic!("pod-b -> pod-a on rail1: {e}"));

    // The check through the API finds both pods and connects every probe.
    let out = d.check_command().output().expect("run railyard check");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "railyard check --kubernetes failed:\n{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{table}");
    assert!(
        table.contains("pod-a") && table.contains("pod-b"),
        "{table}"
    );
    assert!(table.contains("2 of 2 probes connected"), "{table}");
    // One transfer on rail 1, the rail both pods hold.
    assert!(
        table.contains("1  pod-a -> pod-b") && table.contains("Mbit/s"),
        "{table}"
    );
    // Static addresses: the selection element's `ips` reach railyard as
    // runtimeConfig.ips (the NAD declares the capability), on host 0's blocks.
    let wanted: Vec<IpAddr> = a_ips
        .iter()
        .map(|(_, ip)| match ip {
            IpAddr::V4(v4) => {
                let mut o = v4.octets();
                o[3] += 30;
                IpAddr::from(o)
            }
            IpAddr::V6(_) => *ip,
        })
        .collect();
    let ips: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    let c = d
        .attach(
            "pod-c",
            0,
            &serde_json::json!([{"name": "rails", "ips": ips}]).to_string(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c_ips: Vec<IpAddr> =
        railyard_ips(&d.network_status("pod-c").unwrap_or_else(|e| panic!("{e}")))
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
    c_ips.sort();
    let mut want = wanted.clone();
    want.sort();
    assert_eq!(
        c_ips, want,
        "pod-c holds the addresses its selection asked for"
    );
    let c_rail1 = *c_ips
        .iter()
        .find(|ip| on_rail1(ip))
        .expect("pod-c on rail1");
    ping(&b.netns, c_rail1).unwrap_or_else(|e| panic!("pod-b -> pod-c on rail1: {e}"));
    drop(c);
}
