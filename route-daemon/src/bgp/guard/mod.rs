//! The BIRD guard (`railyard-bird-guard`): runs BIRD beside the route-daemon
//! and stops it once the daemon has been silent for the grace period.
//!
//! Why: BIRD outlives the daemon on purpose (a daemon restart or upgrade
//! must not reset a BGP session, as it leaves routes in place). But a daemon
//! that is gone for good, or crash-loops, leaves its BIRD announcing this
//! host's blocks; once the planner's grace period ends it may give those
//! blocks to another host, and the leaf would then hold two paths for one
//! block. The daemon beats ([`super::BirdControl::beat`]) while it follows
//! the plan; the guard stops BIRD when the last beat is older than
//! `silent_after` (BIRD closes its sessions and the leaves withdraw this
//! host's blocks at once), and starts it again when the daemon beats again
//! (BIRD reads the file the daemon keeps current).
//!
//! This module decides; [`run`] does the process work. A BIRD that exits on
//! its own while the daemon beats is started again after a backoff.

pub mod run;

use std::time::{Duration, Instant};

/// What the guard does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start BIRD: the daemon beats and BIRD is not running.
    Start,
    /// Stop BIRD: the daemon has been silent for `silent_after`.
    Stop,
    /// Nothing to do now.
    Wait,
}

/// Whether the daemon counts as alive: it beat less than `silent_after`
/// ago. A beat from the future (a clock stepped back) counts as now.
pub fn fresh(beat_age: Option<Duration>, silent_after: Duration) -> bool {
    beat_age.is_some_and(|age| age < silent_after)
}

/// The guard's decision for one look at the heartbeat.
#[derive(Debug)]
pub struct Guard {
    silent_after: Duration,
    /// BIRD is not started again before this (after it exited on its own).
    not_before: Option<Instant>,
    /// The next backoff, doubled on each exit up to [`MAX_BACKOFF`].
    backoff: Duration,
    /// When the running BIRD was started (a long run resets the backoff).
    started: Option<Instant>,
}

/// The first wait after BIRD exits on its own, and the longest.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A BIRD that ran this long before exiting starts again after
/// [`MIN_BACKOFF`]: it was not crash-looping.
pub const STEADY: Duration = Duration::from_secs(60);

impl Guard {
    pub fn new(silent_after: Duration) -> Self {
        Guard {
            silent_after,
            not_before: None,
            backoff: MIN_BACKOFF,
            started: None,
        }
    }

    pub fn silent_after(&self) -> Duration {
        self.silent_after
    }

    /// What to do at `now`, with BIRD `running` or not and the daemon's last
    /// beat `beat_age` ago (`None`: it never beat).
    pub fn decide(&self, now: Instant, running: bool, beat_age: Option<Duration>) -> Action {
        let alive = fresh(beat_age, self.silent_after);
        match (running, alive) {
            (true, false) => Action::Stop,
            (false, true) if self.not_before.is_none_or(|t| now >= t) => Action::Start,
            _ => Action::Wait,
        }
    }

    /// BIRD was started at `now`.
    pub fn started(&mut self, now: Instant) {
        self.started = Some(now);
        self.not_before = None;
    }

    /// BIRD exited at `now` without being asked to (a crash, a bad file):
    /// the next start waits for the backoff, which doubles unless BIRD had
    /// run for [`STEADY`]. Returns the wait.
    pub fn exited(&mut self, now: Instant) -> Duration {
        let ran = self
            .started
            .take()
            .map(|s| now.saturating_duration_since(s));
        if ran.is_some_and(|r| r >= STEADY) {
            self.backoff = MIN_BACKOFF;
        }
        let wait = self.backoff;
        self.not_before = Some(now + wait);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }

    /// BIRD was stopped by the guard (the daemon went silent): the
    /// next start may come at once, when the daemon beats again.
    pub fn stopped(&mut self) {
        self.started = None;
        self.not_before = None;
        self.backoff = MIN_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SILENT: Duration = Duration::from_secs(60);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn bird_runs_exactly_while_the_daemon_beats() {
        let g = Guard::new(SILENT);
        let now = Instant::now();
        assert_eq!(g.decide(now, false, None), Action::Wait, "never beat");
        assert_eq!(g.decide(now, false, Some(secs(1))), Action::Start);
        assert_eq!(g.decide(now, true, Some(secs(59))), Action::Wait);
        assert_eq!(g.decide(now, true, Some(secs(60))), Action::Stop, "silent");
        assert_eq!(g.decide(now, true, None), Action::Stop, "beat file gone");
        assert_eq!(g.decide(now, false, Some(secs(600))), Action::Wait);
    }

    #[test]
    fn a_beat_from_the_future_is_fresh() {
        // The caller turns a beat after now into an age of zero.
        assert!(fresh(Some(Duration::ZERO), SILENT));
        assert!(!fresh(Some(SILENT), SILENT));
    }

    #[test]
    fn a_crashing_bird_is_started_again_after_a_doubling_backoff() {
        let mut g = Guard::new(SILENT);
        let t0 = Instant::now();
        let beat = Some(secs(1));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            assert_eq!(g.decide(now, false, beat), Action::Start);
            g.started(now);
            let wait = g.exited(now + secs(1));
            waits.push(wait.as_secs());
            now += secs(1);
            assert_eq!(g.decide(now, false, beat), Action::Wait, "backing off");
            now += wait;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        // One that ran steadily starts again after the shortest wait.
        assert_eq!(g.decide(now, false, beat), Action::Start);
        g.started(now);
        assert_eq!(g.exited(now + STEADY), MIN_BACKOFF);
    }

    #[test]
    fn a_stop_for_silence_leaves_no_backoff() {
        let mut g = Guard::new(SILENT);
        let now = Instant::now();
        g.started(now);
        let _ = g.exited(now);
        g.stopped();
        assert_eq!(g.decide(now, false, Some(secs(1))), Action::Start);
    }
}
