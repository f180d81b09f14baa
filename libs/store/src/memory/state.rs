//! The synchronous heart of `MemStore`: an MVCC map that follows etcd's rules for
//! revisions, versions, leases and compaction. Kept free of async so every rule is a
//! plain function of the state and easy to reason about under one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::time::Duration;

use tokio::time::Instant;

use crate::types::check_key;
use crate::{Compare, KeyValue, LeaseId, Op, Range, StoreError, Txn, TxnOutcome, WatchEvent};

/// etcd never grants less than its minimum TTL; the test harness's etcd timing makes
/// that 1 s, so this is the smallest TTL both stores agree on.
const MIN_TTL_SECS: i64 = 1;

/// Lease ids start high so a lease id mixed up with a revision in a test stands out.
const FIRST_LEASE_ID: i64 = 0x7a11_0000;

#[derive(Debug)]
pub(super) struct Lease {
    ttl: i64,
    deadline: Instant,
    keys: BTreeSet<String>,
}

#[derive(Debug)]
pub(super) struct State {
    /// etcd starts at revision 1 with an empty store; the first write is revision 2.
    pub(super) revision: i64,
    pub(super) compact_revision: i64,
    kvs: BTreeMap<String, KeyValue>,
    /// One entry per revision after `compact_revision`, in order.
    pub(super) history: VecDeque<(i64, Vec<WatchEvent>)>,
    leases: HashMap<LeaseId, Lease>,
    next_lease: i64,
    pub(super) history_limit: Option<usize>,
}

impl State {
    pub(super) fn new() -> State {
        State {
            revision: 1,
            compact_revision: 0,
            kvs: BTreeMap::new(),
            history: VecDeque::new(),
            leases: HashMap::new(),
            next_lease: FIRST_LEASE_ID,
            history_limit: None,
        }
    }

    pub(super) fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        Ok(self.kvs.get(key).cloned())
    }

    pub(super) fn range(&self, prefix: &str) -> Range {
        let kvs = self
            .kvs
            .range::<str, _>(from(prefix))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Range {
            kvs,
            revision: self.revision,
        }
    }

    /// Applies an already validated (`Txn::validate`) transaction.
    pub(super) fn txn(&mut self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        if !txn.compares.iter().all(|c| self.holds(c)) {
            return Ok(TxnOutcome {
                succeeded: false,
                revision: self.revision,
            });
        }
        // Like etcd, a missing lease fails the whole request, but only on the branch
        // that actually runs.
        for op in &txn.ops {
            if let Op::Put {
                lease: Some(lease), ..
            } = op
            {
                if !self.leases.contains_key(lease) {
                    return Err(StoreError::LeaseNotFound { lease: *lease });
                }
            }
        }
        let rev = self.revision + 1;
        let mut events = Vec::new();
        for op in txn.ops {
            match op {
                Op::Put { key, value, lease } => events.push(self.put(rev, key, value, lease)),
                Op::Delete { key } => events.extend(self.remove(rev, &key)),
                Op::DeletePrefix { prefix } => {
                    let keys: Vec<String> = self
                        .kvs
                        .range::<str, _>(from(&prefix))
                        .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in keys {
                        events.extend(self.remove(rev, &key));
                    }
                }
            }
        }
        // etcd only moves the revision when something changed.
        self.commit(events);
        Ok(TxnOutcome {
            succeeded: true,
            revision: self.revision,
        })
    }

    fn holds(&self, compare: &Compare) -> bool {
        let kv = self.kvs.get(compare.key());
        match compare {
            // A missing key compares as revision 0, exactly as in etcd.
            Compare::ModRevision { rev, .. } => kv.map_or(0, |kv| kv.mod_revision) == *rev,
            Compare::CreateRevision { rev, .. } => kv.map_or(0, |kv| kv.create_revision) == *rev,
            Compare::Value { value, .. } => kv.is_some_and(|kv| kv.value == *value),
            Compare::Exists(_) => kv.is_some(),
            Compare::Absent(_) => kv.is_none(),
        }
    }

    fn put(&mut self, rev: i64, key: String, value: Vec<u8>, lease: Option<LeaseId>) -> WatchEvent {
        let previous = self.kvs.get(&key);
        let (create_revision, version, old_lease) = previous.map_or((rev, 1, None), |kv| {
            (kv.create_revision, kv.version + 1, kv.lease)
        });
        self.detach(old_lease, &key);
        if let Some(l) = lease.and_then(|id| self.leases.get_mut(&id)) {
            l.keys.insert(key.clone());
        }
        let kv = KeyValue {
            key: key.clone(),
            value,
            create_revision,
            mod_revision: rev,
            version,
            lease,
        };
        self.kvs.insert(key, kv.clone());
        WatchEvent::Put(kv)
    }

    fn remove(&mut self, rev: i64, key: &str) -> Option<WatchEvent> {
        let kv = self.kvs.remove(key)?;
        self.detach(kv.lease, key);
        Some(WatchEvent::Delete {
            key: kv.key,
            mod_revision: rev,
        })
    }

    fn detach(&mut self, lease: Option<LeaseId>, key: &str) {
        if let Some(l) = lease.and_then(|id| self.leases.get_mut(&id)) {
            l.keys.remove(key);
        }
    }

    fn commit(&mut self, events: Vec<WatchEvent>) {
        if events.is_empty() {
            return;
        }
        self.revision += 1;
        self.history.push_back((self.revision, events));
        if let Some(limit) = self.history_limit {
            if self.history.len() > limit {
                let keep_from = self.revision - i64::try_from(limit).unwrap_or(i64::MAX);
                self.compact_to(keep_from);
            }
        }
    }

    pub(super) fn compact(&mut self, revision: i64) -> Result<(), StoreError> {
        if revision > self.revision {
            return Err(StoreError::InvalidRequest {
                reason: format!(
                    "cannot compact at revision {revision}, the store is at {}",
                    self.revision
                ),
            });
        }
        self.compact_to(revision);
        Ok(())
    }

    fn compact_to(&mut self, revision: i64) {
        if revision <= self.compact_revision {
            return;
        }
        self.compact_revision = revision;
        while self
            .history
            .front()
            .is_some_and(|(rev, _)| *rev <= revision)
        {
            self.history.pop_front();
        }
    }

    pub(super) fn grant(&mut self, ttl_secs: i64, now: Instant) -> LeaseId {
        let ttl = ttl_secs.max(MIN_TTL_SECS);
        self.next_lease += 1;
        let id = LeaseId(self.next_lease);
        let lease = Lease {
            ttl,
            deadline: now + secs(ttl),
            keys: BTreeSet::new(),
        };
        self.leases.insert(id, lease);
        id
    }

    pub(super) fn keep_alive(&mut self, lease: LeaseId, now: Instant) -> Result<i64, StoreError> {
        let l = self
            .leases
            .get_mut(&lease)
            .ok_or(StoreError::LeaseNotFound { lease })?;
        l.deadline = now + secs(l.ttl);
        Ok(l.ttl)
    }

    pub(super) fn revoke(&mut self, lease: LeaseId) -> Result<(), StoreError> {
        let l = self
            .leases
            .remove(&lease)
            .ok_or(StoreError::LeaseNotFound { lease })?;
        // All keys of one lease go in one revision, as etcd's revoke does.
        let rev = self.revision + 1;
        let events = l
            .keys
            .iter()
            .filter_map(|key| self.remove(rev, key))
            .collect();
        self.commit(events);
        Ok(())
    }

    /// Revokes every lease whose deadline has passed, earliest first.
    pub(super) fn expire(&mut self, now: Instant) {
        let mut due: Vec<(Instant, LeaseId)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, l)| (l.deadline, *id))
            .collect();
        due.sort();
        for (_, id) in due {
            // Cannot fail: the id was just read from the map.
            let _ = self.revoke(id);
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.deadline).min()
    }

    /// Whole revisions after `after` whose events touch `prefix`, stopping once roughly
    /// `max_events` are gathered. Returns the events and the last revision examined.
    pub(super) fn events_after(
        &self,
        after: i64,
        prefix: &str,
        max_events: usize,
    ) -> (Vec<WatchEvent>, i64) {
        let start = self.history.partition_point(|(rev, _)| *rev <= after);
        let mut out = Vec::new();
        let mut last = after;
        for (rev, events) in self.history.range(start..) {
            if out.len() >= max_events {
                break;
            }
            out.extend(
                events
                    .iter()
                    .filter(|e| e.key().starts_with(prefix))
                    .cloned(),
            );
            last = *rev;
        }
        if out.len() < max_events {
            last = last.max(self.revision);
        }
        (out, last)
    }
}

/// Keys from `start` on, as a range over `BTreeMap<String, _>` borrowing a `&str`.
fn from(start: &str) -> (Bound<&str>, Bound<&str>) {
    (Bound::Included(start), Bound::Unbounded)
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}
