//! The deploy manifests say what docs/kubernetes.md says of them: the namespace
//! admits the route-daemon's privileges (Pod Security level `privileged`), and the
//! DaemonSet asks for exactly the privileges documented there.

use serde_json::{json, Value};

fn manifest(file: &str) -> Value {
    let path = format!(
        "{}/../../deploy/kubernetes/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_namespace_enforces_the_privileged_pod_security_level() {
    let ns = manifest("namespace.yaml");
    assert_eq!(ns["metadata"]["name"], "railyard-system");
    let labels = &ns["metadata"]["labels"];
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels[format!("pod-security.kubernetes.io/{mode}")],
            "privileged",
            "{mode}"
        );
    }
}

#[test]
fn the_route_daemon_asks_for_what_the_docs_list() {
    let ds = manifest("route-daemon.yaml");
    assert_eq!(ds["metadata"]["namespace"], "railyard-system");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let daemon = &pod["containers"][0];
    assert_eq!(daemon["name"], "route-daemon");
    assert_eq!(
        daemon["securityContext"]["capabilities"],
        json!({"drop": ["ALL"], "add": ["NET_ADMIN"]}),
        "NET_ADMIN only (no SYS_ADMIN: the daemon enters no pod network namespace)"
    );
    assert_eq!(daemon["securityContext"]["privileged"], Value::Null);
    let host_paths: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert_eq!(
        host_paths,
        vec!["/opt/cni/bin", "/run/railyard", "/var/lib/railyard"]
    );
}
