//! The leak sweep's decision, pure: which attachments to release, given what
//! the API server listed on this node, the attachments the log holds with
//! when an ADD last decided each, and the clock. No IO, no wall clock: times
//! are offsets on one monotonic clock ([`At`]), so the rules are tested with
//! any history a property test can make up.
//!
//! The rules (docs/design/leak-sweep.md):
//! - only an attachment with a pod reference (a Kubernetes pod) is a candidate;
//! - its pod is present when a listed pod has its UID (or, for a static pod,
//!   is the mirror of it), or, when the attachment has no UID, its namespace
//!   and name;
//! - an observation counts for an attachment only if the list started after
//!   the attachment's last ADD: a list made before the ADD says nothing about
//!   a pod being created;
//! - it is released when absent from at least two counting observations, the
//!   first at least `grace` before the last, with no counting observation in
//!   between that listed it, and its last ADD at least `grace` old;
//! - a failed list is no observation at all: it neither counts as absence nor
//!   clears one.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use railyard_core::ipam::{AttachmentId, PodRef};

use super::source::PodInfo;

/// A point on the sweeper's monotonic clock: the time since it started.
pub type At = Duration;

/// An attachment the log holds, as the sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub id: AttachmentId,
    pub pod: PodRef,
    /// When an ADD last decided it (allocated it, or answered a repeat).
    pub added: At,
}

/// The pods one list returned, indexed for [`Present::holds`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Present {
    uids: HashSet<String>,
    names: HashSet<(String, String)>,
}

impl Present {
    pub fn new(pods: &[PodInfo]) -> Self {
        let mut p = Present::default();
        for pod in pods {
            p.uids.insert(pod.uid.clone());
            // A static pod's sandbox carries the kubelet's UID for it, which
            // the API shows only in its mirror pod's annotation.
            if let Some(u) = &pod.mirror_of {
                p.uids.insert(u.clone());
            }
            p.names.insert((pod.namespace.clone(), pod.name.clone()));
        }
        p
    }

    /// Whether the pod `r` names is among these. With a UID, only the UID
    /// counts: a pod recreated under the same name (a StatefulSet's) is
    /// another pod, and the old one's attachment is a leak.
    pub fn holds(&self, r: &PodRef) -> bool {
        if r.uid.is_empty() {
            self.names.contains(&(r.namespace.clone(), r.name.clone()))
        } else {
            self.uids.contains(&r.uid)
        }
    }
}

/// Whether an attachment belongs to a Kubernetes pod the sweep can look up.
/// Attachments made outside Kubernetes (no `K8S_POD_*` in CNI_ARGS) never are.
pub fn is_kubernetes(r: &PodRef) -> bool {
    !r.uid.is_empty() || (!r.namespace.is_empty() && !r.name.is_empty())
}

/// One attempt to list the node's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The list started at `at` (taken before the request went out, after the
    /// attachments were read) and returned these pods.
    Listed { at: At, pods: Present },
    /// The API server could not say (down, forbidden, node unknown, timeout).
    Failed,
}

/// How long an attachment has been seen without its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Absence {
    /// The first counting observation that missed the pod.
    since: At,
    /// Counting observations that missed it since then.
    seen: u32,
}

/// The sweep's memory between observations: only the absences.
#[derive(Debug, Clone)]
pub struct Sweep {
    grace: Duration,
    absent: HashMap<AttachmentId, Absence>,
}

impl Sweep {
    pub fn new(grace: Duration) -> Self {
        Sweep {
            grace,
            absent: HashMap::new(),
        }
    }

    /// Attachments currently seen without their pod (candidates, not yet due).
    pub fn candidates(&self) -> usize {
        self.absent.len()
    }

    /// Takes one observation; returns the attachments to release now, in
    /// `held`'s order. `held` must have been read before the list started.
    pub fn observe(&mut self, held: &[Held], obs: &Observation) -> Vec<AttachmentId> {
        let Observation::Listed { at, pods } = obs else {
            return Vec::new();
        };
        let at = *at;
        let ids: HashSet<&AttachmentId> = held.iter().map(|h| &h.id).collect();
        self.absent.retain(|id, _| ids.contains(id));
        let mut release = Vec::new();
        for h in held {
            if !is_kubernetes(&h.pod) || at < h.added || pods.holds(&h.pod) {
                self.absent.remove(&h.id);
                continue;
            }
            let a = self
                .absent
                .entry(h.id.clone())
                .or_insert(Absence { since: at, seen: 0 });
            // An ADD since the first absence: that pod is being (re)created.
            if a.since < h.added {
                *a = Absence { since: at, seen: 0 };
            }
            a.seen += 1;
            let due = a.seen >= 2
                && at.saturating_sub(a.since) >= self.grace
                && at.saturating_sub(h.added) >= self.grace;
            if due {
                release.push(h.id.clone());
            }
        }
        release
    }
}

#[cfg(test)]
mod tests;
