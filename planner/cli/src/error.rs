use thiserror::Error;

/// The CLI crate's one error type. Messages are written for the person at the
/// terminal: they name the file, field and value.
#[derive(Debug, Error)]
pub enum CliError {
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
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
