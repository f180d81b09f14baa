//! What every [`PodSource`] must do, as one suite run against [`MemoryPods`]
//! (this module's test) and [`KubePods`](super::KubePods) on a real API server
//! (`tests/tests/k8s/leak_sweep.rs`). The in-memory source stands in for the
//! API in the sweep's tests only because it passes the same cases.
//!
//! A fixture acts on the API as a user would (nodes, pods, a force delete);
//! the cases check what the source then lists.

use async_trait::async_trait;

use super::source::{MemoryPods, PodInfo, PodSource, SourceError};

/// The source under test and a way to change what the API holds.
#[async_trait]
pub trait PodFixture: Send + Sync {
    fn source(&self) -> &dyn PodSource;
    async fn add_node(&self, node: &str);
    /// A pod bound to `node` (`spec.nodeName`); returns its UID.
    async fn create_pod(&self, node: &str, namespace: &str, name: &str) -> String;
    /// A mirror pod: annotation `kubernetes.io/config.mirror: <static_uid>`.
    async fn create_mirror_pod(&self, node: &str, namespace: &str, name: &str, static_uid: &str);
    /// Gone from the API at once (a forced delete: no kubelet confirms it).
    async fn delete_pod(&self, namespace: &str, name: &str);
    /// A pod with `annotations`, controlled by an owner of `owner_kind`
    /// (`StatefulSet`) when given; returns its UID.
    async fn create_described_pod(
        &self,
        node: &str,
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
        owner_kind: Option<&str>,
    ) -> String;
    async fn annotate_namespace(&self, namespace: &str, key: &str, value: &str);
}

/// Runs every case; `tag` makes the node names unique per run, `namespace`
/// must exist (the API server refuses pods in a missing namespace).
pub async fn run_all(f: &dyn PodFixture, tag: &str, namespace: &str) {
    lists_only_the_nodes_pods(f, tag, namespace).await;
    an_unknown_node_is_an_error(f, tag).await;
    a_mirror_pod_names_its_static_pod(f, tag, namespace).await;
    a_pod_is_read_with_its_annotations_and_controller(f, tag, namespace).await;
}

/// One pod by name: its node, UID, annotations, its namespace's annotations
/// and its controller's kind; a pod the API does not have is `None`.
pub async fn a_pod_is_read_with_its_annotations_and_controller(
    f: &dyn PodFixture,
    tag: &str,
    ns: &str,
) {
    let node = format!("{tag}-s");
    f.add_node(&node).await;
    let key = format!("{tag}.railyard.dev/pool");
    f.annotate_namespace(ns, &key, "db").await;
    let name = format!("{tag}-pg-0");
    let uid = f
        .create_described_pod(
            &node,
            ns,
            &name,
            &[("rdma.default.kubernetes.io/ip_address", "192.168.65.7")],
            Some("StatefulSet"),
        )
        .await;
    let facts = f
        .source()
        .pod(ns, &name)
        .await
        .expect("get the pod")
        .expect("the pod exists");
    assert_eq!(facts.uid, uid);
    assert_eq!(facts.node, node);
    assert_eq!(
        facts
            .annotations
            .get("rdma.default.kubernetes.io/ip_address")
            .map(String::as_str),
        Some("192.168.65.7")
    );
    assert_eq!(
        facts.namespace_annotations.get(&key).map(String::as_str),
        Some("db")
    );
    assert_eq!(facts.owner_kind.as_deref(), Some("StatefulSet"));
    let plain = format!("{tag}-plain");
    f.create_pod(&node, ns, &plain).await;
    let facts = f
        .source()
        .pod(ns, &plain)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(facts.owner_kind, None);
    assert!(f
        .source()
        .pod(ns, &format!("{tag}-nobody"))
        .await
        .expect("get a missing pod")
        .is_none());
}

fn names(pods: &[PodInfo]) -> Vec<String> {
    let mut v: Vec<String> = pods
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    v.sort();
    v
}

/// Pods of the node and only those, with their UIDs; a created pod is listed
/// by the very next list and a deleted one is not (consistent reads).
pub async fn lists_only_the_nodes_pods(f: &dyn PodFixture, tag: &str, ns: &str) {
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    f.add_node(&a).await;
    f.add_node(&b).await;
    let pods = f.source().pods_on(&a).await.expect("list an empty node");
    assert!(pods.is_empty(), "a new node has no pods: {pods:?}");
    let uid1 = f.create_pod(&a, ns, &format!("{tag}-p1")).await;
    let uid2 = f.create_pod(&a, ns, &format!("{tag}-p2")).await;
    f.create_pod(&b, ns, &format!("{tag}-q1")).await;
    let pods = f.source().pods_on(&a).await.expect("list");
    assert_eq!(
        names(&pods),
        [format!("{ns}/{tag}-p1"), format!("{ns}/{tag}-p2")]
    );
    let uids: Vec<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
    assert!(
        uids.contains(&uid1.as_str()) && uids.contains(&uid2.as_str()),
        "{uids:?}"
    );
    assert!(pods.iter().all(|p| p.mirror_of.is_none()));
    f.delete_pod(ns, &format!("{tag}-p1")).await;
    let pods = f.source().pods_on(&a).await.expect("list");
    assert_eq!(names(&pods), [format!("{ns}/{tag}-p2")]);
    // Recreated under the same name: another UID.
    let again = f.create_pod(&a, ns, &format!("{tag}-p1")).await;
    assert_ne!(again, uid1);
    let pods = f.source().pods_on(&a).await.expect("list");
    assert!(pods.iter().any(|p| p.uid == again));
    let b_pods = f.source().pods_on(&b).await.expect("list");
    assert_eq!(names(&b_pods), [format!("{ns}/{tag}-q1")]);
}

/// A node the API does not have is an error, never an empty list: a daemon
/// whose --node-name is not its node's name must not see every pod gone.
pub async fn an_unknown_node_is_an_error(f: &dyn PodFixture, tag: &str) {
    match f.source().pods_on(&format!("{tag}-nowhere")).await {
        Err(SourceError::UnknownNode(n)) => assert_eq!(n, format!("{tag}-nowhere")),
        other => panic!("an unknown node must be UnknownNode, got {other:?}"),
    }
}

/// A mirror pod carries the static pod's UID (what its CNI_ARGS say).
pub async fn a_mirror_pod_names_its_static_pod(f: &dyn PodFixture, tag: &str, ns: &str) {
    let node = format!("{tag}-m");
    f.add_node(&node).await;
    let static_uid = "6a1c3b0e2f9d4e8b9c7a5d3f1e2b4c6d";
    f.create_mirror_pod(&node, ns, &format!("{tag}-static"), static_uid)
        .await;
    let pods = f.source().pods_on(&node).await.expect("list");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].mirror_of.as_deref(), Some(static_uid));
    assert_ne!(
        pods[0].uid, static_uid,
        "the API gives the mirror its own UID"
    );
}

/// [`MemoryPods`] as its own fixture.
#[async_trait]
impl PodFixture for MemoryPods {
    fn source(&self) -> &dyn PodSource {
        self
    }
    async fn add_node(&self, node: &str) {
        MemoryPods::add_node(self, node);
    }
    async fn create_pod(&self, node: &str, namespace: &str, name: &str) -> String {
        self.create(node, namespace, name)
    }
    async fn create_mirror_pod(&self, node: &str, namespace: &str, name: &str, static_uid: &str) {
        let uid = self.create(node, namespace, name);
        self.insert(
            node,
            PodInfo {
                namespace: namespace.into(),
                name: name.into(),
                uid,
                mirror_of: Some(static_uid.into()),
            },
        );
    }
    async fn delete_pod(&self, namespace: &str, name: &str) {
        self.delete(namespace, name);
    }
    async fn create_described_pod(
        &self,
        node: &str,
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
        owner_kind: Option<&str>,
    ) -> String {
        let uid = self.create(node, namespace, name);
        let map = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.describe(namespace, name, map, owner_kind);
        uid
    }
    async fn annotate_namespace(&self, namespace: &str, key: &str, value: &str) {
        MemoryPods::annotate_namespace(self, namespace, key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_pods_pass_the_suite() {
        run_all(&MemoryPods::new(), "mem", "default").await;
    }

    #[tokio::test]
    async fn a_memory_api_that_is_down_fails_every_list() {
        let m = MemoryPods::new();
        m.add_node("n");
        m.set_down(true);
        assert!(matches!(m.pods_on("n").await, Err(SourceError::Api { .. })));
        m.set_down(false);
        assert!(m.pods_on("n").await.is_ok());
    }
}
