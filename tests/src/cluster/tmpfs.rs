//! A daemon state dir on a small tmpfs (`ClusterSpec::state_tmpfs_kib`), so a
//! test can fill the disk under the allocation log. Mounted from the root
//! namespace before the daemon first starts (`ip netns exec` copies the mount
//! table, so the daemon sees it), recorded in the state file first, and
//! unmounted by `down` before the dir is removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cmd;
use super::process::private_dir;
use super::Cluster;
use crate::error::{Error, Result};

impl Cluster {
    /// Mounts host `i`'s tmpfs if the spec asks for one and it is not mounted.
    pub(super) fn mount_state_tmpfs(&mut self, i: usize) -> Result<()> {
        let Some(&kib) = self.spec().state_tmpfs_kib.get(&i) else {
            return Ok(());
        };
        let dir = self.spec().daemon_state(i);
        if is_mount_point(&dir) {
            return Ok(());
        }
        private_dir(&dir).map_err(|e| Error::io("create the daemon state dir", &dir, e))?;
        if !self.state.mounts.contains(&dir) {
            self.state.mounts.push(dir.clone());
        }
        self.state.save()?;
        cmd::run(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={kib}k,mode=0700"),
                    "tmpfs",
                ])
                .arg(&dir),
            None,
        )
        .map(|_| ())
    }

    /// Unmounts what `mount_state_tmpfs` mounted; the problems, if any.
    pub(super) fn unmount_all(&mut self, problems: &mut Vec<String>) {
        let mut left = Vec::new();
        for dir in std::mem::take(&mut self.state.mounts) {
            if !is_mount_point(&dir) {
                continue;
            }
            if let Err(e) = cmd::run(Command::new("umount").arg(&dir), None) {
                problems.push(e.to_string());
                left.push(dir);
            }
        }
        self.state.mounts = left;
    }
}

/// Whether `dir` is a mount point of this process's mount namespace.
pub fn is_mount_point(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    mount_points().contains(&dir)
}

/// Mount points from `/proc/self/mountinfo` (field 5; octal escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut k = 0;
    while k < b.len() {
        let octal = b
            .get(k + 1..k + 4)
            .filter(|d| b[k] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                k += 4;
            }
            None => {
                out.push(b[k]);
                k += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
