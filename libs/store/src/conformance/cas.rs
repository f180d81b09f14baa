use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{key, must_get};
use crate::{Compare, Op, Store, StoreError, Txn};

const WRITERS: usize = 16;
const ROUNDS: usize = 50;

/// Many writers race a read-modify-write on one key. In every round all of them read
/// the same revision, so exactly one CAS may win: no lost update, no double win.
pub async fn concurrent_cas(store: Arc<dyn Store>, prefix: &str) -> Result<(), StoreError> {
    let counter = key(prefix, "counter");
    store.put(&counter, b"0".to_vec(), None).await?;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut writers = JoinSet::new();
    for _ in 0..WRITERS {
        let (store, barrier, counter) = (store.clone(), barrier.clone(), counter.clone());
        writers.spawn(async move {
            let mut wins = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                // Everyone finished the previous round before anyone reads, and
                // everyone has read before anyone writes.
                barrier.wait().await;
                let kv = must_get(&*store, &counter).await?;
                barrier.wait().await;
                let n: u64 = String::from_utf8_lossy(&kv.value)
                    .parse()
                    .unwrap_or_else(|_| panic!("counter holds a number: {kv:?}"));
                let txn = Txn::new()
                    .when(Compare::ModRevision {
                        key: counter.clone(),
                        rev: kv.mod_revision,
                    })
                    .then(Op::put(&counter, (n + 1).to_string()));
                wins.push(store.txn(txn).await?.succeeded);
            }
            Ok::<_, StoreError>(wins)
        });
    }
    let mut per_round = [0usize; ROUNDS];
    // A writer that fails leaves the others stuck at the barrier: return at the first
    // error (dropping the set aborts them) and bound the whole race in time.
    let joined = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(joined) = writers.join_next().await {
            let wins = joined.unwrap_or_else(|e| panic!("writer task died: {e}"))?;
            for (round, won) in wins.into_iter().enumerate() {
                per_round[round] += usize::from(won);
            }
        }
        Ok::<_, StoreError>(())
    })
    .await;
    joined.unwrap_or_else(|_| panic!("CAS writers did not finish in time"))?;
    for (round, winners) in per_round.iter().enumerate() {
        assert_eq!(*winners, 1, "round {round} must have exactly one winner");
    }
    let kv = must_get(&*store, &counter).await?;
    assert_eq!(kv.value, ROUNDS.to_string().as_bytes());
    assert_eq!(kv.version, i64::try_from(ROUNDS).unwrap_or(i64::MAX) + 1);
    Ok(())
}
