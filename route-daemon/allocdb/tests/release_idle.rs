//! The leak sweep's two calls: `attachments_added` (when an ADD last decided
//! each attachment) and `release_idle` (release only what no ADD touched since).

mod common;

use std::time::{Duration, Instant};

use common::*;
use railyard_allocdb::{AllocDb, Change};

#[tokio::test]
async fn only_attachments_no_add_touched_since_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let nics = nics(&["eth0", "eth1"]);
    db.add(&args("old"), &nics, &[]).await.unwrap();
    db.add(&args("young"), &nics, &[]).await.unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let cut = Instant::now();
    // A repeated ADD after the cut makes "young" young again.
    db.add(&args("young"), &nics, &[]).await.unwrap();
    let added = db.attachments_added().await.unwrap();
    assert_eq!(added.len(), 2);
    for (a, at) in &added {
        match a.id.container_id.as_str() {
            "old" => assert!(*at < cut),
            "young" => assert!(*at >= cut),
            other => panic!("{other}"),
        }
    }
    let _ = db.drain_changes();
    let released = db
        .release_idle(&[id("old"), id("young"), id("unknown")], cut)
        .await
        .unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].id, id("old"));
    assert_eq!(released[0].nics.len(), 2);
    // Released as a DEL is: the mirror hears of it, the addresses are free.
    let changes = db.drain_changes();
    assert!(matches!(&changes.events[..], [e] if e.change == Change::Released(id("old"))));
    assert!(db.released_unmirrored(&id("old")));
    assert_eq!(db.stats().attachments, 1);
    // Nothing left to release: an empty call writes nothing.
    assert!(db
        .release_idle(&[id("old")], Instant::now())
        .await
        .unwrap()
        .is_empty());
    // An ADD after the release allocates afresh.
    db.add(&args("old"), &nics, &[]).await.unwrap();
    assert_eq!(db.stats().attachments, 2);
}

#[tokio::test]
async fn after_a_restart_every_attachment_counts_as_added_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_with(dir.path(), two_rails()).await;
        db.add(&args("c1"), &nics(&["eth0", "eth1"]), &[])
            .await
            .unwrap();
    }
    let before_open = Instant::now();
    let db = AllocDb::open(dir.path(), opts()).unwrap();
    let added = db.attachments_added().await.unwrap();
    assert_eq!(added.len(), 1);
    assert!(added[0].1 >= before_open, "the log keeps no times");
    // So a cut before the open releases nothing; one after it does, and the
    // release survives the next restart.
    assert!(db
        .release_idle(&[id("c1")], before_open)
        .await
        .unwrap()
        .is_empty());
    let released = db.release_idle(&[id("c1")], Instant::now()).await.unwrap();
    assert_eq!(released.len(), 1);
    drop(db);
    let db = AllocDb::open(dir.path(), opts()).unwrap();
    assert_eq!(db.stats().attachments, 0);
}
