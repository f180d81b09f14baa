use thiserror::Error;

/// Why a reconcile or the controller failed. Each message names the object it was
/// working on, because it ends up in a log line read without the surrounding code.
#[derive(Debug, Error)]
pub enum K8sError {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action}: {source}")]
    Store {
        action: String,
        #[source]
        source: railyard_store::StoreError,
    },
    #[error("{0}")]
    Encode(String),
    /// An object the controller refuses to act on (`object` is "Kind name"); the
    /// source names the field and the value.
    #[error("{object}: {source}")]
    Invalid {
        object: String,
        #[source]
        source: railyard_core::CoreError,
    },
    /// A leadership-guarded etcd write failed: another planner replica leads now and
    /// runs the controller; this one stops.
    #[error("lost planner leadership: {0}")]
    LostLeadership(String),
    /// A watch cache this reconcile needs was dropped (the controller is stopping).
    #[error("the {0} cache is gone; the controller is stopping")]
    CacheGone(&'static str),
}

impl K8sError {
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> K8sError {
        let action = action.into();
        move |source| K8sError::Kube { action, source }
    }

    pub(crate) fn store(
        action: impl Into<String>,
    ) -> impl FnOnce(railyard_store::StoreError) -> K8sError {
        let action = action.into();
        move |source| K8sError::Store { action, source }
    }
}
