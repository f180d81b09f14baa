//! Reading an election without taking part: the convention of etcd's
//! concurrency package, where every candidate writes a key under a shared
//! prefix and the key with the lowest create revision leads. The planner's
//! campaign (railyard-planner's `election.rs`) writes such keys; the CLI and
//! tests only ask who leads.

use crate::{Store, StoreError};

/// The value (the leader's identity) of the oldest key under `prefix`, or
/// `None` when nobody campaigns.
pub async fn leader(store: &dyn Store, prefix: &str) -> Result<Option<String>, StoreError> {
    let range = store.range(prefix).await?;
    Ok(range
        .kvs
        .into_iter()
        .min_by_key(|kv| kv.create_revision)
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}
