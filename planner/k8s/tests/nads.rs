//! NADs that cannot be written, against a mocked API server: a namespace that
//! refuses one, two networks or another controller claiming one name, Multus's
//! CRD missing, and an annotation railyard stopped setting.
//!
//! The refusals are staged in the fake (`support/fake_api.rs`) as a real
//! apiserver answers them (a quota's 403 Status, a second controller's 422, a 404
//! for a resource whose CRD is not installed), so these tests can move to a real
//! apiserver with the same assertions. etcd is the in-memory store.

#[path = "support/fake_api.rs"]
mod fake_api;

use std::sync::Arc;
use std::time::Duration;

use fake_api::{
    assert_server_side_apply, next_matching, settle, start_controller, Seen, Server, NADS,
};
use railyard_core::keys;
use railyard_store::{MemStore, Store};
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../../../docs/examples/network.yaml");

fn network(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v: Value = serde_yaml::from_str(SAMPLE).unwrap();
    v["metadata"]["name"] = json!(name);
    v["metadata"]["uid"] = json!(format!("uid-{name}"));
    v["metadata"]["resourceVersion"] = json!("1");
    v["metadata"]["generation"] = json!(1);
    edit(&mut v);
    v
}

fn nad_path(ns: &str, name: &str) -> String {
    format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}")
}

fn is_apply_of(ns: &'static str, name: &'static str) -> impl Fn(&Seen) -> bool {
    move |s| s.method == "PATCH" && s.path == nad_path(ns, name)
}

fn is_status_of(net: &'static str) -> impl Fn(&Seen) -> bool {
    move |s| {
        s.method == "PATCH"
            && s.path == format!("/apis/railyard.dev/v1/multinicnetworks/{net}/status")
    }
}

fn condition(status_patch: &Seen, kind: &str) -> Value {
    status_patch.body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} condition in {}", status_patch.body))
}

/// A status patch of `net` whose NADsApplied condition has `reason`.
async fn nads_applied(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    net: &'static str,
    reason: &'static str,
) -> Seen {
    let is_status = is_status_of(net);
    next_matching(
        seen,
        &format!("{net} status with NADsApplied {reason}"),
        |s| is_status(s) && condition(s, "NADsApplied")["reason"] == reason,
    )
    .await
}

async fn spec_stored(store: &dyn Store, net: &str) -> bool {
    store.get(&keys::network(net)).await.unwrap().is_some()
}

/// A ResourceQuota (or a policy engine, or a terminating namespace) refuses the
/// NAD in one namespace: the others get theirs, the etcd spec and the status are
/// written, the status names the namespace and the apiserver's message, and the
/// namespace gets its NAD on a retry once the refusal is lifted.
#[tokio::test]
async fn a_namespace_refusing_its_nad_does_not_stop_the_others() {
    let net = network("multi-nic-sample", |v| {
        v["spec"]["namespaces"] = json!(["default", "team-q"])
    });
    let (server, client, mut seen) = Server::start(vec![net], &["default", "team-q"]);
    let quota = "network-attachment-definitions.k8s.cni.cncf.io \"multi-nic-sample\" is forbidden: exceeded quota: nads, requested: count/network-attachment-definitions.k8s.cni.cncf.io=1, used: count/network-attachment-definitions.k8s.cni.cncf.io=0, limited: count/network-attachment-definitions.k8s.cni.cncf.io=0";
    let refused = nad_path("team-q", "multi-nic-sample");
    server.refuse("PATCH", &refused, 403, "Forbidden", quota);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);

    let applied = next_matching(
        &mut seen,
        "the NAD in default",
        is_apply_of("default", "multi-nic-sample"),
    )
    .await;
    assert_server_side_apply(&applied);
    let status = nads_applied(&mut seen, "multi-nic-sample", "ApplyFailed").await;
    let c = condition(&status, "NADsApplied");
    assert_eq!(c["status"], "False");
    let message = c["message"].as_str().unwrap();
    assert!(message.contains("1 of 2 namespaces"), "{message}");
    assert!(message.contains("team-q: "), "{message}");
    assert!(message.contains("exceeded quota: nads"), "{message}");
    assert_eq!(status.body["status"]["nadNamespaces"], 1);
    // The planner-driven conditions are written all the same.
    assert_eq!(condition(&status, "Ready")["reason"], "Pending");
    assert_eq!(condition(&status, "Invalid")["status"], "False");
    assert!(spec_stored(store.as_ref(), "multi-nic-sample").await);

    // The quota is raised: a retry (1 s, then 2 s, ...) writes the NAD.
    server.allow("PATCH", &refused);
    let retried = next_matching(
        &mut seen,
        "the NAD in team-q on a retry",
        is_apply_of("team-q", "multi-nic-sample"),
    )
    .await;
    assert_server_side_apply(&retried);
    let status = nads_applied(&mut seen, "multi-nic-sample", "Applied").await;
    assert_eq!(condition(&status, "NADsApplied")["status"], "True");
    assert_eq!(status.body["status"]["nadNamespaces"], 2);
    task.abort();
}

/// Multus's CRD is not installed (or installed after railyard): the etcd spec and
/// the status are written, the status says the NADs wait for the CRD, and they
/// are created once it appears.
#[tokio::test]
async fn without_the_nad_crd_spec_and_status_are_written_and_nads_follow_the_crd() {
    let (server, client, mut seen) =
        Server::start(vec![network("multi-nic-sample", |_| {})], &["default"]);
    server.uninstall(NADS);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);

    let status = nads_applied(&mut seen, "multi-nic-sample", "CRDMissing").await;
    let message = condition(&status, "NADsApplied")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("network-attachment-definitions.k8s.cni.cncf.io"),
        "{message}"
    );
    assert_eq!(status.body["status"]["nadName"], "multi-nic-sample");
    assert!(spec_stored(store.as_ref(), "multi-nic-sample").await);

    server.install(NADS);
    let applied = next_matching(
        &mut seen,
        "the NAD once the CRD is installed",
        is_apply_of("default", "multi-nic-sample"),
    )
    .await;
    assert_server_side_apply(&applied);
    nads_applied(&mut seen, "multi-nic-sample", "Applied").await;
    task.abort();
}

/// Two networks mapping to one NAD name would take the owner reference from each
/// other on every write (both apply as field manager `railyard`). Neither writes
/// where both target, and each status names the other.
#[tokio::test]
async fn two_networks_with_one_nad_name_write_neither_and_name_each_other() {
    let rail = json!({"railyard.dev/nad-name": "rail"});
    let a = network("net-a", |v| v["metadata"]["annotations"] = rail.clone());
    let b = network("net-b", |v| {
        v["metadata"]["annotations"] = rail.clone();
        v["spec"]["namespaces"] = json!(["default", "team-b"]);
    });
    let (_server, client, mut seen) = Server::start(vec![a, b], &["default", "team-b"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);

    let a_status = nads_applied(&mut seen, "net-a", "NameConflict").await;
    let message = condition(&a_status, "NADsApplied")["message"].to_string();
    assert!(
        message.contains("default: MultiNicNetwork net-b also maps to NAD name rail"),
        "{message}"
    );
    let b_status = nads_applied(&mut seen, "net-b", "NameConflict").await;
    let message = condition(&b_status, "NADsApplied")["message"].to_string();
    assert!(
        message.contains("default: MultiNicNetwork net-a also maps to NAD name rail"),
        "{message}"
    );
    let later = settle(&mut seen, Duration::from_millis(1500)).await;
    assert!(
        !later
            .iter()
            .any(|s| s.method == "PATCH" && s.path == nad_path("default", "rail")),
        "nobody writes the contested NAD: {later:?}"
    );
    // Where only one of them targets, it writes: net-b's NAD in team-b.
    assert_eq!(a_status.body["status"]["nadNamespaces"], 0);
    assert_eq!(b_status.body["status"]["nadNamespaces"], 1);
    assert!(
        spec_stored(store.as_ref(), "net-a").await && spec_stored(store.as_ref(), "net-b").await
    );
    task.abort();
}

/// A NAD of the same name that another controller owns (not ours: it lacks our
/// label, so our cache cannot show it) is refused by the apiserver with 422; the
/// status names that owner instead of retrying blindly.
#[tokio::test]
async fn a_nad_another_controller_owns_is_reported_with_its_owner() {
    let (server, client, mut seen) =
        Server::start(vec![network("multi-nic-sample", |_| {})], &["default"]);
    let path = nad_path("default", "multi-nic-sample");
    server.refuse(
        "PATCH",
        &path,
        422,
        "Invalid",
        "NetworkAttachmentDefinition.k8s.cni.cncf.io \"multi-nic-sample\" is invalid: metadata.ownerReferences: Invalid value: []v1.OwnerReference{...}: Only one reference can have Controller set to true",
    );
    server.serve_object(
        &path,
        json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {
                "name": "multi-nic-sample", "namespace": "default", "resourceVersion": "7",
                "ownerReferences": [{
                    "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderMultusConfig",
                    "name": "multi-nic-sample", "uid": "uid-spider", "controller": true,
                }],
            },
            "spec": {"config": "{}"},
        }),
    );
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);
    let status = nads_applied(&mut seen, "multi-nic-sample", "NameConflict").await;
    let message = condition(&status, "NADsApplied")["message"].to_string();
    assert!(
        message.contains("controlled by SpiderMultusConfig multi-nic-sample (uid uid-spider)"),
        "{message}"
    );
    assert!(spec_stored(store.as_ref(), "multi-nic-sample").await);
    task.abort();
}

/// The network was sriov and is not any more: the NAD still carries the resource
/// name railyard set then. The next apply must leave it out (server-side apply
/// then removes it), not be skipped as "up to date".
#[tokio::test]
async fn a_resource_name_railyard_no_longer_sets_is_removed_from_the_nad() {
    let (server, client, mut seen) =
        Server::start(vec![network("multi-nic-sample", |_| {})], &["default"]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let task = start_controller(client, Arc::clone(&store), None);
    let is_apply = is_apply_of("default", "multi-nic-sample");
    let first = next_matching(&mut seen, "the first apply", &is_apply).await;
    server.wait_watching(NADS).await;
    let mut stored = first.body.clone();
    stored["metadata"]["resourceVersion"] = json!("2");
    server.push(NADS, "ADDED", &stored);
    let quiet = settle(&mut seen, Duration::from_millis(700)).await;
    assert!(
        !quiet.iter().any(&is_apply),
        "an unchanged NAD is left alone"
    );

    let mut leftover = stored.clone();
    leftover["metadata"]["resourceVersion"] = json!("3");
    leftover["metadata"]["annotations"] = json!({
        "k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov_rail",
        "team.example/contact": "ml-infra",
    });
    server.push(NADS, "MODIFIED", &leftover);
    let again = next_matching(&mut seen, "a re-apply without the resource name", &is_apply).await;
    assert_server_side_apply(&again);
    assert!(
        again.body["metadata"]["annotations"]
            .get("k8s.v1.cni.cncf.io/resourceName")
            .is_none(),
        "{}",
        again.body
    );
    // Someone else's annotation alone does not cause a write.
    let mut theirs = stored.clone();
    theirs["metadata"]["resourceVersion"] = json!("4");
    theirs["metadata"]["annotations"] = json!({"team.example/contact": "ml-infra"});
    server.push(NADS, "MODIFIED", &theirs);
    let quiet = settle(&mut seen, Duration::from_millis(700)).await;
    assert!(!quiet.iter().any(&is_apply), "{quiet:?}");
    task.abort();
}
