//! The kubelet's side of pod-resources, serving a [`Memory`] table on a unix
//! socket. What is simulated: the kubelet and its device plugins (no kubelet
//! runs in railyard's local cluster, and no SR-IOV or GPU hardware exists on
//! its machines). What is real: the gRPC protocol, generated from the
//! kubelet's own proto, and the socket the client dials.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::proto::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
use crate::proto::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, GetPodResourcesRequest,
    GetPodResourcesResponse, ListPodResourcesRequest, ListPodResourcesResponse,
};
use crate::{Error, Memory};

struct Service(Memory);

#[tonic::async_trait]
impl PodResourcesLister for Service {
    async fn list(
        &self,
        _: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        Ok(Response::new(self.0.list()))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<AllocatableResourcesRequest>,
    ) -> Result<Response<AllocatableResourcesResponse>, Status> {
        Err(Status::unimplemented(
            "railyard's test kubelet serves List and Get",
        ))
    }

    async fn get(
        &self,
        req: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        let req = req.into_inner();
        let pod = self
            .0
            .list()
            .pod_resources
            .into_iter()
            .find(|p| p.namespace == req.pod_namespace && p.name == req.pod_name)
            .ok_or_else(|| {
                Status::not_found(format!("pod {}/{}", req.pod_namespace, req.pod_name))
            })?;
        Ok(Response::new(GetPodResourcesResponse {
            pod_resources: Some(pod),
        }))
    }
}

/// A pod-resources server on its own thread; stops and removes its socket
/// when dropped.
#[derive(Debug)]
pub struct TestServer {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves `pods` on `socket` (replacing a stale socket file). Returns once
    /// the socket accepts connections.
    pub fn start(socket: impl Into<PathBuf>, pods: Memory) -> Result<TestServer, Error> {
        let socket = socket.into();
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _guard = rt.enter();
            tokio::net::UnixListener::bind(&socket)?
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
                let served = tonic::transport::Server::builder()
                    .add_service(PodResourcesListerServer::new(Service(pods)))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = served {
                    eprintln!("test pod-resources server: {e}");
                }
            });
        });
        Ok(TestServer {
            socket,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
