use std::path::PathBuf;

use railyard_core::attach::SelectError;
use railyard_core::ipam::AttachmentId;
use thiserror::Error;

/// Everything the allocation engine can refuse. Each message names the network,
/// NIC, block or file involved so it can go to the pod's events or the daemon log
/// as it is. Which CNI code each one is answered with is the IPAM server's
/// business (`railyard-route-daemon`'s `ipam::protocol`), not the engine's.
#[derive(Debug, Error)]
pub enum DbError {
    #[error("allocation log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record whose checksum is right but whose content cannot be read: written
    /// by a newer version, or a bug. Refused rather than truncated, because the
    /// records after it are good.
    #[error("allocation log {path} is unreadable at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The log was written by a newer railyard (a downgrade, or a rollback of a
    /// half-done upgrade). Refused and left untouched: replaying it with this
    /// build's rules, or cutting it, would lose what only the newer one knows.
    #[error(
        "allocation log {path} has format version {found}; this build reads versions up to \
         {supported}. It was written by a newer railyard: run that version again \
         (the file is left untouched)"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "allocation log {path} is locked by another process (is a second route-daemon running?)"
    )]
    Locked { path: PathBuf },
    /// An internal failure (a panic under the state lock).
    #[error("the allocation engine failed: {0}")]
    Failed(String),
    /// A write or fsync of the log failed (a full disk, say). After a failed
    /// fsync the kernel may have dropped the pages, so the only safe state is
    /// the one on disk: requests that need a record wait (try again later) until
    /// the log is reopened from it, which is retried every second.
    #[error("the allocation log cannot be written ({0}); no address is handed out until it can (retried every second)")]
    LogUnwritable(String),
    #[error("network {0:?} has no plan on this host yet")]
    UnknownNetwork(String),
    #[error("no attachment {} (interface {}) on network {}", .0.container_id, .0.ifname, .0.network)]
    UnknownAttachment(AttachmentId),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(
        "network {network}: block {block} of NIC {nic} has no free address ({allocated} allocated)"
    )]
    Exhausted {
        network: String,
        nic: String,
        block: String,
        allocated: u32,
    },
    #[error("{0}")]
    Invalid(String),
    /// CHECK found the attachment but not its addresses in the bitmaps.
    #[error("attachment {} on network {}: {reason}", .id.container_id, .id.network)]
    Inconsistent { id: AttachmentId, reason: String },
}

impl DbError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DbError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;
