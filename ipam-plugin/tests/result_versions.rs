//! Golden JSON for the result in every supported version, and reading
//! results (prevResult, delegate output) of every version back.

use railyard_ipam_plugin::cni::{CniResult, CniVersion, Dns, Interface, IpConfig, Route};
use railyard_ipam_plugin::error::codes;
use serde_json::{json, Value};

fn full_result() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "net1-0".into(),
                mac: Some("02:00:c0:a8:40:05".into()),
                mtu: Some(9000),
                sandbox: Some("/var/run/netns/pod".into()),
                socket_path: Some("/run/vhost.sock".into()),
                pci_id: Some("0000:3b:00.0".into()),
                rail: None,
                choice: None,
                pod_mac: None,
            },
            Interface {
                name: "eth1".into(),
                ..Interface::default()
            },
        ],
        ips: vec![
            IpConfig {
                address: "192.168.64.5/24".parse().unwrap(),
                gateway: Some("192.168.64.1".parse().unwrap()),
                interface: Some(0),
            },
            IpConfig {
                address: "fd00:1::5/64".parse().unwrap(),
                gateway: None,
                interface: Some(0),
            },
        ],
        routes: vec![
            Route {
                mtu: Some(9000),
                advmss: Some(8960),
                priority: Some(100),
                table: Some(1001),
                scope: Some(0),
                ..Route::new(
                    "192.168.0.0/16".parse().unwrap(),
                    Some("192.168.64.1".parse().unwrap()),
                )
            },
            Route::new("0.0.0.0/0".parse().unwrap(), None),
        ],
        dns: Dns {
            nameservers: vec!["10.96.0.10".into()],
            domain: Some("cluster.local".into()),
            search: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        },
    }
}

fn dns_json() -> Value {
    json!({
        "nameservers": ["10.96.0.10"],
        "domain": "cluster.local",
        "search": ["svc.cluster.local"],
        "options": ["ndots:5"]
    })
}

fn golden_0x(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": "net1-0", "mac": "02:00:c0:a8:40:05", "sandbox": "/var/run/netns/pod"},
            {"name": "eth1"}
        ],
        "ips": [
            {"version": "4", "address": "192.168.64.5/24", "gateway": "192.168.64.1", "interface": 0},
            {"version": "6", "address": "fd00:1::5/64", "interface": 0}
        ],
        "routes": [
            {"dst": "192.168.0.0/16", "gw": "192.168.64.1"},
            {"dst": "0.0.0.0/0"}
        ],
        "dns": dns_json()
    })
}

#[test]
fn golden_0_3_0_0_3_1_0_4_0_tag_each_ip_with_its_version() {
    for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
        assert_eq!(full_result().to_value(v), golden_0x(v.as_str()), "{v}");
    }
}

#[test]
fn golden_1_0_0_drops_ip_version_and_has_no_1_1_attributes() {
    let expected = json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "net1-0", "mac": "02:00:c0:a8:40:05", "sandbox": "/var/run/netns/pod"},
            {"name": "eth1"}
        ],
        "ips": [
            {"address": "192.168.64.5/24", "gateway": "192.168.64.1", "interface": 0},
            {"address": "fd00:1::5/64", "interface": 0}
        ],
        "routes": [
            {"dst": "192.168.0.0/16", "gw": "192.168.64.1"},
            {"dst": "0.0.0.0/0"}
        ],
        "dns": dns_json()
    });
    assert_eq!(full_result().to_value(CniVersion::V1_0_0), expected);
}

#[test]
fn golden_1_1_0_carries_route_and_interface_attributes() {
    let expected = json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "net1-0", "mac": "02:00:c0:a8:40:05", "mtu": 9000,
             "sandbox": "/var/run/netns/pod", "socketPath": "/run/vhost.sock",
             "pciID": "0000:3b:00.0"},
            {"name": "eth1"}
        ],
        "ips": [
            {"address": "192.168.64.5/24", "gateway": "192.168.64.1", "interface": 0},
            {"address": "fd00:1::5/64", "interface": 0}
        ],
        "routes": [
            {"dst": "192.168.0.0/16", "gw": "192.168.64.1", "mtu": 9000, "advmss": 8960,
             "priority": 100, "table": 1001, "scope": 0},
            {"dst": "0.0.0.0/0"}
        ],
        "dns": dns_json()
    });
    assert_eq!(full_result().to_value(CniVersion::V1_1_0), expected);
}

#[test]
fn golden_ipam_result_is_abbreviated() {
    let ipam = CniResult {
        ips: vec![IpConfig {
            address: "192.168.65.7/24".parse().unwrap(),
            gateway: None,
            interface: None,
        }],
        ..CniResult::default()
    };
    assert_eq!(
        ipam.to_value(CniVersion::V0_3_1),
        json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "192.168.65.7/24"}]})
    );
    assert_eq!(
        ipam.to_value(CniVersion::V1_1_0),
        json!({"cniVersion": "1.1.0", "ips": [{"address": "192.168.65.7/24"}]})
    );
    assert_eq!(
        CniResult::default().to_value(CniVersion::V1_0_0),
        json!({"cniVersion": "1.0.0"})
    );
}

#[test]
fn every_version_reads_back_what_it_wrote() {
    for v in CniVersion::ALL {
        let written = full_result().to_value(v);
        let (read_version, read) = CniResult::from_value(&written, "prevResult", v).unwrap();
        assert_eq!(read_version, v);
        // What the version cannot express is gone; nothing else changed.
        assert_eq!(read.to_value(v), written, "{v}");
        assert_eq!(read.ips, full_result().ips, "{v}");
    }
}

#[test]
fn prev_result_converts_across_versions() {
    // The 0.4.0 prevResult from the spec's own chaining example.
    let spec_example = json!({
        "ips": [{"version": "4", "address": "10.0.0.5/32", "interface": 2}],
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "veth3243", "mac": "55:44:33:22:11:11"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
        ],
        "dns": {"nameservers": ["10.1.0.1"]}
    });
    let (v, result) =
        CniResult::from_value(&spec_example, "prevResult", CniVersion::V0_4_0).unwrap();
    assert_eq!(v, CniVersion::V0_4_0);
    assert_eq!(result.ips[0].interface, Some(2));
    assert_eq!(
        result.interfaces[2].sandbox.as_deref(),
        Some("/var/run/netns/blue")
    );
    assert_eq!(
        result.to_value(CniVersion::V1_1_0)["ips"],
        json!([{"address": "10.0.0.5/32", "interface": 2}])
    );
    // A 1.1.0 result with route attributes written for a 0.3.1 runtime.
    let newer = full_result().to_value(CniVersion::V1_1_0);
    let (_, canonical) = CniResult::from_value(&newer, "prevResult", CniVersion::V1_1_0).unwrap();
    assert_eq!(canonical.to_value(CniVersion::V0_3_1), golden_0x("0.3.1"));
}

#[test]
fn own_cni_version_wins_over_fallback() {
    let v = json!({"cniVersion": "0.3.0", "ips": [{"version": "4", "address": "10.0.0.1/8"}]});
    let (version, _) = CniResult::from_value(&v, "prevResult", CniVersion::V1_1_0).unwrap();
    assert_eq!(version, CniVersion::V0_3_0);
}

#[test]
fn go_style_nulls_and_empty_dns_are_accepted() {
    // host-local at 0.3.1 prints `"dns": {}`; Go structs marshal nil slices as null.
    let v = json!({"cniVersion": "1.0.0", "interfaces": null, "ips": null, "routes": null,
                   "dns": {"nameservers": null, "search": null}});
    let (_, r) = CniResult::from_value(&v, "prevResult", CniVersion::V1_0_0).unwrap();
    assert_eq!(r, CniResult::default());
    let host_local = br#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.8.0.2/24","gateway":"10.8.0.1"}],"dns":{}}"#;
    let (_, r) = CniResult::from_slice(host_local, "result", CniVersion::V0_3_1).unwrap();
    assert_eq!(r.ips[0].gateway, Some("10.8.0.1".parse().unwrap()));
}

#[test]
fn malformed_results_name_the_field() {
    let cases = [
        (
            json!({"ips": [{"address": "10.0.0.300/24"}]}),
            "`ips[0].address` = \"10.0.0.300/24\": invalid IP address syntax",
        ),
        (
            json!({"ips": [{"address": "10.0.0.3/24", "gateway": 7}]}),
            "`ips[0].gateway` = 7",
        ),
        (
            json!({"ips": [{"version": "6", "address": "10.0.0.3/24"}]}),
            "\"6\" does not match",
        ),
        (json!({"routes": [{"gw": "10.0.0.1"}]}), "`routes[0]`"),
        (
            json!({"interfaces": [{"name": "eth0", "mtu": -1}]}),
            "`interfaces[0].mtu`",
        ),
        (
            json!({"dns": {"nameservers": "10.0.0.1"}}),
            "`dns.nameservers`",
        ),
        (json!({"cniVersion": 1}), "`cniVersion`"),
        (json!([1, 2]), "expected a JSON object"),
    ];
    for (value, needle) in cases {
        let err = CniResult::from_value(&value, "prevResult", CniVersion::V0_4_0).unwrap_err();
        assert_eq!(err.code(), codes::DECODE_FAILURE, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("prevResult") && msg.contains(needle), "{msg}");
    }
    let err = CniResult::from_slice(b"{oops", "result", CniVersion::V1_0_0).unwrap_err();
    assert_eq!(err.code(), codes::DECODE_FAILURE);
}

#[test]
fn unsupported_result_version_is_code_1() {
    let old = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.1/8"}});
    let err = CniResult::from_value(&old, "prevResult", CniVersion::V1_0_0).unwrap_err();
    assert_eq!(err.code(), codes::INCOMPATIBLE_VERSION);
    assert!(err.to_string().contains("prevResult.cniVersion"), "{err}");
}
