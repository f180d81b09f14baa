//! The controller's API calls, against a mocked API server.
//!
//! No kube-apiserver can be installed on these machines, so kube's `Client` runs
//! over a `tower_test::mock` service and a small fake answers it
//! (`support/fake_api.rs`): LIST and WATCH of MultiNicNetworks, NADs and namespaces
//! (watch bodies stay open and the test pushes events into them), and every write
//! is recorded so the test can assert the exact request: method, path,
//! `fieldManager=railyard&force=true`, the server-side apply content type, owner
//! references and the status body. etcd is the in-memory store, which passes the
//! same conformance suite as the real one.

#[path = "support/fake_api.rs"]
mod fake_api;

use std::sync::Arc;
use std::time::Duration;

use fake_api::{
    assert_server_side_apply, controller_config, next_matching, settle, start_controller, Seen,
    Server, NADS, NAMESPACES, NETWORKS, WAIT,
};
use railyard_core::status::{Condition, NetworkStatus};
use railyard_core::{keys, NetworkManifest};
use railyard_k8s as k8s;
use railyard_store::{Compare, MemStore, Store};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::timeout;

const SAMPLE: &str = include_str!("../../../docs/examples/network.yaml");
const UID: &str = "0c1d2e3f-aaaa-bbbb-cccc-000000000001";

fn network(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v: Value = serde_yaml::from_str(SAMPLE).unwrap();
    v["metadata"]["uid"] = json!(UID);
    v["metadata"]["resourceVersion"] = json!("1");
    v["metadata"]["generation"] = json!(1);
    edit(&mut v);
    v
}

fn is_nad_apply(s: &Seen) -> bool {
    s.method == "PATCH" && s.path == "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/multi-nic-sample"
}

fn is_status_patch(s: &Seen) -> bool {
    s.method == "PATCH"
        && s.path == "/apis/railyard.dev/v1/multinicnetworks/multi-nic-sample/status"
}

fn condition(status_patch: &Seen, kind: &str) -> Value {
    status_patch.body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} condition in {}", status_patch.body))
}

#[tokio::test]
async fn applies_the_nad_with_owner_and_patches_the_status() {
    let (server, client, mut seen) =
        Server::start(vec![network(|_| {})], &["default", "kube-system"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);

    let apply = next_matching(&mut seen, "NAD apply", is_nad_apply).await;
    assert_server_side_apply(&apply);
    let nad = &apply.body;
    assert_eq!(nad["apiVersion"], "k8s.cni.cncf.io/v1");
    assert_eq!(nad["kind"], "NetworkAttachmentDefinition");
    assert_eq!(nad["metadata"]["namespace"], "default");
    assert_eq!(
        nad["metadata"]["ownerReferences"],
        json!([{
            "apiVersion": "railyard.dev/v1",
            "kind": "MultiNicNetwork",
            "name": "multi-nic-sample",
            "uid": UID,
            "controller": true,
            "blockOwnerDeletion": true,
        }])
    );
    assert_eq!(
        nad["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "railyard"
    );
    let config: Value = serde_json::from_str(nad["spec"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["type"], "railyard-cni");
    assert_eq!(config["delegate"], json!({"type": "ipvlan", "mode": "l3"}));

    let status = next_matching(&mut seen, "status patch", is_status_patch).await;
    assert_server_side_apply(&status);
    assert_eq!(status.body["apiVersion"], "railyard.dev/v1");
    assert_eq!(status.body["kind"], "MultiNicNetwork");
    assert_eq!(
        condition(&status, "Ready")["status"],
        "Unknown",
        "not planned yet"
    );
    assert_eq!(condition(&status, "Invalid")["status"], "False");
    assert_eq!(status.body["status"]["nadName"], "multi-nic-sample");

    // The spec reached etcd exactly as `railyard apply` writes it, plus the UID.
    let stored = store
        .get(&keys::network("multi-nic-sample"))
        .await
        .unwrap()
        .expect("spec stored");
    let manifest: NetworkManifest = stored.decode_json().unwrap();
    let from_file: NetworkManifest = serde_yaml::from_str(SAMPLE).unwrap();
    assert_eq!(manifest.spec, from_file.spec);
    assert_eq!(manifest.metadata.annotations["railyard.dev/k8s-uid"], UID);

    // Only railyard's NADs are watched.
    let nad_queries = server.queries_of(NADS);
    assert!(
        nad_queries
            .iter()
            .all(|q| q.get("labelSelector").map(String::as_str)
                == Some("app.kubernetes.io/managed-by=railyard")),
        "{nad_queries:?}"
    );
    task.abort();
}

#[tokio::test]
async fn the_status_follows_the_planner_status_in_etcd() {
    let (_server, client, mut seen) = Server::start(vec![network(|_| {})], &["default"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);
    let first = next_matching(&mut seen, "status patch", is_status_patch).await;
    assert_eq!(condition(&first, "Ready")["status"], "Unknown");

    // As JSON, the form the planner writes (later fields have serde defaults).
    let planned: NetworkStatus = serde_json::from_value(json!({
        "network": "multi-nic-sample",
        "condition": Condition::Ready,
        "hostsPlanned": 12,
        "hostsDeparted": 0,
        "hostsUnplanned": [],
        "interfaces": 4,
        "capacity": {"hostsTotal": 64, "hostsFree": 52, "interfacesTotal": 4, "podsPerHostPerRail": [254]},
        "planRevision": 77,
    }))
    .unwrap();
    store
        .put(
            &keys::status("multi-nic-sample"),
            serde_json::to_vec(&planned).unwrap(),
            None,
        )
        .await
        .unwrap();
    let ready = next_matching(&mut seen, "Ready status patch", |s| {
        is_status_patch(s) && condition(s, "Ready")["status"] == "True"
    })
    .await;
    assert_server_side_apply(&ready);
    let st = &ready.body["status"];
    assert_eq!(
        (st["hostsPlanned"].as_i64(), st["planRevision"].as_i64()),
        (Some(12), Some(77))
    );
    assert_eq!(st["capacity"]["hostsFree"], 52);
    assert_eq!(
        condition(&ready, "Ready")["message"],
        "12 hosts planned on 4 rails"
    );
    task.abort();
}

#[tokio::test]
async fn a_deleted_nad_is_applied_again() {
    let (server, client, mut seen) = Server::start(vec![network(|_| {})], &["default"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);
    let apply = next_matching(&mut seen, "NAD apply", is_nad_apply).await;

    // The server reports the created NAD, as a real one would.
    let mut created = apply.body.clone();
    created["metadata"]["uid"] = json!("nad-uid-1");
    created["metadata"]["resourceVersion"] = json!("2");
    server.wait_watching(NADS).await;
    server.push(NADS, "ADDED", &created);
    let quiet = settle(&mut seen, Duration::from_millis(700)).await;
    // With the NAD in the cache, later reconciles leave it alone.
    let mut created_again = created.clone();
    created_again["metadata"]["resourceVersion"] = json!("3");
    server.push(NADS, "MODIFIED", &created_again);
    let after_modify = settle(&mut seen, Duration::from_millis(700)).await;
    assert!(
        !after_modify.iter().any(is_nad_apply),
        "an unchanged NAD is not re-applied: {after_modify:?} (before: {quiet:?})"
    );

    server.push(NADS, "DELETED", &created_again);
    let again = next_matching(&mut seen, "NAD re-apply after delete", is_nad_apply).await;
    assert_server_side_apply(&again);
    assert_eq!(again.body["spec"], apply.body["spec"]);
    assert_eq!(
        again.body["metadata"]["ownerReferences"],
        apply.body["metadata"]["ownerReferences"]
    );
    task.abort();
}

#[tokio::test]
async fn an_invalid_spec_gets_invalid_status_and_no_nad() {
    let bad = network(|v| v["spec"]["ipam"] = json!(r#"{"hostBlock": 30, "interfaceBlock": 2}"#));
    let (_server, client, mut seen) = Server::start(vec![bad], &["default"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);
    let status = next_matching(&mut seen, "status patch", is_status_patch).await;
    let invalid = condition(&status, "Invalid");
    assert_eq!(invalid["status"], "True");
    assert_eq!(invalid["reason"], "InvalidSpec");
    let message = invalid["message"].as_str().unwrap();
    assert!(
        message.contains("spec.ipam.hostBlock") && message.contains("30"),
        "{message}"
    );
    let later = settle(&mut seen, Duration::from_millis(700)).await;
    assert!(
        !later
            .iter()
            .any(|s| s.path.contains("network-attachment-definitions")),
        "{later:?}"
    );
    assert!(
        store
            .get(&keys::network("multi-nic-sample"))
            .await
            .unwrap()
            .is_none(),
        "no spec in etcd"
    );
    task.abort();
}

#[tokio::test]
async fn a_network_without_namespaces_gets_a_nad_in_each_and_in_new_ones() {
    let all = network(|v| v["spec"]["namespaces"] = json!([]));
    let (server, client, mut seen) = Server::start(vec![all], &["default", "team-a"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, store, None);
    let nad_in = |ns: &'static str| {
        move |s: &Seen| {
            s.method == "PATCH" && s.path == format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/multi-nic-sample")
        }
    };
    next_matching(&mut seen, "NAD in default", nad_in("default")).await;
    server.wait_watching(NAMESPACES).await;
    server.push(
        NAMESPACES,
        "ADDED",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}}),
    );
    let created = next_matching(&mut seen, "NAD in the new namespace", nad_in("team-b")).await;
    assert_server_side_apply(&created);
    task.abort();
}

#[tokio::test]
async fn a_deposed_leader_writes_nothing_to_etcd_and_applies_no_nad() {
    let (_server, client, mut seen) = Server::start(vec![network(|_| {})], &["default"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    // The guard of an election key that no longer exists.
    let stale = Compare::CreateRevision {
        key: format!("{}0000000000000001", keys::ELECTION),
        rev: 1,
    };
    let task = start_controller(client, Arc::clone(&store), Some(stale));
    let writes = settle(&mut seen, Duration::from_millis(1500)).await;
    assert!(!writes.iter().any(is_nad_apply), "{writes:?}");
    assert!(store
        .get(&keys::network("multi-nic-sample"))
        .await
        .unwrap()
        .is_none());
    task.abort();
}

#[tokio::test]
async fn the_controller_runs_only_while_this_replica_leads_the_planner() {
    let (server, client, mut seen) = Server::start(vec![network(|_| {})], &["default"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let other = format!("{}00000000000000aa", keys::ELECTION);
    store
        .put(&other, b"someone-else".to_vec(), None)
        .await
        .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(k8s::run(
        client,
        Arc::clone(&store),
        controller_config(),
        stop_rx,
    ));
    let idle = settle(&mut seen, Duration::from_millis(500)).await;
    assert!(
        idle.is_empty() && !server.watching(NETWORKS),
        "a standby stays idle: {idle:?}"
    );

    // The other planner resigns; this one ("me") campaigns and leads.
    store.delete(&other).await.unwrap();
    store
        .put(
            &format!("{}00000000000000bb", keys::ELECTION),
            b"me".to_vec(),
            None,
        )
        .await
        .unwrap();
    next_matching(&mut seen, "NAD apply once leading", is_nad_apply).await;
    assert!(store
        .get(&keys::network("multi-nic-sample"))
        .await
        .unwrap()
        .is_some());

    stop.send(true).unwrap();
    timeout(WAIT, task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn the_etcd_spec_of_a_deleted_network_is_removed_but_cli_specs_stay() {
    let (_server, client, mut seen) = Server::start(Vec::new(), &["default"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut from_k8s: NetworkManifest = serde_yaml::from_str(SAMPLE).unwrap();
    from_k8s
        .metadata
        .annotations
        .insert("railyard.dev/k8s-uid".into(), UID.into());
    store
        .put(
            &keys::network("multi-nic-sample"),
            serde_json::to_vec(&from_k8s).unwrap(),
            None,
        )
        .await
        .unwrap();
    let mut from_cli: NetworkManifest = serde_yaml::from_str(SAMPLE).unwrap();
    from_cli.metadata.name = "cli-net".into();
    store
        .put(
            &keys::network("cli-net"),
            serde_json::to_vec(&from_cli).unwrap(),
            None,
        )
        .await
        .unwrap();
    let task = start_controller(client, Arc::clone(&store), None);
    timeout(WAIT, async {
        while store
            .get(&keys::network("multi-nic-sample"))
            .await
            .unwrap()
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the orphaned spec is deleted");
    assert!(store
        .get(&keys::network("cli-net"))
        .await
        .unwrap()
        .is_some());
    drop(settle(&mut seen, Duration::from_millis(10)).await);
    task.abort();
}
