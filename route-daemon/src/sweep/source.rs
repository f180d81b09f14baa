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

/// What an ADD needs of its pod: where it is bound, its annotations and its
/// namespace's (static addresses, pools), and the kind of its controller
/// (a StatefulSet pod keeps its addresses when recreated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: String,
    /// `spec.nodeName`; empty while unscheduled.
    pub node: String,
    pub annotations: BTreeMap<String, String>,
    pub namespace_annotations: BTreeMap<String, String>,
    /// The controlling owner reference's kind (`StatefulSet`), if any.
    pub owner_kind: Option<String>,
}

/// A pod's annotations and its controller's kind, as [`MemoryPods::describe`]
/// set them.
type Described = (BTreeMap<String, String>, Option<String>);

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
    /// Reading one pod (for an ADD) failed.
    #[error("reading pod {pod} from the Kubernetes API: {reason}")]
    Get { pod: String, reason: String },
}

/// The pods the API server has bound to a node.
#[async_trait]
pub trait PodSource: Send + Sync + std::fmt::Debug {
    /// Every pod whose `spec.nodeName` is `node`, read consistently (the
    /// latest state, not a cache that may lag a pod just created), or an
    /// error when the server cannot say.
    async fn pods_on(&self, node: &str) -> Result<Vec<PodInfo>, SourceError>;

    /// One pod by namespace and name, read consistently; `None` when the API
    /// has no such pod.
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodFacts>, SourceError>;
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
    /// Annotations and controller kind per pod, by namespace and name.
    facts: BTreeMap<(String, String), Described>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
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
        let key = (namespace.to_owned(), name.to_owned());
        let mut s = self.state();
        s.pods.remove(&key);
        s.facts.remove(&key);
    }

    /// Sets a pod's annotations and controller kind (the pod must exist).
    pub fn describe(
        &self,
        namespace: &str,
        name: &str,
        annotations: BTreeMap<String, String>,
        owner_kind: Option<&str>,
    ) {
        self.state().facts.insert(
            (namespace.to_owned(), name.to_owned()),
            (annotations, owner_kind.map(str::to_owned)),
        );
    }

    pub fn annotate_namespace(&self, namespace: &str, key: &str, value: &str) {
        self.state()
            .namespaces
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
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

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodFacts>, SourceError> {
        let s = self.state();
        if s.down {
            return Err(SourceError::Get {
                pod: format!("{namespace}/{name}"),
                reason: "the API server is down (MemoryPods::set_down)".into(),
            });
        }
        let key = (namespace.to_owned(), name.to_owned());
        let Some((node, info)) = s.pods.get(&key) else {
            return Ok(None);
        };
        let (annotations, owner_kind) = s.facts.get(&key).cloned().unwrap_or_default();
        Ok(Some(PodFacts {
            uid: info.uid.clone(),
            node: node.clone(),
            annotations,
            namespace_annotations: s.namespaces.get(namespace).cloned().unwrap_or_default(),
            owner_kind,
        }))
    }
}
