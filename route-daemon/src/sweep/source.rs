//! The sweep's port to the Kubernetes API: the pods bound to one node. Two
//! implementations pass one conformance suite (`conformance.rs`, feature
//! `conformance`): [`KubePods`](super::KubePods) over kube-rs, and
//! [`MemoryPods`] for tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

/// What the sweep needs of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// For a mirror pod (a static pod's copy in the API), the kubelet's UID of
    /// the static pod (annotation `kubernetes.io/config.mirror`), which is the
    /// UID its sandbox's CNI_ARGS carry.
    pub mirror_of: Option<String>,
}

/// Why a list says nothing. Every case is "no observation": the sweep never
/// reads absence into an answer it did not get.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The node is not in the API. Either `--node-name` is not the
    /// Kubernetes node name (then every list would be empty and every pod
    /// would look gone) or the node was deleted (the planner's departure rule
    /// covers a host that left for good).
    #[error("node {0:?} is not in the Kubernetes API: is --node-name the node's name?")]
    UnknownNode(String),
    #[error("listing the pods of node {node:?}: {reason}")]
    Api { node: String, reason: String },
}

/// The pods the API server has bound to a node.
#[async_trait]
pub trait PodSource: Send + Sync + std::fmt::Debug {
    /// Every pod whose `spec.nodeName` is `node`, read consistently (the
    /// latest state, not a cache that may lag a pod just created), or an
    /// error when the server cannot say.
    async fn pods_on(&self, node: &str) -> Result<Vec<PodInfo>, SourceError>;
}

/// An API server in memory: nodes, pods bound to them, and a switch that makes
/// every list fail (an API server that is down).
#[derive(Debug, Default)]
pub struct MemoryPods {
    state: Mutex<Memory>,
    next_uid: AtomicU64,
}

#[derive(Debug, Default)]
struct Memory {
    nodes: BTreeSet<String>,
    /// Keyed by namespace and name, as the API server keys them.
    pods: BTreeMap<(String, String), (String, PodInfo)>,
    down: bool,
}

impl MemoryPods {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_node(&self, node: &str) {
        self.state().nodes.insert(node.to_owned());
    }

    pub fn remove_node(&self, node: &str) {
        self.state().nodes.remove(node);
    }

    /// Creates a pod bound to `node` with a fresh UID, returned. A pod of that
    /// namespace and name is replaced (a new pod, a new UID).
    pub fn create(&self, node: &str, namespace: &str, name: &str) -> String {
        let uid = format!(
            "00000000-0000-4000-8000-{:012x}",
            self.next_uid.fetch_add(1, Ordering::Relaxed)
        );
        self.insert(
            node,
            PodInfo {
                namespace: namespace.into(),
                name: name.into(),
                uid: uid.clone(),
                mirror_of: None,
            },
        );
        uid
    }

    /// Stores `pod` as given (a mirror pod, a chosen UID).
    pub fn insert(&self, node: &str, pod: PodInfo) {
        self.state().pods.insert(
            (pod.namespace.clone(), pod.name.clone()),
            (node.to_owned(), pod),
        );
    }

    pub fn delete(&self, namespace: &str, name: &str) {
        self.state()
            .pods
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// While down, every list fails.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }
}

#[async_trait]
impl PodSource for MemoryPods {
    async fn pods_on(&self, node: &str) -> Result<Vec<PodInfo>, SourceError> {
        let s = self.state();
        if s.down {
            return Err(SourceError::Api {
                node: node.to_owned(),
                reason: "the API server is down (MemoryPods::set_down)".into(),
            });
        }
        if !s.nodes.contains(node) {
            return Err(SourceError::UnknownNode(node.to_owned()));
        }
        Ok(s.pods
            .values()
            .filter(|(n, _)| n == node)
            .map(|(_, p)| p.clone())
            .collect())
    }
}
