//! The leak sweep's permissions as shipped (deploy/kubernetes): exactly what
//! docs/kubernetes.md and docs/design/leak-sweep.md say (get and list pods,
//! get nodes and namespaces, nothing else), bound to the DaemonSet's account, whose token the
//! DaemonSet mounts. That they are enough is shown against a real API server
//! by tests/tests/k8s/leak_sweep.rs.

use serde::Deserialize;
use serde_json::{json, Value};

fn documents(file: &str) -> Vec<Value> {
    let path = format!("{}/../deploy/kubernetes/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_route_daemon_may_read_pods_nodes_and_namespaces_and_nothing_else() {
    let rbac = documents("rbac.yaml");
    let role = find(&rbac, "ClusterRole", "railyard-route-daemon");
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["nodes", "namespaces"], "verbs": ["get"]},
        ])
    );
    let binding = find(&rbac, "ClusterRoleBinding", "railyard-route-daemon");
    assert_eq!(binding["roleRef"]["name"], "railyard-route-daemon");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "railyard-route-daemon", "namespace": "railyard-system"}])
    );
    // No other binding hands the route-daemon's account anything.
    let bound: Vec<&Value> = rbac
        .iter()
        .filter(|d| {
            d["subjects"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "railyard-route-daemon"))
        })
        .collect();
    assert_eq!(bound.len(), 1);

    let ds = &documents("route-daemon.yaml")[0];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "railyard-route-daemon");
    assert_eq!(pod["automountServiceAccountToken"], true);
}
