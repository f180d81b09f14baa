//! The guard's process work: BIRD as a child (`bird -f -c <config> -s
//! <socket>`), the daemon's heartbeat read through the BIRD port every
//! `poll`, and [`super::Guard`]'s decisions carried out. On SIGTERM or
//! SIGINT the guard stops BIRD (it closes its sessions, so the leaves
//! withdraw this host's blocks) and exits.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use railyard_store::cli::parse_duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Action, Guard};
use crate::bgp::{BirdControl, BirdFile};
use crate::error::{Error, Result};

/// What the guard runs and watches.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The BIRD binary (Debian's `/usr/sbin/bird`).
    pub bird: PathBuf,
    /// BIRD's configuration file, which the daemon writes (`--bird-config`);
    /// the heartbeat is beside it ([`crate::bgp::heartbeat_path`]).
    pub config: PathBuf,
    /// BIRD's control socket (`--bird-socket`).
    pub socket: PathBuf,
    /// How long the daemon may be silent before BIRD is stopped: at most the
    /// planner's `--grace` (after it the planner may give this host's blocks
    /// to another host).
    pub silent_after: Duration,
    /// How often the heartbeat is looked at.
    pub poll: Duration,
}

/// The flags of `railyard-bird-guard`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "railyard-bird-guard",
    version,
    about = "Runs BIRD beside railyard's route-daemon, and stops it (withdrawing this host's blocks from its leaves) once the daemon has been silent for the grace period"
)]
pub struct GuardArgs {
    /// BIRD's configuration file: the route-daemon's --bird-config.
    #[arg(long, value_name = "FILE")]
    pub bird_config: PathBuf,
    /// BIRD's control socket: the route-daemon's --bird-socket.
    #[arg(long, value_name = "PATH")]
    pub bird_socket: PathBuf,
    /// How long the route-daemon may be silent before BIRD is stopped. At
    /// most the planner's --grace (default 10m): after it the planner may
    /// give this host's blocks to another host.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub silent_after: Duration,
    /// How often the daemon's heartbeat is looked at.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub poll: Duration,
    /// The BIRD binary.
    #[arg(long, default_value = crate::bgp::file::BIRD)]
    pub bird: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
}

impl GuardArgs {
    /// The guard's configuration; a zero duration is refused, naming the flag.
    pub fn config(&self) -> Result<GuardConfig> {
        for (flag, value) in [("--silent-after", self.silent_after), ("--poll", self.poll)] {
            if value.is_zero() {
                return Err(Error::Config(format!("{flag}: must be more than 0s")));
            }
        }
        Ok(GuardConfig {
            bird: self.bird.clone(),
            config: self.bird_config.clone(),
            socket: self.bird_socket.clone(),
            silent_after: self.silent_after,
            poll: self.poll,
        })
    }
}

/// How long BIRD gets to close its sessions after SIGTERM before it is
/// killed (a kill closes its TCP connections too, only without a BGP
/// notification).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs until `shutdown` turns true, then stops BIRD.
pub async fn run(cfg: GuardConfig, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    if !cfg.bird.exists() {
        return Err(Error::Config(format!(
            "BIRD binary {} not found (Debian's bird2 installs it)",
            cfg.bird.display()
        )));
    }
    let port = BirdFile::new(&cfg.config, &cfg.socket);
    let mut guard = Guard::new(cfg.silent_after);
    let mut bird: Option<Child> = None;
    let mut tick = tokio::time::interval(cfg.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(
        config = %cfg.config.display(),
        silent_after = ?cfg.silent_after,
        "BIRD guard running: BIRD runs while the route-daemon beats"
    );
    loop {
        tokio::select! {
            () = crate::shutdown::stopped(&mut shutdown) => {
                if let Some(child) = bird.take() {
                    stop(child).await;
                    info!("BIRD stopped on shutdown; its sessions are closed");
                }
                return Ok(());
            }
            status = exited(&mut bird) => {
                bird = None;
                let wait = guard.exited(Instant::now().into_std());
                warn!(status = %describe(status), ?wait, "BIRD exited on its own; starting it again after the wait");
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now().into_std();
        let age = beat_age(&port).await;
        match guard.decide(now, bird.is_some(), age) {
            Action::Start => match spawn(&cfg) {
                Ok(child) => {
                    info!(pid = child.id(), "the route-daemon beats: BIRD started");
                    bird = Some(child);
                    guard.started(now);
                }
                Err(e) => {
                    let wait = guard.exited(now);
                    warn!(error = %e, ?wait, "cannot start BIRD; trying again after the wait");
                }
            },
            Action::Stop => {
                if let Some(child) = bird.take() {
                    stop(child).await;
                }
                guard.stopped();
                warn!(
                    silent_for = ?age,
                    silent_after = ?guard.silent_after(),
                    "the route-daemon is silent: BIRD stopped, this host's blocks withdrawn from its leaves"
                );
            }
            Action::Wait => {}
        }
    }
}

/// How long ago the daemon last beat; a beat in the future counts as now, an
/// unreadable heartbeat as none (logged).
async fn beat_age(port: &BirdFile) -> Option<Duration> {
    match port.last_beat().await {
        Ok(Some(t)) => Some(SystemTime::now().duration_since(t).unwrap_or_default()),
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "cannot read the route-daemon's heartbeat");
            None
        }
    }
}

fn spawn(cfg: &GuardConfig) -> std::io::Result<Child> {
    Command::new(&cfg.bird)
        .arg("-f")
        .arg("-c")
        .arg(&cfg.config)
        .arg("-s")
        .arg(&cfg.socket)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// Resolves when the running BIRD exits; never while none runs.
async fn exited(bird: &mut Option<Child>) -> std::io::Result<ExitStatus> {
    match bird {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// SIGTERM (BIRD sends its peers a Cease and exits), then a kill after
/// [`STOP_TIMEOUT`].
async fn stop(mut child: Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        warn!("BIRD did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<GuardConfig> {
        let argv = std::iter::once("railyard-bird-guard").chain(args.iter().copied());
        GuardArgs::try_parse_from(argv)
            .map_err(|e| Error::Config(e.to_string()))?
            .config()
    }

    const PATHS: [&str; 2] = [
        "--bird-config=/run/b/bird.conf",
        "--bird-socket=/run/b/bird.ctl",
    ];

    #[test]
    fn defaults_follow_the_planner_and_debian() {
        let c = parse(&PATHS).expect("paths are enough");
        assert_eq!(
            c.silent_after,
            Duration::from_secs(600),
            "the planner's --grace"
        );
        assert_eq!(c.poll, Duration::from_secs(1));
        assert_eq!(c.bird, PathBuf::from("/usr/sbin/bird"));
        assert_eq!(c.config, PathBuf::from("/run/b/bird.conf"));
        assert_eq!(c.socket, PathBuf::from("/run/b/bird.ctl"));
    }

    #[test]
    fn paths_are_required_and_durations_must_be_positive() {
        assert!(parse(&["--bird-config=/a"]).is_err());
        let zero = parse(&[PATHS[0], PATHS[1], "--silent-after=0s"]).expect_err("zero");
        assert!(zero.to_string().contains("--silent-after"), "{zero}");
        let c = parse(&[PATHS[0], PATHS[1], "--silent-after=5s", "--poll=200ms"]).expect("ok");
        assert_eq!(
            (c.silent_after, c.poll),
            (Duration::from_secs(5), Duration::from_millis(200))
        );
    }
}
