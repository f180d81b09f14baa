//! The cluster's long-running processes (etcd, planners, route-daemons). They
//! outlive `railyard-local up`, so each is recorded by pid *and* kernel start
//! time: `down` runs in another process, maybe much later, and must never signal
//! an unrelated process that reused the pid.

use std::fs::{DirBuilder, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    /// `etcd`, `planner-0`, or a host name (its route-daemon).
    pub role: String,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: with the pid, identifies the process.
    pub start_ticks: u64,
    pub argv: Vec<String>,
    pub log: PathBuf,
}

/// Starts `argv` in its own process group (a Ctrl-C at the terminal that ran
/// `up` must not take the cluster down), output appended to `log`.
pub fn spawn(
    role: &str,
    argv: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> Result<(ProcRecord, Child)> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Refused(format!("{role}: empty command line")))?;
    if let Some(dir) = log.parent() {
        private_dir(dir).map_err(|e| Error::io("create log dir", dir, e))?;
    }
    // The services log pod names and addresses: owner only.
    let out = File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(|e| Error::io("open log", log, e))?;
    let err = out.try_clone().map_err(|e| Error::io("open log", log, e))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().map_err(|e| Error::Command {
        command: argv.join(" "),
        output: format!("cannot start it: {e}"),
    })?;
    let pid = child.id();
    let record = ProcRecord {
        role: role.to_owned(),
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
        argv: argv.to_vec(),
        log: log.to_owned(),
    };
    Ok((record, child))
}

/// Creates `dir` (and missing parents) mode 0700: the cluster's logs and state
/// name its pods and hosts.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The start time of `pid` and whether it is a zombie (exited, not yet reaped).
fn stat(pid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); starttime is field 22.
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    Some((fields.get(19)?.parse().ok()?, zombie))
}

fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(t, _)| t)
}

/// Whether the recorded process still runs (the same process, not a reused pid).
pub fn is_alive(record: &ProcRecord) -> bool {
    matches!(stat(record.pid), Some((t, false)) if t == record.start_ticks)
}

/// Sends `signal` if the recorded process is still the one running.
pub fn signal(record: &ProcRecord, signal: Signal) -> bool {
    if !is_alive(record) {
        return false;
    }
    let Ok(pid) = i32::try_from(record.pid) else {
        return false;
    };
    kill(Pid::from_raw(pid), signal).is_ok()
}

/// Asks the process to stop (SIGTERM), then kills it after `grace`. Reaps it
/// when this process is its parent (`child`), so it does not linger as a zombie.
pub fn stop(record: &ProcRecord, child: Option<&mut Child>, grace: Duration) {
    if signal(record, Signal::SIGTERM) {
        let deadline = Instant::now() + grace;
        while is_alive(record) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(record, Signal::SIGKILL);
    }
    if let Some(c) = child {
        let _ = c.wait();
    } else {
        // Not ours to reap: wait for the kill to land, so a caller checking
        // right after (`down`) does not count a dying process as running.
        let deadline = Instant::now() + Duration::from_secs(2);
        while is_alive(record) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// SIGKILL, as a crash or a power cut would; reaped like `stop`.
pub fn crash(record: &ProcRecord, child: Option<&mut Child>) {
    signal(record, Signal::SIGKILL);
    if let Some(c) = child {
        let _ = c.wait();
    } else {
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(record) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The last `lines` lines of a log, for error messages.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
