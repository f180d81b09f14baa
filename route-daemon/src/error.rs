use std::path::PathBuf;

use thiserror::Error;

/// Everything the daemon's IO can run into. Each variant says what was being done
/// so a log line is enough to act on it without a debugger.
#[derive(Debug, Error)]
pub enum Error {
    /// A netlink request (dump, rule change) the kernel refused or could not answer.
    #[error("netlink {context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// The socket itself failed (open, bind, send, receive), or there was no
    /// tokio runtime to drive it.
    #[error("netlink socket, {context}: {source}")]
    Socket {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel sent bytes we could not decode.
    #[error("netlink message from the kernel could not be decoded: {0}")]
    Decode(String),
    /// The static inventory file is missing, unreadable or not a host inventory.
    #[error("inventory file {path}: {reason}")]
    Inventory { path: PathBuf, reason: String },
    /// An include or exclude pattern of the NIC filter is not a valid glob.
    #[error("NIC filter pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    /// The daemon's configuration cannot work (bad node name, bad address).
    #[error("configuration: {0}")]
    Config(String),
    /// etcd refused us in a way retrying cannot fix (bad TLS files, no endpoints).
    #[error("etcd: {0}")]
    Store(#[from] railyard_store::StoreError),
}

impl Error {
    pub(crate) fn netlink(context: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn socket(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Socket {
            context: context.into(),
            source,
        }
    }

    /// The errno of a kernel refusal, when that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink {
                source: rtnetlink::Error::NetlinkError(e),
                ..
            } => e.code.map(|c| -c.get()),
            Error::Socket { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
