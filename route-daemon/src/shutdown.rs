//! The stop signal every long-running part of the daemon selects on: false until
//! SIGTERM or SIGINT (`railyard_telemetry::shutdown_on_signals`), then true.

/// Resolves once `shutdown` is true or its sender is gone (nobody can stop us any
/// more, so stop now).
pub(crate) use railyard_telemetry::stopped;
