//! Conversions between this crate's types and etcd-client's, so the rest of the
//! crate never touches wire types.

use etcd_client as ec;

use crate::{Compare, KeyValue, LeaseId, Op, WatchEvent};

pub(super) fn convert_kv(kv: &ec::KeyValue) -> KeyValue {
    KeyValue {
        // Only this crate writes these keys, always as UTF-8; a foreign key that is not
        // is shown lossily rather than failing a whole listing.
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: LeaseId::from_raw(kv.lease()),
    }
}

pub(super) fn convert_event(event: &ec::Event) -> Option<WatchEvent> {
    let kv = event.kv()?;
    Some(match event.event_type() {
        ec::EventType::Put => WatchEvent::Put(convert_kv(kv)),
        ec::EventType::Delete => WatchEvent::Delete {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            mod_revision: kv.mod_revision(),
        },
    })
}

pub(super) fn revision_of(header: Option<&ec::ResponseHeader>) -> i64 {
    header.map_or(0, ec::ResponseHeader::revision)
}

pub(super) fn convert_compare(c: Compare) -> ec::Compare {
    use ec::CompareOp::{Equal, Greater};
    match c {
        Compare::ModRevision { key, rev } => ec::Compare::mod_revision(key, Equal, rev),
        Compare::CreateRevision { key, rev } => ec::Compare::create_revision(key, Equal, rev),
        Compare::Value { key, value } => ec::Compare::value(key, Equal, value),
        Compare::Exists(key) => ec::Compare::create_revision(key, Greater, 0),
        Compare::Absent(key) => ec::Compare::create_revision(key, Equal, 0),
    }
}

pub(super) fn convert_op(op: Op) -> ec::TxnOp {
    match op {
        Op::Put { key, value, lease } => {
            let options = lease.map(|l| ec::PutOptions::new().with_lease(l.0));
            ec::TxnOp::put(key, value, options)
        }
        Op::Delete { key } => ec::TxnOp::delete(key, None),
        Op::DeletePrefix { prefix } => {
            let options = if prefix.is_empty() {
                ec::DeleteOptions::new().with_all_keys()
            } else {
                ec::DeleteOptions::new().with_prefix()
            };
            ec::TxnOp::delete(prefix, Some(options))
        }
    }
}
