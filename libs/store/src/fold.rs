//! Applying a [`WatchUpdate`] to what a follower holds, written once.
//!
//! Every follower of a prefix does the same fold: events are applied as they
//! come, and a snapshot (the first listing, or a re-list after compaction)
//! replaces everything, which means "put every listed key, and forget every key
//! you held that the listing lacks". [`WatchUpdate::changes`] turns either kind of
//! update into that one list of puts and deletes, so a follower has one code path;
//! [`Mirror`] is the common case of a map from key to decoded value.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::{KeyValue, WatchEvent, WatchUpdate};

/// One key's change, as a follower applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    Put(&'a KeyValue),
    /// The key was deleted (an event), or a snapshot no longer lists it.
    Delete(Cow<'a, str>),
}

impl Change<'_> {
    pub fn key(&self) -> &str {
        match self {
            Change::Put(kv) => &kv.key,
            Change::Delete(key) => key,
        }
    }
}

impl WatchUpdate {
    pub fn is_snapshot(&self) -> bool {
        matches!(self, WatchUpdate::Snapshot(_))
    }

    /// The keys the update names: every key a snapshot lists, the key of every
    /// event (keys a snapshot no longer lists are not named; see [`Self::changes`]).
    pub fn keys(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            WatchUpdate::Snapshot(range) => Box::new(range.kvs.iter().map(|kv| kv.key.as_str())),
            WatchUpdate::Events(events) => Box::new(events.iter().map(WatchEvent::key)),
        }
    }

    /// The puts and deletes that bring a follower holding the keys `known` up to
    /// date. Events come as they are, in order. A snapshot comes as a put of every
    /// key it lists (in key order), then a delete of every key of `known` it does
    /// not list (in `known`'s order); `known` is read only for a snapshot.
    pub fn changes<K: AsRef<str>>(&self, known: impl IntoIterator<Item = K>) -> Vec<Change<'_>> {
        match self {
            WatchUpdate::Events(events) => events
                .iter()
                .map(|e| match e {
                    WatchEvent::Put(kv) => Change::Put(kv),
                    WatchEvent::Delete { key, .. } => Change::Delete(Cow::Borrowed(key)),
                })
                .collect(),
            WatchUpdate::Snapshot(range) => {
                let listed: BTreeSet<&str> = range.kvs.iter().map(|kv| kv.key.as_str()).collect();
                let gone: Vec<Change<'_>> = known
                    .into_iter()
                    .filter(|k| !listed.contains(k.as_ref()))
                    .map(|k| Change::Delete(Cow::Owned(k.as_ref().to_owned())))
                    .collect();
                range.kvs.iter().map(Change::Put).chain(gone).collect()
            }
        }
    }
}

/// The values under a followed prefix, by key, decoded.
///
/// A value that does not decode leaves what the mirror held for its key (a
/// newer writer's format must not make a known entry vanish); a key never
/// decoded is absent.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror<T> {
    entries: BTreeMap<String, T>,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Mirror {
            entries: BTreeMap::new(),
        }
    }
}

impl<T> Mirror<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one update; returns every key it touched: the keys it names, and
    /// for a snapshot also the keys it dropped.
    pub fn apply(
        &mut self,
        update: &WatchUpdate,
        mut decode: impl FnMut(&KeyValue) -> Option<T>,
    ) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        for change in update.changes(self.entries.keys()) {
            match &change {
                Change::Put(kv) => {
                    if let Some(value) = decode(kv) {
                        self.entries.insert(kv.key.clone(), value);
                    }
                }
                Change::Delete(key) => {
                    self.entries.remove(key.as_ref());
                }
            }
            touched.insert(change.key().to_owned());
        }
        touched
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.values()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.entries.iter()
    }

    /// The entries whose key starts with `prefix`, in key order, without
    /// scanning the others (a view of one host among thousands).
    pub fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a T)> {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Range;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        }
    }

    fn snapshot(kvs: Vec<KeyValue>) -> WatchUpdate {
        WatchUpdate::Snapshot(Range { kvs, revision: 9 })
    }

    fn delete(key: &str) -> WatchEvent {
        WatchEvent::Delete {
            key: key.into(),
            mod_revision: 5,
        }
    }

    fn number(kv: &KeyValue) -> Option<u32> {
        std::str::from_utf8(&kv.value).ok()?.parse().ok()
    }

    #[test]
    fn events_come_as_they_are_in_order() {
        let u = WatchUpdate::Events(vec![WatchEvent::Put(kv("/p/a", "1")), delete("/p/b")]);
        // `known` is not read for events: /p/zzz is not dropped.
        let changes = u.changes(["/p/zzz"]);
        assert_eq!(changes.len(), 2);
        assert!(matches!(changes[0], Change::Put(kv) if kv.key == "/p/a"));
        assert_eq!(changes[1], Change::Delete("/p/b".into()));
        assert!(!u.is_snapshot());
        assert_eq!(u.keys().collect::<Vec<_>>(), ["/p/a", "/p/b"]);
    }

    #[test]
    fn a_snapshot_puts_what_it_lists_then_drops_the_rest() {
        let u = snapshot(vec![kv("/p/a", "1"), kv("/p/c", "3")]);
        let changes = u.changes(["/p/b", "/p/c", "/p/d"]);
        let keys: Vec<(&str, bool)> = changes
            .iter()
            .map(|c| (c.key(), matches!(c, Change::Put(_))))
            .collect();
        assert_eq!(
            keys,
            [
                ("/p/a", true),
                ("/p/c", true),
                ("/p/b", false),
                ("/p/d", false)
            ]
        );
        assert!(u.is_snapshot());
        assert_eq!(u.keys().collect::<Vec<_>>(), ["/p/a", "/p/c"]);
    }

    #[test]
    fn mirror_follows_events_and_snapshots_and_says_what_it_touched() {
        let mut m = Mirror::new();
        let touched = m.apply(&snapshot(vec![kv("/p/a", "1"), kv("/p/b", "2")]), number);
        assert_eq!(touched, ["/p/a", "/p/b"].map(String::from).into());
        assert_eq!((m.get("/p/a"), m.get("/p/b")), (Some(&1), Some(&2)));

        let touched = m.apply(
            &WatchUpdate::Events(vec![WatchEvent::Put(kv("/p/c", "3")), delete("/p/a")]),
            number,
        );
        assert_eq!(touched, ["/p/a", "/p/c"].map(String::from).into());
        assert_eq!(m.keys().collect::<Vec<_>>(), ["/p/b", "/p/c"]);

        // A re-list without /p/b: it goes, and is reported as touched.
        let touched = m.apply(&snapshot(vec![kv("/p/c", "30")]), number);
        assert_eq!(touched, ["/p/b", "/p/c"].map(String::from).into());
        assert_eq!(m.iter().collect::<Vec<_>>(), [(&"/p/c".to_string(), &30)]);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn an_undecodable_value_keeps_what_was_known() {
        let mut m = Mirror::new();
        m.apply(&snapshot(vec![kv("/p/a", "1")]), number);
        let touched = m.apply(
            &WatchUpdate::Events(vec![
                WatchEvent::Put(kv("/p/a", "garbage")),
                WatchEvent::Put(kv("/p/new", "garbage")),
            ]),
            number,
        );
        assert_eq!(touched.len(), 2, "undecodable keys are still touched");
        assert_eq!(m.values().collect::<Vec<_>>(), [&1]);
        m.apply(&snapshot(vec![kv("/p/a", "garbage")]), number);
        assert_eq!(m.get("/p/a"), Some(&1), "also across a re-list");
        m.apply(&snapshot(vec![]), number);
        assert!(m.is_empty());
    }
}
