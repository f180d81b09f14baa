//! One railyard-cni invocation at a time per attachment.
//!
//! Runtimes are told not to run ADD and DEL of one container concurrently,
//! but they time out and retry, so they do. Without a lock a DEL can read
//! the state before ADD wrote it, release the allocation and leave ADD to
//! create interfaces with addresses the daemon hands out again. So every
//! ADD, DEL, CHECK (and GC, per attachment) holds an exclusive `flock` on
//! `<stateDir>/<attachment>.lock` from before it reads the state until it
//! has finished with the delegates and IPAM: the daemon's record and the
//! pod's interfaces then change together. This is how host-local
//! serializes its allocations.
//!
//! Why `flock`: the kernel drops it when the process dies, so a plugin
//! killed by a runtime's timeout never leaves the attachment locked. The
//! file is opened close-on-exec (Rust's default), so a hung delegate does
//! not inherit, and keep, the lock.
//!
//! Lock files are removed once their attachment has no state, so they do
//! not pile up one per container ever run. Removing a lock file others may
//! be waiting on is safe because a waiter that gets the lock checks that
//! the file it locked is still the one at the path, and starts over if not
//! (otherwise two processes could each hold a lock on a different file).

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::Error;

/// A held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct AttachmentLock {
    file: Flock<File>,
    path: PathBuf,
}

impl AttachmentLock {
    /// Blocks until this process holds the lock at `path`. No timeout of
    /// its own: the holder is bounded by the daemon's and the delegates'
    /// timeouts, and the runtime's timeout kills a waiter like any plugin.
    pub fn acquire(path: &Path) -> Result<AttachmentLock, Error> {
        let io = |context: &str, source| Error::Io {
            context: format!("{context} {}", path.display()),
            source,
        };
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| io("opening the lock file", e))?;
            let file = match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(locked) => locked,
                Err((_, Errno::EINTR)) => continue,
                Err((_, errno)) => return Err(io("locking", errno.into())),
            };
            let held = file.metadata().map_err(|e| io("inspecting", e))?;
            match fs::metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(AttachmentLock {
                        file,
                        path: path.to_owned(),
                    })
                }
                // Removed (or replaced) by the previous holder: lock the new one.
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("inspecting", e)),
            }
        }
    }

    /// Releases the lock and removes its file, for an attachment that no
    /// longer exists. Removing first, while still holding the lock, is what
    /// makes it safe (see the module doc). A failure only leaves an empty
    /// file behind, so it is logged, not returned.
    pub fn release_and_remove(self) {
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != ErrorKind::NotFound {
                eprintln!(
                    "railyard-cni: cannot remove lock file {}: {e}",
                    self.path.display()
                );
            }
        }
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn holders_exclude_each_other_and_removal_does_not_split_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("c1@net1.lock"));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (path, inside) = (Arc::clone(&path), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let lock = AttachmentLock::acquire(&path).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        std::thread::sleep(Duration::from_micros(200));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        // Half the holders remove the file as a finished DEL does.
                        if i % 2 == 0 {
                            lock.release_and_remove();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_missing_directory_names_the_lock_file() {
        let err = AttachmentLock::acquire(Path::new("/nonexistent/dir/c1@net1.lock")).unwrap_err();
        assert_eq!(err.code(), crate::error::codes::IO_FAILURE);
        assert!(
            err.to_string().contains("/nonexistent/dir/c1@net1.lock"),
            "{err}"
        );
    }
}
