//! The crate's one error type. Each names the socket, because the operator's
//! first question is which kubelet (or which test server) did not answer.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("pod-resources socket {}: cannot connect: {reason} (is the kubelet running, and is the socket mounted into this host path?)", socket.display())]
    Connect { socket: PathBuf, reason: String },
    #[error("pod-resources socket {}: List failed: {reason}", socket.display())]
    Call { socket: PathBuf, reason: String },
    #[error("pod-resources socket {}: no answer within {millis} ms", socket.display())]
    Timeout { socket: PathBuf, millis: u128 },
    #[error("pod-resources: {0}")]
    Io(#[from] std::io::Error),
}
