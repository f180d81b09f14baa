//! The real pod-resources: gRPC `List` on the kubelet's unix socket.
//!
//! railyard-cni is a short-lived synchronous process, so each call runs on a
//! throwaway current-thread runtime under one deadline: a kubelet that hangs
//! must fail the CNI ADD with a clear error, not hang the runtime's ADD.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::pod_resources_lister_client::PodResourcesListerClient;
use crate::proto::ListPodResourcesRequest;
use crate::{devices_of, Error, PodDevice, PodResources};

/// Where the kubelet serves the API (the path Multus and Spiderpool mount).
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// The kubelet at `socket`.
#[derive(Debug, Clone)]
pub struct Kubelet {
    socket: PathBuf,
    timeout: Duration,
}

impl Kubelet {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Kubelet {
            socket: socket.into(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn list(&self) -> Result<crate::proto::ListPodResourcesResponse, Error> {
        let uri = format!("unix://{}", self.socket.display());
        let connect = |reason: String| Error::Connect {
            socket: self.socket.clone(),
            reason,
        };
        let channel = tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| connect(e.to_string()))?
            .connect()
            .await
            .map_err(|e| connect(source_chain(&e)))?;
        let reply = PodResourcesListerClient::new(channel)
            .list(ListPodResourcesRequest {})
            .await
            .map_err(|s| Error::Call {
                socket: self.socket.clone(),
                reason: format!("{:?}: {}", s.code(), s.message()),
            })?;
        Ok(reply.into_inner())
    }
}

impl PodResources for Kubelet {
    fn pod_devices(&self, namespace: &str, name: &str) -> Result<Option<Vec<PodDevice>>, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let list = rt.block_on(async {
            tokio::time::timeout(self.timeout, self.list())
                .await
                .map_err(|_| Error::Timeout {
                    socket: self.socket.clone(),
                    millis: self.timeout.as_millis(),
                })?
        })?;
        Ok(devices_of(&list, namespace, name))
    }
}

/// tonic's transport error says only "transport error"; the cause is below.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
