//! needs root: the log lives on a small tmpfs that the test fills up.
//!
//! A full disk must not need a person to restart the daemon: while the log
//! cannot be written, ADD and STATUS fail with `LogUnwritable` (which the IPAM
//! server answers with "try again later", 11, and "not ready", 50); a DEL is accepted and its release queued; once space is free the log is
//! reopened by itself, the queued release is made durable, and ADDs work again,
//! with nothing handed out twice, across a restart too.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use railyard_allocdb::{AllocDb, DbError, Options, RETRY_EVERY};

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root to mount a small tmpfs and fill it (run as root, e.g. `sudo -E cargo test -p railyard-allocdb`)"
        );
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount tmpfs on {}", dir.path().display());
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = [0u8; 1024];
        loop {
            if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
                break;
            }
        }
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_adds_queues_dels_and_recovers_by_itself() {
    let fs = SmallFs::mount("256k");
    let dir = fs.path().join("allocations");
    let db = open_with(&dir, two_rails()).await;
    let nics = nics(&["eth0", "eth1"]);
    let kept = db.add(&args("kept"), &nics, &[]).await.unwrap();
    db.add(&args("leaving"), &nics, &[]).await.unwrap();

    let filler = fs.fill();
    // The log's last page may still take a record or two; then ADDs fail.
    let mut refused = None;
    for k in 0..200 {
        match db.add(&args(&format!("full-{k}")), &nics, &[]).await {
            Ok(_) => continue,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("an ADD on a full disk was refused");
    assert!(matches!(e, DbError::LogUnwritable(_)), "{e}");
    assert!(e.to_string().contains("cannot be written"), "{e}");
    // The IPAM server answers STATUS 50 (not ready) for this error.
    match db.status(NET) {
        Err(DbError::LogUnwritable(_)) => {}
        r => panic!("STATUS on a full disk answered {r:?}"),
    }
    // Still full after a retry period: still refused, not stuck in a worse way.
    tokio::time::sleep(RETRY_EVERY + Duration::from_millis(100)).await;
    let e = db.add(&args("still-full"), &nics, &[]).await.unwrap_err();
    assert!(matches!(e, DbError::LogUnwritable(_)), "{e}");
    // DEL is accepted: the release is queued, the addresses stay held.
    db.del(&id("leaving")).await.unwrap();
    db.del(&id("never-added")).await.unwrap();

    std::fs::remove_file(&filler).unwrap();
    let start = Instant::now();
    while !db.retry() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the log never became writable again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.status(NET)
        .expect("STATUS ready once the log is writable");
    let after = db.add(&args("after"), &nics, &[]).await.unwrap();
    assert_eq!(
        db.add(&args("kept"), &nics, &[]).await.unwrap(),
        kept,
        "what was acknowledged before the disk filled is kept"
    );
    let ids: Vec<String> = db
        .attachments(None)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id.container_id.clone())
        .collect();
    assert!(!ids.contains(&"leaving".to_string()), "queued DEL applied");
    let held = assert_consistent(&db).await;
    drop(db);

    // The queued release and everything after the recovery are on disk.
    let db = AllocDb::open(&dir, Options::default()).unwrap();
    assert_eq!(assert_consistent(&db).await, held);
    let again = db.add(&args("after"), &nics, &[]).await.unwrap();
    assert_eq!(again, after);
    assert!(db
        .attachments(None)
        .await
        .unwrap()
        .iter()
        .all(|a| a.id.container_id != "leaving"));
}
