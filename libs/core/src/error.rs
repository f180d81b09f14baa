use thiserror::Error;

/// Everything the pure core can refuse. Each variant names the offending field and
/// value so the message can go straight to a user (CLI, status condition, CNI error).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// A field of a network spec or inventory has a value we cannot use.
    #[error("{field}: {value:?} {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
    /// A name that goes into an etcd key or a Kubernetes object name is unusable.
    #[error("{field}: {value:?} is not a valid name: {reason}")]
    InvalidName {
        field: String,
        value: String,
        reason: String,
    },
    /// An address was asked of a block that does not contain it.
    #[error("address {addr} is outside block {block}")]
    OutsideBlock { addr: String, block: String },
    /// An address that is reserved (network, gateway, broadcast or excluded) was requested.
    #[error("address {addr} is reserved in block {block}")]
    Reserved { addr: String, block: String },
    /// An address that is already allocated was requested again.
    #[error("address {addr} is already allocated in block {block}")]
    InUse { addr: String, block: String },
}

impl CoreError {
    /// The usual error for a field: its name, the value found and what is wrong.
    pub fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        CoreError::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
