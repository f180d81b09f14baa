//! Routed rails in the loop (`docs/design/routed-rails.md`): the host's link
//! addresses into the view, the source tables and rules with the rest of the
//! tables and rules, and BIRD's configuration put in force after each pass.
//!
//! Nothing here runs for a host without routed networks and without BIRD:
//! an l2-only daemon does exactly what it did before.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use railyard_core::IfName;
use tracing::{info, warn};

use super::Reconciler;
use crate::bgp::{Applied, BirdControl, BirdError};
use crate::kernel::Kernel;
use crate::view::RoutedChange;

/// How often the daemon beats while it runs (the BIRD guard stops BIRD after
/// `--silent-after`, minutes, without a beat).
pub(super) const BEAT_EVERY: Duration = Duration::from_secs(1);

/// The heartbeat's state: no beat before a pass has put BIRD's file in place
/// (a BIRD the guard starts reads it, so it must be this daemon's, not one a
/// previous run left), and a failing beat logged once, not every second.
#[derive(Debug, Default)]
pub(super) struct BeatState {
    file_written: bool,
    failing: bool,
}

impl<K: Kernel + 'static> Reconciler<K> {
    /// Announces this host's routed blocks through `bird` (the BIRD beside
    /// the daemon, `--bird-config` and `--bird-socket`).
    pub fn with_bird(mut self, bird: Arc<dyn BirdControl>) -> Self {
        self.bird = Some(bird);
        self
    }

    fn routed_in_play(&self) -> bool {
        let r = self.view.routed();
        self.view.any_routed()
            || self.bird.is_some()
            || !r.links.is_empty()
            || !r.source_rules.is_empty()
    }

    /// Before a pass: the host's link addresses, which routed networks' next
    /// hops follow (read on every pass while a network is routed: one link
    /// dump, and a network turned routed needs them at once, not at the next
    /// link event); the rules of ours on a pass that looks at everything
    /// (links changed, an overrun, the first); then what the routed networks
    /// ask besides routes. Returns what changed, the tables to recompute, and
    /// whether a read failed (the pass retries).
    pub(super) async fn refresh_routed(
        &mut self,
        all: bool,
    ) -> (RoutedChange, BTreeSet<u32>, bool) {
        let mut recompute = BTreeSet::new();
        if !self.routed_in_play() {
            return (RoutedChange::default(), recompute, false);
        }
        let mut failed = false;
        let mut owned = None;
        if all || self.view.any_routed() {
            match self.kernel.rail_links().await {
                Ok(links) => {
                    let addresses: Vec<(IfName, IpNet)> = links
                        .iter()
                        .flat_map(|l| l.addresses.iter().map(move |a| (l.name, *a)))
                        .collect();
                    if self.view.set_addresses(addresses) {
                        let routing = self.cfg.routing;
                        recompute = self
                            .view
                            .networks()
                            .filter(|n| self.view.fabric(n).is_routed())
                            .map(|n| routing.table(n))
                            .collect();
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot list links for the routed networks' next hops");
                    failed = true;
                }
            }
        }
        if all {
            match self.kernel.owned_rules().await {
                Ok(rules) => owned = Some(rules),
                Err(e) => {
                    warn!(error = %e, "cannot list policy rules");
                    failed = true;
                }
            }
        }
        let change = self.view.refresh_routed(
            &self.cfg.node_name,
            owned.as_deref(),
            self.cfg.rule_priority,
        );
        let routed = self.view.routed();
        self.metrics
            .routed_links_missing
            .set(i64::try_from(routed.problems.len()).unwrap_or(i64::MAX));
        for p in &routed.problems {
            warn!(problem = %p, "routed rail without a usable link");
        }
        for c in &routed.conflicts {
            warn!(network = %c.network, nic = %c.nic, reason = %c.reason, "blocks not announced");
        }
        (change, recompute, failed)
    }

    /// Tells the BIRD guard this daemon is alive, once BIRD's file is this
    /// run's. The beat follows the loop, not etcd: an etcd outage keeps
    /// every host beating (a withdrawal on every host would cut every pod
    /// off), while a daemon that is gone, hangs, or crash-loops before its
    /// first pass stops.
    pub(super) async fn beat(&mut self) {
        let Some(bird) = &self.bird else {
            return;
        };
        if !self.beat.file_written {
            return;
        }
        match bird.beat().await {
            Ok(()) if self.beat.failing => {
                info!("heartbeat for the BIRD guard written again");
                self.beat.failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !self.beat.failing {
                    warn!(error = %e, "cannot write the heartbeat: the BIRD guard will stop BIRD if this lasts");
                }
                self.beat.failing = true;
                self.metrics.bird_failures.inc();
            }
        }
    }

    /// Puts the routed networks' BIRD configuration in force; true when it
    /// is (or there is no BIRD to drive). A refusal or an unreachable BIRD is
    /// a failure the pass retries with its backoff.
    pub(super) async fn sync_bird(&mut self) -> bool {
        let Some(bird) = &self.bird else {
            return true;
        };
        let applied = bird.apply(&self.view.routed().bird).await;
        // Unreachable: the file holds the text; BIRD reads it when it starts.
        let written = matches!(applied, Ok(_) | Err(BirdError::Unreachable(_)));
        if written && !self.beat.file_written {
            // The first beat at once: the guard starts BIRD on it, and a
            // joining host's blocks wait for that.
            self.beat.file_written = true;
            self.beat().await;
        }
        match applied {
            Ok(Applied::Unchanged) => true,
            Ok(Applied::Reloaded) => {
                info!("BIRD reloaded with this host's announcements");
                self.metrics.bird_reloads.inc();
                true
            }
            Err(e) => {
                warn!(error = %e, "BIRD configuration not in force; retrying");
                self.metrics.bird_failures.inc();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
