//! One error type for the cluster library. Every variant carries enough context
//! (the command line, the namespace, the file) to act on it without a debugger:
//! the local cluster is mostly shelling out, and "exit status 1" alone says nothing.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command ran and failed; `output` is its stderr (or stdout when stderr is empty).
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("{what} ({}): {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("etcd: {0}")]
    Store(#[from] railyard_store::StoreError),
    #[error("timed out after {secs:.1} s waiting for {what}: {detail}")]
    Timeout {
        what: String,
        secs: f64,
        detail: String,
    },
    /// A binary the cluster runs is missing; the message says how to get it.
    #[error("{0}")]
    Missing(String),
    /// `up` found the cluster of its state dir running; nothing was touched.
    #[error("{0}")]
    AlreadyRunning(String),
    /// The cluster spec or the state on disk does not allow the operation.
    #[error("{0}")]
    Refused(String),
    /// A CNI plugin answered with an error (its JSON error object, as text).
    #[error("CNI {command} of pod {pod} on {host} failed: {detail}")]
    Cni {
        command: &'static str,
        pod: String,
        host: String,
        detail: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
