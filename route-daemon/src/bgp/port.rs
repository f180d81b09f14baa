//! The BIRD port: putting a generated configuration in force. One trait,
//! [`BirdControl`], with the real implementation ([`super::BirdFile`]: the
//! file BIRD was started with, checked by `bird -p`, then `birdc configure`)
//! and an in-memory twin ([`super::MemoryBird`]) the daemon's loop can be
//! tested on; both pass one suite (`super::conformance`, feature
//! `conformance`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;

/// What [`BirdControl::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// BIRD already runs exactly this text: nothing written, nothing reloaded.
    Unchanged,
    /// The file was written and BIRD took it.
    Reloaded,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BirdError {
    /// The text does not parse: BIRD's message. Nothing changed, neither the
    /// file nor what BIRD runs. The generator's output always parses (tested
    /// with `bird -p`), so this means a BIRD of another version.
    #[error("BIRD refused the configuration: {0}")]
    Refused(String),
    /// BIRD is not running or not answering on its socket. The file holds the
    /// new text, which BIRD reads when it starts; the next apply reloads
    /// again even if the text is the same.
    #[error("BIRD is not reachable: {0}")]
    Unreachable(String),
    /// The file could not be read or written.
    #[error("BIRD's configuration file: {0}")]
    Io(String),
}

/// Puts configurations in force in one BIRD.
#[async_trait]
pub trait BirdControl: Send + Sync {
    /// Makes `text` what BIRD runs. Unchanged when it already is (the file
    /// holds it and the last reload went through); the first apply of a fresh
    /// port always reloads, since a restarted daemon cannot know whether the
    /// previous one's last reload did.
    async fn apply(&self, text: &str) -> Result<Applied, BirdError>;

    /// The railyard protocols (names starting `ry_`) BIRD runs now, sorted.
    async fn protocols(&self) -> Result<Vec<String>, BirdError>;

    /// Says the daemon is alive and follows the plan. The BIRD guard
    /// (`railyard-bird-guard`, [`super::guard`]) stops BIRD, and so withdraws
    /// this host's blocks from its leaves, once the daemon has been silent
    /// for the planner's grace period: after that the planner may give the
    /// blocks to another host.
    async fn beat(&self) -> Result<(), BirdError>;

    /// When the daemon last beat, through any port on this BIRD; `None`
    /// when it never did.
    async fn last_beat(&self) -> Result<Option<SystemTime>, BirdError>;
}

/// The heartbeat file beside a BIRD configuration file (`<config>.alive`):
/// the one place the daemon and the guard agree on it.
pub fn heartbeat_path(config: &Path) -> PathBuf {
    let mut path = config.as_os_str().to_owned();
    path.push(".alive");
    PathBuf::from(path)
}

/// The railyard protocol names a configuration text declares, sorted: what
/// [`BirdControl::protocols`] reports once the text is in force.
pub fn declared_protocols(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("protocol")).then_some(())?;
            let _kind = words.next()?;
            let name = words.next()?.trim_matches('\'');
            name.starts_with("ry_").then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names
}
