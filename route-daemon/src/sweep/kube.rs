//! [`PodSource`] over the Kubernetes API (kube-rs): for the sweep, a GET of
//! the node, then a LIST of pods with `fieldSelector=spec.nodeName=<node>`;
//! for an ADD, a GET of the pod and of its namespace. Needs `get` on nodes and
//! namespaces and `get` and `list` on pods (deploy/kubernetes/rbac.yaml).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::source::{PodFacts, PodInfo, PodSource, SourceError};

/// The kubelet's annotation on a mirror pod: the static pod's UID.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// One list may take this long; a slower answer is no observation.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// An ADD waits this long for its pod: the runtime's own CNI timeout is
/// minutes, but a slow API server should fail the ADD (code 11), not hang it.
const GET_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct KubePods {
    client: Client,
}

impl std::fmt::Debug for KubePods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePods").finish_non_exhaustive()
    }
}

impl KubePods {
    pub fn new(client: Client) -> Self {
        KubePods { client }
    }

    /// A client from `kubeconfig`, or from the pod's service account (the
    /// in-cluster configuration) when `None`.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self, String> {
        let config = match kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
            }
            None => Config::incluster()
                .map_err(|e| format!("in-cluster Kubernetes configuration: {e}"))?,
        };
        let client = Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
        Ok(KubePods { client })
    }

    async fn list(&self, node: &str) -> Result<Vec<PodInfo>, SourceError> {
        let api_err = |e: kube::Error| SourceError::Api {
            node: node.to_owned(),
            reason: e.to_string(),
        };
        let nodes: Api<Node> = Api::all(self.client.clone());
        if nodes.get_opt(node).await.map_err(api_err)?.is_none() {
            return Err(SourceError::UnknownNode(node.to_owned()));
        }
        let pods: Api<Pod> = Api::all(self.client.clone());
        // No resourceVersion: a consistent read, never an API server cache
        // that may not have the pod created a moment ago.
        let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let list = pods.list(&params).await.map_err(api_err)?;
        Ok(list.items.iter().map(pod_info).collect())
    }
}

fn pod_info(p: &Pod) -> PodInfo {
    let m = &p.metadata;
    PodInfo {
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        mirror_of: m
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR_ANNOTATION))
            .cloned(),
    }
}

impl KubePods {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<PodFacts>, SourceError> {
        let api_err = |e: kube::Error| SourceError::Get {
            pod: format!("{namespace}/{name}"),
            reason: e.to_string(),
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let Some(pod) = pods.get_opt(name).await.map_err(api_err)? else {
            return Ok(None);
        };
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = namespaces.get_opt(namespace).await.map_err(api_err)?;
        let m = &pod.metadata;
        Ok(Some(PodFacts {
            uid: m.uid.clone().unwrap_or_default(),
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
            namespace_annotations: ns.and_then(|n| n.metadata.annotations).unwrap_or_default(),
            owner_kind: m
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.kind.clone()),
        }))
    }
}

#[async_trait]
impl PodSource for KubePods {
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodFacts>, SourceError> {
        match tokio::time::timeout(GET_TIMEOUT, self.get(namespace, name)).await {
            Ok(r) => r,
            Err(_) => Err(SourceError::Get {
                pod: format!("{namespace}/{name}"),
                reason: format!("no answer in {GET_TIMEOUT:?}"),
            }),
        }
    }

    async fn pods_on(&self, node: &str) -> Result<Vec<PodInfo>, SourceError> {
        match tokio::time::timeout(LIST_TIMEOUT, self.list(node)).await {
            Ok(r) => r,
            Err(_) => Err(SourceError::Api {
                node: node.to_owned(),
                reason: format!("no answer in {LIST_TIMEOUT:?}"),
            }),
        }
    }
}
