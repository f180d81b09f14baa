//! The delegates' `VERSION` answers, remembered across invocations.
//!
//! Negotiating with a delegate costs a process (a Go plugin's start-up is
//! most of it) on every ADD, DEL and CHECK, for an answer that changes only
//! when the binary does. So the answer is kept in the state directory, one
//! small file per binary, together with the binary's identity as `stat`
//! gives it (device, inode, size, modification and change times). Any
//! difference, such as an upgraded plugin, a replaced file or a moved link
//! target, makes it a miss and the delegate is asked again. The cache is an
//! optimisation only: a file that cannot be read or written is a miss and
//! never fails the call.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory of remembered answers: `<stateDir>/.versions` (a name no
/// attachment record can have, and without `.json`, so GC's listing skips it).
#[derive(Debug, Clone)]
pub struct VersionCache {
    dir: PathBuf,
}

/// What one file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    binary: PathBuf,
    identity: Identity,
    supported_versions: Vec<String>,
}

/// The binary as `stat` (through links) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Identity {
    fn of(binary: &Path) -> Option<Identity> {
        let m = fs::metadata(binary).ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

impl VersionCache {
    pub fn new(state_dir: &Path) -> VersionCache {
        VersionCache {
            dir: state_dir.join(".versions"),
        }
    }

    /// The remembered answer of `binary`, if it is still the same file.
    pub fn load(&self, binary: &Path) -> Option<Vec<String>> {
        let bytes = fs::read(self.file(binary)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.binary == binary && Some(entry.identity) == Identity::of(binary))
            .then_some(entry.supported_versions)
    }

    /// Remembers `supported` for `binary` as it is now. Written to a
    /// temporary file and renamed, so a concurrent reader sees the old
    /// answer or the new one, never half of one.
    pub fn store(&self, binary: &Path, supported: &[String]) {
        let Some(identity) = Identity::of(binary) else {
            return;
        };
        let entry = Entry {
            binary: binary.to_owned(),
            identity,
            supported_versions: supported.to_vec(),
        };
        let file = self.file(binary);
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        // 0700 like the state directory it may create: records of
        // attachments live there.
        let written = DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .and_then(|()| fs::write(&tmp, serde_json::to_vec(&entry).unwrap_or_default()))
            .and_then(|()| fs::rename(&tmp, &file));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }

    fn file(&self, binary: &Path) -> PathBuf {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hash = fnv1a_64(binary.as_os_str().as_encoded_bytes());
        self.dir.join(format!("{name}-{hash:016x}"))
    }
}

/// FNV-1a, 64 bits: two binaries of one name in different directories get
/// different files; a collision would only cost a miss (the path is checked).
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> Vec<String> {
        vec!["0.4.0".into(), "1.0.0".into()]
    }

    #[test]
    fn an_answer_is_kept_until_the_binary_changes() {
        let state = tempfile::tempdir().unwrap();
        let bin = state.path().join("ptp");
        fs::write(&bin, b"v1").unwrap();
        let cache = VersionCache::new(state.path());
        assert_eq!(cache.load(&bin), None);
        cache.store(&bin, &versions());
        assert_eq!(cache.load(&bin), Some(versions()));

        // An upgrade: a new file renamed over the old one (a new inode).
        let new = state.path().join("ptp.new");
        fs::write(&new, b"v2, longer").unwrap();
        fs::rename(&new, &bin).unwrap();
        assert_eq!(cache.load(&bin), None);
    }

    #[test]
    fn a_rewritten_binary_of_the_same_size_is_a_miss() {
        let state = tempfile::tempdir().unwrap();
        let bin = state.path().join("ptp");
        fs::write(&bin, b"v1").unwrap();
        let cache = VersionCache::new(state.path());
        cache.store(&bin, &versions());
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&bin, b"v2").unwrap();
        assert_eq!(cache.load(&bin), None);
    }

    #[test]
    fn unreadable_or_foreign_files_are_misses_not_errors() {
        let state = tempfile::tempdir().unwrap();
        let (a, b) = (state.path().join("a/ptp"), state.path().join("b/ptp"));
        for bin in [&a, &b] {
            fs::create_dir_all(bin.parent().unwrap()).unwrap();
            fs::write(bin, b"x").unwrap();
        }
        let cache = VersionCache::new(state.path());
        cache.store(&a, &versions());
        assert_eq!(cache.load(&b), None, "same name, other directory");
        fs::write(cache.file(&a), b"{not json").unwrap();
        assert_eq!(cache.load(&a), None);
        assert_eq!(cache.load(&state.path().join("missing")), None);
    }
}
