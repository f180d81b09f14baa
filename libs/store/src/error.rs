use crate::LeaseId;

/// Everything a store operation can fail with. Variants are what callers branch on
/// (retry, re-list, re-register); the strings are for humans and name the endpoint or
/// key involved so a log line is enough to find the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time. The operation may or
    /// may not have been applied; callers retry (CAS guards make retries safe).
    #[error("etcd at {endpoint} is unavailable: {reason}")]
    Unavailable { endpoint: String, reason: String },

    /// The history a watch asked for is gone. Re-list with `range` and watch again from
    /// the listing's revision (`watch_or_relist` does that).
    #[error(
        "watch history before revision {compact_revision} has been compacted; re-list and resume"
    )]
    Compacted { compact_revision: i64 },

    /// The lease expired or was revoked. Whoever held it must assume its keys are gone.
    #[error("lease {lease} not found (expired or revoked)")]
    LeaseNotFound { lease: LeaseId },

    /// More operations (or compares) than etcd accepts in one transaction; split it.
    #[error("transaction has {ops} operations or compares, the limit is {max}; split it")]
    TooManyOps { ops: usize, max: usize },

    /// The transaction is larger than etcd accepts in one request; split the batch.
    #[error("transaction is about {bytes} bytes, the limit is {max}; split it")]
    TooLarge { bytes: usize, max: usize },

    /// A request etcd would refuse: empty key, a key written twice in one txn, a
    /// compaction at a future revision.
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },

    /// A stored value could not be decoded (or a value could not be encoded).
    #[error("value of key {key:?} is malformed: {message}")]
    Decode { key: String, message: String },

    /// A stored value of a format version this build does not read: written by
    /// a newer railyard. Leave the key alone (never overwrite it with what this
    /// build thinks it should hold); see `format.rs`.
    #[error(
        "value of key {key:?} has format version {found}; this build reads versions up to \
         {supported} (it was written by a newer railyard: upgrade this binary)"
    )]
    NewerFormat {
        key: String,
        found: u32,
        supported: u32,
    },

    /// Anything else the server said; not worth retrying blindly.
    #[error("{context}: {message}")]
    Other { context: String, message: String },
}

impl StoreError {
    /// Whether retrying the same call later can succeed without changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
