//! The stop signal every long-running part of the daemon selects on.

use tokio::sync::watch;

/// Resolves once `shutdown` is true or its sender is gone (nobody can stop us any
/// more, so stop now). Holds no borrow of the value across awaits, which keeps
/// the futures that select on it `Send`.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
