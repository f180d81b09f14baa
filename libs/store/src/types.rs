//! Values that cross the `Store` port. They mirror etcd's data model (revisions,
//! versions, leases) closely enough that `MemStore` can be a faithful stand-in, but
//! carry no etcd-client types so callers never depend on the wire library.

use std::collections::BTreeSet;
use std::fmt;

use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::format::format_version;
use crate::StoreError;

/// etcd rejects transactions with more operations than this (`--max-txn-ops`, default 128).
/// Checked on the client so both stores fail the same way, before any network trip.
pub const MAX_TXN_OPS: usize = 128;

/// etcd rejects requests larger than `--max-request-bytes` (default 1.5 MiB). The store
/// checks an estimate against a slightly lower bound so a batch that passes here also
/// passes on a default-configured server, and `MemStore` fails where etcd would.
pub const MAX_TXN_BYTES: usize = 1_500_000;

/// A lease identifier as etcd hands it out. Zero is never a valid lease (etcd uses it
/// for "no lease"), which is why the API uses `Option<LeaseId>` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub i64);

impl LeaseId {
    /// etcd encodes "no lease" as 0; keep that quirk out of callers' code.
    pub(crate) fn from_raw(raw: i64) -> Option<LeaseId> {
        (raw != 0).then_some(LeaseId(raw))
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex, as etcdctl prints it, so ids in our logs can be pasted into etcdctl.
        write!(f, "{:x}", self.0)
    }
}

/// One key as stored, with the bookkeeping that makes compare-and-swap possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the put that created this incarnation of the key; a delete and
    /// re-create gives a new one, so it identifies "the same object".
    pub create_revision: i64,
    /// Revision of the last put; the usual CAS token.
    pub mod_revision: i64,
    /// Number of puts since creation (1 on create).
    pub version: i64,
    pub lease: Option<LeaseId>,
}

impl KeyValue {
    /// Decodes a JSON value, naming the key on failure so a corrupt record can be
    /// found. A value of a newer format version is refused before it is read
    /// ([`StoreError::NewerFormat`], see [`format_version`]).
    pub fn decode_json<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        decode_value(&self.key, &self.value)
    }
}

/// [`KeyValue::decode_json`] for a value already taken out of its `KeyValue`.
pub fn decode_value<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    format_version(key, value)?;
    serde_json::from_slice(value).map_err(|e| StoreError::Decode {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

/// A consistent listing: `revision` is the store revision the listing reflects, the
/// revision to resume a watch from so that nothing between list and watch is missed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Range {
    /// Sorted by key (byte order).
    pub kvs: Vec<KeyValue>,
    pub revision: i64,
}

/// A guard of a transaction. All must hold for the operations to be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals `rev`; `rev == 0` means "the key must not exist".
    ModRevision {
        key: String,
        rev: i64,
    },
    /// The key's create revision equals `rev`; guards against a delete + re-create
    /// that a mod-revision check on a fresh read would not notice.
    CreateRevision {
        key: String,
        rev: i64,
    },
    /// The key exists and holds exactly `value` (a missing key never matches, as in etcd).
    Value {
        key: String,
        value: Vec<u8>,
    },
    Exists(String),
    Absent(String),
}

impl Compare {
    pub fn key(&self) -> &str {
        match self {
            Compare::ModRevision { key, .. }
            | Compare::CreateRevision { key, .. }
            | Compare::Value { key, .. }
            | Compare::Exists(key)
            | Compare::Absent(key) => key,
        }
    }
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Writes the key. A put without a lease detaches any lease the key had, as in etcd.
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
    /// Deletes every key starting with `prefix` (an empty prefix means every key).
    DeletePrefix {
        prefix: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A put of `value` as JSON; fails only if `value` cannot be serialized.
    pub fn put_json<T: Serialize + ?Sized>(
        key: impl Into<String>,
        value: &T,
        lease: Option<LeaseId>,
    ) -> Result<Op, StoreError> {
        let key = key.into();
        let value = serde_json::to_vec(value).map_err(|e| StoreError::Decode {
            key: key.clone(),
            message: format!("cannot encode value: {e}"),
        })?;
        Ok(Op::Put { key, value, lease })
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    /// A rough upper bound of the op's encoded size, for batching below `MAX_TXN_BYTES`.
    pub fn encoded_size(&self) -> usize {
        const OVERHEAD: usize = 32;
        match self {
            Op::Put { key, value, .. } => key.len() + value.len() + OVERHEAD,
            Op::Delete { key } => key.len() + OVERHEAD,
            Op::DeletePrefix { prefix } => 2 * prefix.len() + OVERHEAD,
        }
    }
}

/// A compare-and-swap transaction. Only the success branch exists: callers that need to
/// know why a guard failed re-read, which keeps the two stores' semantics easy to match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    pub fn when(mut self, compare: Compare) -> Txn {
        self.compares.push(compare);
        self
    }

    pub fn then(mut self, op: Op) -> Txn {
        self.ops.push(op);
        self
    }

    /// Estimated request size; see `MAX_TXN_BYTES`.
    pub fn encoded_size(&self) -> usize {
        let compares: usize = self
            .compares
            .iter()
            .map(|c| {
                let value = match c {
                    Compare::Value { value, .. } => value.len(),
                    _ => 0,
                };
                c.key().len() + value + 32
            })
            .sum();
        compares + self.ops.iter().map(Op::encoded_size).sum::<usize>()
    }

    /// Rejects what etcd would reject, identically for both stores and with the
    /// offending key named (etcd's own messages do not name it).
    pub fn validate(&self) -> Result<(), StoreError> {
        // etcd applies the limit to the compares and to each branch separately.
        let count = self.ops.len().max(self.compares.len());
        if count > MAX_TXN_OPS {
            return Err(StoreError::TooManyOps {
                ops: count,
                max: MAX_TXN_OPS,
            });
        }
        let size = self.encoded_size();
        if size > MAX_TXN_BYTES {
            return Err(StoreError::TooLarge {
                bytes: size,
                max: MAX_TXN_BYTES,
            });
        }
        for c in &self.compares {
            check_key(c.key())?;
        }
        // etcd refuses a txn that writes a key twice, or puts a key it also deletes
        // (deletes may overlap each other).
        let mut puts = BTreeSet::new();
        for op in &self.ops {
            if let Op::Put { key, .. } | Op::Delete { key } = op {
                check_key(key)?;
            }
            let Op::Put { key, .. } = op else { continue };
            let deleted = self.ops.iter().any(|other| match other {
                Op::Delete { key: k } => k == key,
                Op::DeletePrefix { prefix } => key.starts_with(prefix.as_str()),
                Op::Put { .. } => false,
            });
            if !puts.insert(key.as_str()) || deleted {
                return Err(StoreError::InvalidRequest {
                    reason: format!("key {key:?} is written more than once in one txn"),
                });
            }
        }
        Ok(())
    }
}

/// Empty keys are how etcd spells "all keys" in ranges; as a single key it is an error
/// there, so it is one here too.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidRequest {
            reason: "empty key".to_string(),
        });
    }
    Ok(())
}

/// Result of a transaction. `revision` is the store revision after it: the revision of
/// its writes when it succeeded and wrote something, the current revision otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    pub succeeded: bool,
    pub revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete { key: String, mod_revision: i64 },
}

impl WatchEvent {
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change, i.e. where to resume a watch after this event.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// Batches of events in revision order. A batch never splits one revision, so a
/// transaction's writes are always seen together. The stream ends after an error.
pub type WatchStream = BoxStream<'static, Result<Vec<WatchEvent>, StoreError>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Op {
        Op::put(key, "v")
    }

    #[test]
    fn validate_follows_etcd_duplicate_rules() {
        let ok = |txn: Txn| txn.validate().is_ok();
        assert!(ok(Txn::new().then(put("/a")).then(put("/b"))));
        assert!(!ok(Txn::new().then(put("/a")).then(put("/a"))));
        assert!(!ok(Txn::new().then(put("/a/x")).then(Op::DeletePrefix {
            prefix: "/a/".into()
        })));
        assert!(!ok(Txn::new().then(Op::delete("/a")).then(put("/a"))));
        // Deletes may overlap, and a put next to (not inside) a deleted prefix is fine.
        assert!(ok(Txn::new().then(Op::delete("/a/x")).then(
            Op::DeletePrefix {
                prefix: "/a/".into()
            }
        )));
        assert!(ok(Txn::new().then(put("/ab")).then(Op::DeletePrefix {
            prefix: "/a/".into()
        })));
        assert!(!ok(Txn::new().then(put(""))));
        assert!(!ok(Txn::new().when(Compare::Exists(String::new()))));
    }

    #[test]
    fn validate_limits_ops_and_compares_separately() {
        let compares = |n| (0..n).map(|i| Compare::Exists(format!("/c{i}"))).collect();
        let ops = |n| (0..n).map(|i| put(&format!("/k{i}"))).collect();
        let txn = |c, o| Txn {
            compares: compares(c),
            ops: ops(o),
        };
        assert!(txn(MAX_TXN_OPS, MAX_TXN_OPS).validate().is_ok());
        let err = txn(0, MAX_TXN_OPS + 1).validate().unwrap_err();
        assert_eq!(err, StoreError::TooManyOps { ops: 129, max: 128 });
        assert!(err.to_string().contains("129"));
        assert!(txn(MAX_TXN_OPS + 1, 1).validate().is_err());
    }

    #[test]
    fn json_round_trip_and_readable_decode_error() {
        let Op::Put { key, value, .. } = Op::put_json("/j", &vec![1, 2], None).unwrap() else {
            panic!("put_json makes a put");
        };
        let kv = KeyValue {
            key,
            value,
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            lease: None,
        };
        assert_eq!(kv.decode_json::<Vec<u32>>().unwrap(), vec![1, 2]);
        let err = kv.decode_json::<String>().unwrap_err();
        assert!(err.to_string().contains("\"/j\""), "{err}");
    }

    #[test]
    fn lease_ids_print_like_etcdctl() {
        assert_eq!(LeaseId(0x7a11_0001).to_string(), "7a110001");
        assert_eq!(LeaseId::from_raw(0), None);
    }
}
