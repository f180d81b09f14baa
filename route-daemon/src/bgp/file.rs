//! The real [`BirdControl`]: the configuration file a BIRD runs from, and its
//! control socket.
//!
//! A new text is first written beside the file and parsed with `bird -p`;
//! only a text that parses replaces the file (by rename, so BIRD never reads
//! half of one), and then `birdc configure` makes BIRD read it. BIRD itself
//! also refuses a file that does not parse and keeps running the old one,
//! but checking first keeps the file equal to what BIRD runs, so "the file
//! holds this text" can mean "BIRD runs it".

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::process::Command;

use super::port::{heartbeat_path, Applied, BirdControl, BirdError};

/// Debian's paths (`bird2`).
pub const BIRD: &str = "/usr/sbin/bird";
pub const BIRDC: &str = "/usr/sbin/birdc";

#[derive(Debug)]
pub struct BirdFile {
    config: PathBuf,
    socket: PathBuf,
    bird: PathBuf,
    birdc: PathBuf,
    /// True until a reload went through: a fresh port, or one whose last
    /// reload did not reach BIRD, reloads even when the file already holds
    /// the text.
    pending: AtomicBool,
}

impl BirdFile {
    /// The BIRD started with `-c config -s socket`.
    pub fn new(config: impl Into<PathBuf>, socket: impl Into<PathBuf>) -> Self {
        BirdFile {
            config: config.into(),
            socket: socket.into(),
            bird: BIRD.into(),
            birdc: BIRDC.into(),
            pending: AtomicBool::new(true),
        }
    }

    async fn birdc(&self, args: &[&str]) -> Result<String, BirdError> {
        let out = Command::new(&self.birdc)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .await
            .map_err(|e| BirdError::Unreachable(format!("{}: {e}", self.birdc.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || stdout.contains("Unable to connect") {
            let why = format!(
                "{}{}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Err(BirdError::Unreachable(why));
        }
        Ok(stdout)
    }

    /// `bird -p`: parses `path` without a running BIRD. BIRD's reason is on
    /// stderr (`... line 3:1 syntax error`).
    async fn parses(&self, path: &PathBuf) -> Result<(), BirdError> {
        let out = Command::new(&self.bird)
            .args(["-p", "-c"])
            .arg(path)
            .output()
            .await
            .map_err(|e| BirdError::Io(format!("{}: {e}", self.bird.display())))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(BirdError::Refused(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }
}

#[async_trait]
impl BirdControl for BirdFile {
    async fn apply(&self, text: &str) -> Result<Applied, BirdError> {
        let current = match tokio::fs::read_to_string(&self.config).await {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(BirdError::Io(format!("{}: {e}", self.config.display()))),
        };
        let same = current.as_deref() == Some(text);
        if same && !self.pending.load(Ordering::SeqCst) {
            return Ok(Applied::Unchanged);
        }
        if !same {
            let mut tmp = self.config.clone().into_os_string();
            tmp.push(".railyard-new");
            let tmp = PathBuf::from(tmp);
            let io = |e: std::io::Error| BirdError::Io(format!("{}: {e}", tmp.display()));
            tokio::fs::write(&tmp, text).await.map_err(io)?;
            if let Err(e) = self.parses(&tmp).await {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
            tokio::fs::rename(&tmp, &self.config).await.map_err(io)?;
        }
        self.pending.store(true, Ordering::SeqCst);
        let out = self.birdc(&["configure"]).await?;
        // "Reconfigured", or "Reconfiguration in progress" while the
        // protocols whose configuration changed shut down.
        if out.contains("Reconfigured") || out.contains("Reconfiguration in progress") {
            self.pending.store(false, Ordering::SeqCst);
            Ok(Applied::Reloaded)
        } else {
            Err(BirdError::Refused(out.trim().to_owned()))
        }
    }

    async fn protocols(&self) -> Result<Vec<String>, BirdError> {
        let out = self.birdc(&["show", "protocols"]).await?;
        let mut names: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("ry_"))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Rewrites `<config>.alive`; its modification time is the beat (the
    /// text, seconds since the epoch, is for people reading the directory).
    async fn beat(&self) -> Result<(), BirdError> {
        let path = heartbeat_path(&self.config);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        tokio::fs::write(&path, format!("{now}\n"))
            .await
            .map_err(|e| BirdError::Io(format!("{}: {e}", path.display())))
    }

    async fn last_beat(&self) -> Result<Option<SystemTime>, BirdError> {
        let path = heartbeat_path(&self.config);
        match tokio::fs::metadata(&path).await.and_then(|m| m.modified()) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BirdError::Io(format!("{}: {e}", path.display()))),
        }
    }
}
