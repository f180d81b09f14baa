use thiserror::Error;

/// The planner crate's one error type. Messages are written for the person at the
/// terminal or reading the network's status: they name the file, field and value.
#[derive(Debug, Error)]
pub enum PlannerError {
    #[error(transparent)]
    Core(#[from] railyard_core::CoreError),
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] railyard_store::StoreError),
    /// This replica is no longer the leader (lease lost, or a guarded write failed
    /// because another replica leads). It steps down and campaigns again.
    #[error("lost planner leadership: {0}")]
    LostLeadership(String),
}

pub type Result<T, E = PlannerError> = std::result::Result<T, E>;
