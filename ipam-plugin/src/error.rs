//! The crate's one error type and its mapping onto CNI error codes.
//!
//! A runtime acts on the numeric code (1: try another version, 11: retry later,
//! 3: skip cleanup), so the code belongs to the variant rather than to each call
//! site. The message must let an operator fix the problem from the kubelet log
//! alone, so every variant names the field or variable and the offending value.
//!
//! Codes 0-99 are the spec's. Ours start at 100:
//!
//! | code | variant | meaning |
//! |------|---------|---------|
//! | 100 | [`Error::NoNicForPolicy`] | no NIC on this host satisfies the network's attach policy |
//! | 101 | [`Error::BlockExhausted`] | this host's address block on a rail has no free address |
//! | 102 | [`Error::DaemonRefused`] | the railyard daemon refused the request |
//! | 103 | [`Error::NoFreeDevice`] | host-device: no free spare link for a selected rail NIC |
//! | any | [`Error::Daemon`] | the daemon's own error, code and message passed through |
//! | 999 | [`Error::Internal`] | a bug (panic, broken invariant); libcni uses the same number |

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cni::{CniVersion, Command};

/// Numeric CNI error codes, named so tests and callers need no magic numbers.
pub mod codes {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const CONTAINER_UNKNOWN: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    pub const NO_NIC_FOR_POLICY: u32 = 100;
    pub const BLOCK_EXHAUSTED: u32 = 101;
    pub const DAEMON_REFUSED: u32 = 102;
    pub const NO_FREE_DEVICE: u32 = 103;
    pub const INTERNAL: u32 = 999;
}

/// Everything that can go wrong in a CNI invocation, each with its CNI code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("incompatible CNI version {version:?} in {field} (supported: {supported})",
        supported = CniVersion::supported_list())]
    IncompatibleVersion { field: String, version: String },

    #[error(
        "CNI_COMMAND={command} needs cniVersion {since} or later, but the config has {version}"
    )]
    CommandNotInVersion {
        command: Command,
        version: CniVersion,
        since: CniVersion,
    },

    #[error("plugin {plugin:?} supports none of the CNI versions up to {wanted} that we speak (it offers {offered:?})")]
    NoCommonVersion {
        plugin: String,
        wanted: CniVersion,
        offered: Vec<String>,
    },

    /// The spec wants key and value in the message; `reason` says what to
    /// write instead, since the field usually is a plausible mistake.
    #[error("unsupported field `{field}` = {value}: {reason}")]
    UnsupportedField {
        field: String,
        value: String,
        reason: String,
    },

    #[error("container {container_id:?} is unknown")]
    ContainerUnknown { container_id: String },

    #[error("missing required environment variables for {command}: {}", names.join(", "))]
    MissingEnv {
        command: Command,
        names: Vec<&'static str>,
    },

    #[error("invalid environment variable {name}={value:?}: {reason}")]
    InvalidEnv {
        name: &'static str,
        value: String,
        reason: String,
    },

    #[error("I/O failure while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("plugin {plugin:?} not found in CNI_PATH {cni_path:?}")]
    PluginNotFound { plugin: String, cni_path: String },

    #[error("plugin {plugin:?} failed with {status} and printed no CNI error")]
    DelegateCrashed {
        plugin: String,
        status: String,
        stderr: String,
    },

    #[error("failed to decode {what}: {reason}")]
    Decode { what: String, reason: String },

    #[error("invalid network config: field `{field}` {reason}")]
    InvalidConfig { field: String, reason: String },

    #[error("try again later: {reason}")]
    TryAgainLater { reason: String },

    #[error("plugin not available: {reason}")]
    PluginNotAvailable { reason: String },

    #[error(
        "plugin not available and existing containers may have limited connectivity: {reason}"
    )]
    LimitedConnectivity { reason: String },

    #[error("no NIC satisfies attach policy {policy:?}: {reason}")]
    NoNicForPolicy { policy: String, reason: String },

    #[error("address block {block} of network {network:?} is exhausted")]
    BlockExhausted { network: String, block: String },

    #[error("railyard daemon refused the request: {reason}")]
    DaemonRefused { reason: String },

    /// host-device found no spare link for a rail (`delegate.spareDevices`):
    /// its own code, as a full block has, because the fix is on the host
    /// (more spares, or fewer host-device pods), not in the config.
    #[error(
        "no free spare device for NIC {nic:?}{} matching delegate.spareDevices {template:?} \
         ({pattern:?}): {reason}",
        rail_note(.rail)
    )]
    NoFreeDevice {
        nic: String,
        rail: Option<u32>,
        template: String,
        pattern: String,
        reason: String,
    },

    /// A device the kubelet gave the pod cannot serve it (or the rail it
    /// needs is missing): code 103 as for spares, since the fix is the
    /// pod's resources or the host's SR-IOV setup, not the network config.
    #[error("pod devices: {reason}")]
    PodDevice { reason: String },

    /// Code 11 rather than 5: a daemon restart is routine (DaemonSet
    /// rollout) and the runtime's retry is exactly the right reaction.
    #[error("railyard daemon at {socket} is unreachable ({reason}); try again later")]
    DaemonUnreachable { socket: String, reason: String },

    /// The daemon's answer, verbatim: it knows the cause (no NIC, block
    /// full, no plan yet) and chose the code; the socket goes to `details`.
    #[error("{message}")]
    Daemon {
        socket: String,
        code: u32,
        message: String,
    },

    /// A failure whose rollback failed too. The runtime must see the
    /// original cause and code; what is left behind goes to `details` so an
    /// operator knows the following DEL has work to do.
    #[error("{cause}")]
    CleanupFailed { cause: Box<Error>, cleanup: String },

    /// Kept verbatim so a chain of plugins reports the innermost cause and code.
    #[error("plugin {plugin:?} failed: {msg}")]
    Delegate {
        plugin: String,
        code: u32,
        msg: String,
        details: Option<String>,
    },

    #[error("internal error: {reason}")]
    Internal { reason: String },
}

impl Error {
    /// The CNI error code a runtime sees for this error.
    pub fn code(&self) -> u32 {
        use codes::*;
        match self {
            Error::IncompatibleVersion { .. }
            | Error::CommandNotInVersion { .. }
            | Error::NoCommonVersion { .. } => INCOMPATIBLE_VERSION,
            Error::UnsupportedField { .. } => UNSUPPORTED_FIELD,
            Error::ContainerUnknown { .. } => CONTAINER_UNKNOWN,
            Error::MissingEnv { .. } | Error::InvalidEnv { .. } => INVALID_ENVIRONMENT,
            Error::Io { .. } | Error::PluginNotFound { .. } | Error::DelegateCrashed { .. } => {
                IO_FAILURE
            }
            Error::Decode { .. } => DECODE_FAILURE,
            Error::InvalidConfig { .. } => INVALID_NETWORK_CONFIG,
            Error::TryAgainLater { .. } => TRY_AGAIN_LATER,
            Error::PluginNotAvailable { .. } => PLUGIN_NOT_AVAILABLE,
            Error::LimitedConnectivity { .. } => LIMITED_CONNECTIVITY,
            Error::NoNicForPolicy { .. } => NO_NIC_FOR_POLICY,
            Error::BlockExhausted { .. } => BLOCK_EXHAUSTED,
            Error::DaemonRefused { .. } => DAEMON_REFUSED,
            Error::NoFreeDevice { .. } | Error::PodDevice { .. } => NO_FREE_DEVICE,
            Error::DaemonUnreachable { .. } => TRY_AGAIN_LATER,
            // 0 means success in CNI; a daemon that errs with it is refused.
            Error::Daemon { code: 0, .. } => DAEMON_REFUSED,
            Error::Daemon { code, .. } => *code,
            Error::CleanupFailed { cause, .. } => cause.code(),
            Error::Delegate { code, .. } => *code,
            Error::Internal { .. } => INTERNAL,
        }
    }

    /// A delegate's error with its message rewritten by `more` (to say which
    /// interface or NIC it was about); any other error as it is.
    pub fn about_delegate(self, more: impl FnOnce(&str) -> String) -> Error {
        match self {
            Error::Delegate {
                plugin,
                code,
                msg,
                details,
            } => Error::Delegate {
                plugin,
                code,
                msg: more(&msg),
                details,
            },
            other => other,
        }
    }

    /// The optional long form: what the short message leaves out.
    pub fn details(&self) -> Option<String> {
        match self {
            Error::Delegate { details, .. } => details.clone(),
            Error::DelegateCrashed { stderr, .. } if !stderr.is_empty() => {
                Some(format!("stderr: {stderr}"))
            }
            Error::Daemon { socket, .. } => {
                Some(format!("reported by the railyard daemon at {socket}"))
            }
            Error::CleanupFailed { cause, cleanup } => Some(match cause.details() {
                Some(inner) => format!("{inner}; cleanup also failed: {cleanup}"),
                None => format!("cleanup also failed: {cleanup}"),
            }),
            _ => None,
        }
    }

    /// The spec's error object, stamped with the version the reply is in.
    pub fn to_reply(&self, version: CniVersion) -> ErrorReply {
        ErrorReply {
            cni_version: Some(version.as_str().to_owned()),
            code: self.code(),
            msg: self.to_string(),
            details: self.details(),
        }
    }

    /// Shorthand for decode errors, which are built in many places.
    pub(crate) fn decode(what: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Error::Decode {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid_config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// " (rail 3)" when the rail is known, for messages about a NIC.
fn rail_note(rail: &Option<u32>) -> String {
    rail.map(|r| format!(" (rail {r})")).unwrap_or_default()
}

/// The spec's error JSON. `cniVersion` is optional on input because the Go
/// libraries (and so the reference plugins) omit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_version: Option<String>,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_carries_code_message_and_version() {
        let err = Error::InvalidEnv {
            name: "CNI_IFNAME",
            value: "a/b".into(),
            reason: "must not contain '/'".into(),
        };
        let reply = err.to_reply(CniVersion::V1_0_0);
        assert_eq!(reply.code, codes::INVALID_ENVIRONMENT);
        assert_eq!(reply.cni_version.as_deref(), Some("1.0.0"));
        assert!(reply.msg.contains("CNI_IFNAME=\"a/b\""), "{}", reply.msg);
        let json = serde_json::to_value(&reply).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"cniVersion": "1.0.0", "code": 4, "msg": reply.msg})
        );
    }

    #[test]
    fn own_codes_start_at_100() {
        let cases = [
            (
                Error::NoNicForPolicy {
                    policy: "rails=[9]".into(),
                    reason: "host has 4 rails".into(),
                },
                100,
            ),
            (
                Error::BlockExhausted {
                    network: "rdma".into(),
                    block: "10.0.1.0/26".into(),
                },
                101,
            ),
            (
                Error::DaemonRefused {
                    reason: "draining".into(),
                },
                102,
            ),
            (
                Error::NoFreeDevice {
                    nic: "eth1".into(),
                    rail: Some(1),
                    template: "{nic}s*".into(),
                    pattern: "eth1s*".into(),
                    reason: "no link matches it".into(),
                },
                103,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err}");
        }
    }

    #[test]
    fn delegate_error_keeps_its_code_and_details() {
        let err = Error::Delegate {
            plugin: "host-local".into(),
            code: 11,
            msg: "busy".into(),
            details: Some("lock held".into()),
        };
        assert_eq!(err.code(), 11);
        assert_eq!(err.details().as_deref(), Some("lock held"));
    }

    #[test]
    fn daemon_errors_keep_code_and_message_and_cleanup_keeps_the_cause() {
        let err = Error::Daemon {
            socket: "/run/railyard/ipam.sock".into(),
            code: 101,
            message: "block 192.168.3.0/24 is full".into(),
        };
        assert_eq!(
            (err.code(), err.to_string()),
            (101, "block 192.168.3.0/24 is full".into())
        );
        assert!(err
            .details()
            .unwrap_or_default()
            .contains("/run/railyard/ipam.sock"));
        let zero = Error::Daemon {
            socket: "s".into(),
            code: 0,
            message: "?".into(),
        };
        assert_eq!(zero.code(), codes::DAEMON_REFUSED);
        let wrapped = Error::CleanupFailed {
            cause: Box::new(err),
            cleanup: "DEL net1-0: busy".into(),
        };
        assert_eq!(wrapped.code(), 101);
        let details = wrapped.details().unwrap_or_default();
        assert!(
            details.contains("ipam.sock") && details.contains("DEL net1-0: busy"),
            "{details}"
        );
    }
}
