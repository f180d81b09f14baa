//! Translation of etcd-client errors into `StoreError`: which failures are worth a
//! retry, which mean a lease is gone, and messages that say where things failed.

use etcd_client as ec;

use crate::{LeaseId, StoreError};

// gRPC status codes, as tonic's `Code` converts to i32 (saves a direct tonic dependency).
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const NOT_FOUND: i32 = 5;
const ABORTED: i32 = 10;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// Turns an etcd-client error into the variant callers act on. etcd's messages are
/// kept verbatim in the text; the endpoint and operation are added around them.
pub(super) fn classify(
    endpoint: &str,
    what: &str,
    lease: Option<LeaseId>,
    e: ec::Error,
) -> StoreError {
    let unavailable = |reason: String| StoreError::Unavailable {
        endpoint: endpoint.to_string(),
        reason: format!("{what}: {reason}"),
    };
    match e {
        ec::Error::GRpcStatus(status) => {
            // Statuses made on this side from a failed connection carry their cause as
            // a source; statuses etcd sent never do.
            let local = std::error::Error::source(&status).is_some();
            let message = append_sources(
                status.message().to_string(),
                std::error::Error::source(&status),
            );
            match i32::from(status.code()) {
                CANCELLED | DEADLINE_EXCEEDED | UNAVAILABLE => unavailable(message),
                UNKNOWN | INTERNAL | ABORTED if local => unavailable(message),
                NOT_FOUND if message.contains("lease not found") => match lease {
                    Some(lease) => StoreError::LeaseNotFound { lease },
                    None => other(endpoint, what, message),
                },
                INVALID_ARGUMENT => StoreError::InvalidRequest {
                    reason: format!("{what}: {message}"),
                },
                _ => other(endpoint, what, format!("{status}")),
            }
        }
        ec::Error::TransportError(e) => unavailable(error_chain(&e)),
        ec::Error::IoError(e) => unavailable(e.to_string()),
        // The stream's request channel closed: the connection under it went away.
        ec::Error::WatchError(e) => unavailable(e),
        ec::Error::LeaseKeepAliveError(e) if e.contains("lease not found") => match lease {
            Some(lease) => StoreError::LeaseNotFound { lease },
            None => other(endpoint, what, e),
        },
        ec::Error::InvalidArgs(e) | ec::Error::EndpointError(e) => StoreError::InvalidRequest {
            reason: format!("{what} (etcd at {endpoint}): {e}"),
        },
        ec::Error::InvalidUri(e) => StoreError::InvalidRequest {
            reason: format!("bad etcd endpoint {endpoint}: {e}"),
        },
        e => other(endpoint, what, e.to_string()),
    }
}

/// Whether a failed call certainly never reached etcd's state machine, so that
/// sending it to another member cannot apply it twice: no connection could be
/// made, or the member refused it for want of a leader (`hasleader`, which
/// etcd checks before it handles a request).
pub(super) fn not_delivered(e: &ec::Error) -> bool {
    match e {
        ec::Error::TransportError(_) => true,
        ec::Error::GRpcStatus(status) if i32::from(status.code()) == UNAVAILABLE => {
            let chain = append_sources(String::new(), std::error::Error::source(status));
            status.message().contains("no leader")
                || chain.contains("tcp connect error")
                || chain.contains("Connection refused")
        }
        _ => false,
    }
}

pub(super) fn other(endpoint: &str, what: &str, message: String) -> StoreError {
    StoreError::Other {
        context: format!("{what} on etcd at {endpoint}"),
        message,
    }
}

/// Transport errors hide the useful part ("Connection refused") in their sources,
/// and repeat themselves on the way down; keep each distinct message once.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    append_sources(e.to_string(), e.source())
}

fn append_sources(mut text: String, mut source: Option<&dyn std::error::Error>) -> String {
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
