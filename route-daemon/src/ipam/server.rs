//! The socket the CNI plugin connects to. Root only: the socket file is created
//! mode 0600 and every peer's credentials are checked, because an allocation
//! request can take addresses from any network on the host. There is deliberately
//! no TCP listener (multi-nic-cni's daemon API listens on 0.0.0.0 without auth).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use railyard_allocdb::AllocDb;
use railyard_core::attach::DeviceClass;
use railyard_core::ipam::{codes, ErrorReply, Request, Response};
use railyard_core::Nic;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::annotations::{self, Applied};
use super::metrics::IpamMetrics;
use super::protocol::{self, refuse};
use crate::sweep::PodSource;

/// A request line longer than this is refused: a real one is a few hundred bytes.
const MAX_LINE: usize = 64 * 1024;

/// What a request needs besides the database: the NICs as discovered right now (a
/// NIC that went away is no candidate) and the DeviceClasses for `devClass`.
#[derive(Debug)]
pub struct IpamContext {
    pub db: Arc<AllocDb>,
    pub nics: watch::Receiver<Vec<Nic>>,
    pub classes: watch::Receiver<Vec<DeviceClass>>,
    pub metrics: Arc<IpamMetrics>,
    /// Peers must run as this uid (root in production; the test's own uid in tests).
    pub allowed_uid: u32,
    /// Whether the local log may be believed. True at once for a log with
    /// records; for a log that was empty at start (a new host, or a state dir
    /// that was lost while its pods run) only after the first re-sync with etcd
    /// adopted what etcd holds for this host. Until then nothing is served: an
    /// empty state would hand out addresses live pods hold.
    pub trusted: watch::Receiver<bool>,
    /// The Kubernetes API, when configured: an ADD reads its pod's
    /// annotations (static addresses, pools) through it.
    pub pods: Option<Arc<dyn PodSource>>,
}

/// Serves `path` until `shutdown` flips. Removes a stale socket first.
pub async fn serve(
    path: &Path,
    ctx: Arc<IpamContext>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = bind(path)?;
    info!(socket = %path.display(), "IPAM service listening");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let ctx = Arc::clone(&ctx);
                tokio::spawn(async move { connection(stream, ctx).await });
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => debug!(socket = %path.display(), "removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn connection(stream: UnixStream, ctx: Arc<IpamContext>) {
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "IPAM connection read failed");
                return;
            }
        };
        if n == 0 {
            return;
        }
        let response = if uid != Some(ctx.allowed_uid) {
            refuse(format!(
                "peer uid {uid:?} is not allowed; the IPAM socket is root only"
            ))
        } else if n > MAX_LINE {
            refuse(format!("request longer than {MAX_LINE} bytes"))
        } else {
            match serde_json::from_str::<Request>(line.trim_end()) {
                Ok(req) => handle(&ctx, req).await,
                Err(e) => refuse(format!("malformed request: {e}")),
            }
        };
        let mut out = match serde_json::to_vec(&response) {
            Ok(v) => v,
            Err(_) => return,
        };
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// An ADD completed from its pod in the API, when the API is configured and
/// the pod is named: the selection from its annotations, and its
/// controller's kind. A pod the API does not have (yet) is
/// served as asked; an API that cannot answer fails the ADD (retry later):
/// a pod with a static address must not start with another one.
async fn with_annotations(
    pods: Option<&dyn PodSource>,
    mut req: Request,
) -> Result<(Request, Applied), Response> {
    // Choose (external IPAM) too: an annotation asking for addresses must
    // be refused there, not ignored.
    let (
        Some(pods),
        Request::Add {
            attachment,
            pod,
            selection,
            ..
        }
        | Request::Choose {
            attachment,
            pod,
            selection,
        },
    ) = (pods, &mut req)
    else {
        return Ok((req, Applied::default()));
    };
    if pod.namespace.is_empty() || pod.name.is_empty() {
        return Ok((req, Applied::default()));
    }
    let facts = match pods.pod(&pod.namespace, &pod.name).await {
        Ok(Some(f)) => f,
        Ok(None) => return Ok((req, Applied::default())),
        Err(e) => {
            return Err(Response::Error(ErrorReply {
                code: codes::TRY_AGAIN_LATER,
                message: format!("{e} (needed for the pod's address annotations)"),
            }))
        }
    };
    // A StatefulSet pod's addresses are kept for its name after its DEL
    // (railyard_allocdb's retain.rs); only the API can say it is one.
    pod.controller = facts.owner_kind.clone();
    match annotations::apply(&attachment.network, &facts, selection) {
        Ok(applied) => Ok((req, applied)),
        Err(message) => Err(Response::Error(ErrorReply {
            code: codes::INVALID_CONFIG,
            message,
        })),
    }
}

async fn handle(ctx: &IpamContext, req: Request) -> Response {
    let op = protocol::op_name(&req);
    let started = Instant::now();
    let response = if *ctx.trusted.borrow() {
        let nics = ctx.nics.borrow().clone();
        let classes = ctx.classes.borrow().clone();
        match with_annotations(ctx.pods.as_deref(), req).await {
            Ok((req, applied)) => {
                let mut r = protocol::dispatch(&ctx.db, req, &nics, &classes).await;
                if let Response::Error(e) = &mut r {
                    e.message.push_str(&applied.suffix());
                }
                r
            }
            Err(refused) => refused,
        }
    } else {
        protocol::untrusted(ctx.db.dir(), op)
    };
    ctx.metrics.observe(op, &response, started.elapsed());
    if let Response::Error(e) = &response {
        warn!(
            op,
            code = e.code,
            message = e.message,
            "IPAM request failed"
        );
    }
    response
}
