//! The offline `railyard plan` command, run as users run it.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn railyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_railyard"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("railyard runs")
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn plan_prints_the_documented_json_shape() {
    let out = railyard(&[
        "plan",
        "-f",
        "docs/examples/network.yaml",
        "--inventory",
        "docs/examples/hosts.yaml",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let net = &v["networks"][0];
    assert_eq!(net["name"], "multi-nic-sample");
    assert_eq!(net["interfaces"][1]["index"], 1);
    assert_eq!(net["interfaces"][1]["netAddress"], "10.0.2.0/24");
    assert_eq!(net["interfaces"][1]["cidr"], "192.168.64.0/18");
    let c = &net["hosts"][2];
    assert_eq!(c["name"], "node-c");
    assert_eq!(c["index"], 2);
    assert_eq!(
        c["blocks"][1],
        serde_json::json!({"interface": 1, "nic": "eth2", "nicAddress": "10.0.2.13", "cidr": "192.168.66.0/24"})
    );
    assert_eq!(net["unplanned"], serde_json::json!([]));
}

#[test]
fn routes_print_one_hosts_routes() {
    let out = railyard(&[
        "plan",
        "-f",
        "docs/examples/network.yaml",
        "--inventory",
        "docs/examples/hosts.yaml",
        "--routes",
        "node-a",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let routes = v.as_array().unwrap();
    assert_eq!(routes.len(), 4);
    let table = railyard_core::route_table_for("multi-nic-sample");
    assert_eq!(
        routes[0],
        serde_json::json!({"dst": "192.168.1.0/24", "gateway": "10.0.1.12", "dev": "eth1", "table": table})
    );
    assert_eq!(routes[3]["dst"], "192.168.66.0/24");
    assert_eq!(routes[3]["dev"], "eth2");
}

#[test]
fn exhaustion_is_reported_in_unplanned() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(
        &dir,
        "n.yaml",
        "metadata: {name: tiny}\nspec:\n  subnet: 192.168.0.0/24\n  ipam: '{\"hostBlock\": 1, \"interfaceBlock\": 0}'\n",
    );
    let out = railyard(&[
        "plan",
        "-f",
        &net,
        "--inventory",
        "docs/examples/hosts.yaml",
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["networks"][0]["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(v["networks"][0]["unplanned"][0]["host"], "node-c");
}

#[test]
fn invalid_input_exits_nonzero_naming_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "metadata: {name: n}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 12, \"interfaceBlock\": 4}'\n",
            "- name: h\n  nics: [{name: eth0, addresses: [10.0.0.1/24]}]\n",
            vec!["spec.ipam.hostBlock", "\"12\"", "pod bits"],
        ),
        (
            "metadata: {name: n}\nspec:\n  subnet: 300.1.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
            "- name: h\n",
            vec!["spec.subnet", "300.1.0.0/16"],
        ),
        (
            "metadata: {name: n}\nspec:\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
            "- name: h\n  nics: [{name: eth0, addresses: [10.0.0.300/24]}]\n",
            vec!["hosts.yaml", "10.0.0.300/24"],
        ),
        (
            "metadata: {name: n}\nspec:\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
            "- name: h\n- name: h\n",
            vec!["hosts[1].name", "\"h\"", "twice"],
        ),
    ];
    for (net, hosts, needles) in cases {
        let n = write(&dir, "net.yaml", net);
        let h = write(&dir, "hosts.yaml", hosts);
        let out = railyard(&["plan", "-f", &n, "--inventory", &h, "-o", "json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {net}");
        assert!(out.stdout.is_empty());
        for needle in needles {
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }
    let out = railyard(&[
        "plan",
        "-f",
        "missing.yaml",
        "--inventory",
        "docs/examples/hosts.yaml",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
    let out = railyard(&[
        "plan",
        "-f",
        "docs/examples/network.yaml",
        "--inventory",
        "docs/examples/hosts.yaml",
        "--routes",
        "ghost",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"ghost\" is not in the inventory"));
}

#[test]
fn capacity_shows_the_host_block_trade_off() {
    let out = railyard(&["capacity", "-f", "docs/examples/network.yaml", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let six = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["hostBlock"] == 6)
        .unwrap();
    assert_eq!(six["hosts"], 64);
    assert_eq!(six["podsPerHostPerRail"], 253);
    assert_eq!(six["current"], true);
    let table = railyard(&["capacity", "-f", "docs/examples/network.yaml"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("6 *") && text.contains("PODS/HOST/RAIL"),
        "{text}"
    );
}

#[test]
fn a_routed_networks_routes_go_through_the_hosts_own_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(
        &dir,
        "net.yaml",
        r#"
metadata: {name: routed}
spec:
  subnet: "192.168.0.0/16"
  ipam: {hostBlock: 6, interfaceBlock: 2}
  masterNets: [10.110.0.0/16, 10.111.0.0/16]
  fabric: {mode: routed, bgp: {peerAsn: 65000}}
"#,
    );
    let hosts = write(
        &dir,
        "hosts.yaml",
        r#"
hosts:
- name: a
  nics:
  - {name: rail0, addresses: [10.110.0.1/31]}
  - {name: rail1, addresses: [10.111.0.1/31]}
- name: b
  nics:
  - {name: rail0, addresses: [10.110.0.3/31]}
  - {name: rail1, addresses: [10.111.0.3/31]}
"#,
    );
    let out = railyard(&[
        "plan",
        "-f",
        &net,
        "--inventory",
        &hosts,
        "--routes",
        "a",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} via {} dev {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap(),
                r["dev"].as_str().unwrap()
            )
        })
        .collect();
    // b's blocks, each through a's own leaf on the rail (the other end of
    // a's /31), not via b's NIC address, which is not on-link for a.
    assert_eq!(
        shown,
        [
            "192.168.1.0/24 via 10.110.0.0 dev rail0",
            "192.168.65.0/24 via 10.111.0.0 dev rail1"
        ]
    );
}
