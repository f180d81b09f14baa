//! Which host indexes are free, and in what order they are handed out.

use std::collections::VecDeque;

use crate::bitmap::Bitmap;

/// Never-used indexes go first; a freed index waits in `retired` and is reused
/// only when no never-used one is left, so a returning address is unlikely to
/// meet stale state (neighbour entries, routes, firewall rules) elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct HostIndexes {
    capacity: u32,
    /// Assigned, departed, retired or excluded: every index that is not "never used".
    taken: Bitmap,
    /// No index below this is clear in `taken`: bits are only ever set, so the
    /// search for a never-used index resumes here instead of rescanning from 0.
    fresh_from: u32,
    excluded: Bitmap,
    retired: VecDeque<u32>,
}

impl HostIndexes {
    pub(crate) fn new(capacity: u32, excluded: Bitmap) -> Self {
        HostIndexes {
            capacity,
            taken: excluded.clone(),
            fresh_from: 0,
            excluded,
            retired: VecDeque::new(),
        }
    }

    /// Why a previous plan's index cannot be kept under the current spec, if so.
    pub(crate) fn check(&self, i: u32) -> Result<(), String> {
        if i >= self.capacity {
            Err(format!(
                "index {i} is beyond hostBlock's {} hosts",
                self.capacity
            ))
        } else if self.excluded.get(i) {
            Err(format!("index {i} is now inside an excludeCIDRs entry"))
        } else if self.taken.get(i) {
            Err(format!("index {i} is held twice in the previous plan"))
        } else {
            Ok(())
        }
    }

    /// Marks an index adopted from a previous plan as in use.
    pub(crate) fn hold(&mut self, i: u32) {
        self.taken.set(i);
    }

    /// Never-used indexes first, then the longest-retired one.
    pub(crate) fn take(&mut self) -> Option<u32> {
        if let Some(i) = self.taken.first_clear_from(self.fresh_from) {
            self.taken.set(i);
            self.fresh_from = i + 1;
            return Some(i);
        }
        self.fresh_from = self.taken.len();
        self.retired.pop_front()
    }

    /// An index whose host's grace period ran out (it stays marked as used).
    pub(crate) fn retire(&mut self, i: u32) {
        self.taken.set(i);
        self.retired.push_back(i);
    }

    pub(crate) fn retired(&self) -> impl Iterator<Item = u32> + '_ {
        self.retired.iter().copied()
    }

    /// Indexes still never used and not excluded, plus retired ones.
    pub(crate) fn free(&self) -> u32 {
        self.capacity - self.taken.count_ones() + self.retired.len() as u32
    }
}
