//! What survives a restart: the log, a torn tail, compaction, delayed reuse.

mod common;

use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::Path;

use common::*;
use railyard_allocdb::{AllocDb, DbError, Options};

const LOG: &str = "allocations.log";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn log_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(LOG)).unwrap().len()
}

fn reopen(dir: &Path) -> AllocDb {
    AllocDb::open(dir, Options::default()).unwrap()
}

#[tokio::test]
async fn a_restart_keeps_every_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), dual_stack()).await;
    let nics = nics(&["eth0", "eth1"]);
    let mut before = Vec::new();
    for i in 0..10 {
        before.push(db.add(&args(&format!("c{i}")), &nics, &[]).await.unwrap());
    }
    db.del(&id("c4")).await.unwrap();
    drop(db);
    let db = reopen(dir.path());
    assert_eq!(db.stats().attachments, 9);
    for (i, got) in before.iter().enumerate().filter(|(i, _)| *i != 4) {
        // Idempotency holds across the restart.
        assert_eq!(
            &db.add(&args(&format!("c{i}")), &nics, &[]).await.unwrap(),
            got
        );
    }
    assert_consistent(&db).await;
    // The network config came back from the log: a new pod can start before the
    // daemon hears from etcd.
    db.add(&args("after"), &nics, &[]).await.unwrap();
}

#[tokio::test]
async fn delayed_reuse_survives_restarts_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    // Usable: .2 to .6
    let db = open_with(dir.path(), config(&[("eth0", 0, "192.168.1.0/29")])).await;
    let nics = nics(&["eth0"]);
    assert_eq!(
        addrs(&db.add(&args("a"), &nics, &[]).await.unwrap()),
        [ip("192.168.1.2")]
    );
    assert_eq!(
        addrs(&db.add(&args("b"), &nics, &[]).await.unwrap()),
        [ip("192.168.1.3")]
    );
    db.del(&id("a")).await.unwrap();
    db.del(&id("b")).await.unwrap();
    drop(db);

    let db = reopen(dir.path());
    assert_eq!(
        addrs(&db.add(&args("c"), &nics, &[]).await.unwrap()),
        [ip("192.168.1.4")]
    );
    db.del(&id("c")).await.unwrap();
    db.compact().await.unwrap();
    drop(db);

    let db = reopen(dir.path());
    assert_eq!(db.stats().wal.compactions, 0);
    assert_eq!(
        addrs(&db.add(&args("d"), &nics, &[]).await.unwrap()),
        [ip("192.168.1.5")]
    );
    assert_eq!(
        addrs(&db.add(&args("e"), &nics, &[]).await.unwrap()),
        [ip("192.168.1.6")]
    );
    // Only now does the cursor wrap to the oldest released address.
    assert_eq!(
        addrs(&db.add(&args("f"), &nics, &[]).await.unwrap()),
        [ip("192.168.1.2")]
    );
}

/// Three adds, then the log cut at `cut` bytes from its end.
async fn torn_log(cut: u64) -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let nics = nics(&["eth0", "eth1"]);
    db.add(&args("c0"), &nics, &[]).await.unwrap();
    db.add(&args("c1"), &nics, &[]).await.unwrap();
    let good = log_len(dir.path());
    db.add(&args("c2"), &nics, &[]).await.unwrap();
    drop(db);
    let len = log_len(dir.path());
    let f = OpenOptions::new()
        .write(true)
        .open(dir.path().join(LOG))
        .unwrap();
    f.set_len(len - cut).unwrap();
    (dir, good)
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_log_goes_on() {
    let (dir, good) = torn_log(0).await;
    let record = log_len(dir.path()) - good;
    // Every cut inside the last record, from one byte to all but one.
    for cut in (1..record).step_by(7).chain([record - 1]) {
        let (dir, good) = torn_log(cut).await;
        let db = reopen(dir.path());
        assert_eq!(
            log_len(dir.path()),
            good,
            "cut {cut}: the torn record is truncated"
        );
        assert_eq!(db.stats().attachments, 2, "cut {cut}");
        assert!(db.check(&id("c2")).await.is_err());
        // c2 never got an answer, so its addresses are free again, and the log
        // takes new records after the cut.
        let nics = nics(&["eth0", "eth1"]);
        db.add(&args("c3"), &nics, &[]).await.unwrap();
        drop(db);
        let db = reopen(dir.path());
        assert_eq!(db.stats().attachments, 3);
        assert_consistent(&db).await;
    }
}

#[tokio::test]
async fn a_flipped_bit_in_the_last_record_drops_only_that_record() {
    let (dir, good) = torn_log(0).await;
    let path = dir.path().join(LOG);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = good as usize + 20;
    bytes[i] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let db = reopen(dir.path());
    assert_eq!(db.stats().attachments, 2);
    assert_eq!(log_len(dir.path()), good);
}

#[tokio::test]
async fn a_foreign_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    std::fs::write(&path, b"this is not an allocation log").unwrap();
    let e = AllocDb::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(e, DbError::Corrupt { offset: 0, .. }), "{e}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"this is not an allocation log"
    );
}

#[tokio::test]
async fn a_crash_while_creating_the_log_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LOG), b"RYA").unwrap();
    std::fs::write(dir.path().join("allocations.log.tmp"), b"half a snapshot").unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    db.add(&args("c"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    assert!(!dir.path().join("allocations.log.tmp").exists());
    drop(db);
    assert_eq!(reopen(dir.path()).stats().attachments, 1);
}

#[tokio::test]
async fn compaction_bounds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        compact_after: 50,
        ..Options::default()
    };
    let db = AllocDb::open(dir.path(), opts.clone()).unwrap();
    db.set_network(two_rails()).await.unwrap();
    let nics = nics(&["eth0", "eth1"]);
    for i in 0..20 {
        db.add(&args(&format!("keep{i}")), &nics, &[])
            .await
            .unwrap();
    }
    let mut largest = 0;
    for i in 0..300 {
        db.add(&args(&format!("t{i}")), &nics, &[]).await.unwrap();
        db.del(&id(&format!("t{i}"))).await.unwrap();
        largest = largest.max(log_len(dir.path()));
    }
    let stats = db.stats();
    assert!(stats.wal.compactions >= 10, "{:?}", stats.wal);
    // At most about 50 records after a snapshot of 20 attachments, far below the
    // ~600 records written.
    assert!(largest < 80 * 700, "log grew to {largest} bytes");
    let before = assert_consistent(&db).await;
    drop(db);
    let db = AllocDb::open(dir.path(), opts).unwrap();
    assert_eq!(assert_consistent(&db).await, before);
    assert_eq!(db.stats().attachments, 20);
}

#[tokio::test]
async fn one_process_per_log() {
    let dir = tempfile::tempdir().unwrap();
    let _db = reopen(dir.path());
    let e = AllocDb::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(e, DbError::Locked { .. }), "{e}");
}
