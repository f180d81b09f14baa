//! Container IDs as runtimes send them: long ones work end to end (nothing here
//! puts them in a file name), absurd ones are refused at ADD naming the field,
//! and a DEL of an ID that ADD would refuse succeeds, so a runtime never retries
//! a DEL forever.

mod common;

use common::*;
use railyard_allocdb::{AllocDb, DbError, Options};

#[tokio::test]
async fn a_300_character_container_id_adds_survives_a_restart_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let long = "c".repeat(300);
    let nics = nics(&["eth0", "eth1"]);
    let got = {
        let db = open_with(dir.path(), two_rails()).await;
        db.add(&args(&long), &nics, &[]).await.unwrap()
    };
    let db = AllocDb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.add(&args(&long), &nics, &[]).await.unwrap(), got);
    db.del(&id(&long)).await.unwrap();
    assert_eq!(db.stats().attachments, 0);
}

#[tokio::test]
async fn an_unusable_container_id_is_refused_at_add_and_its_del_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with(dir.path(), two_rails()).await;
    let nics = nics(&["eth0", "eth1"]);
    for bad in ["x".repeat(5000), "a/b".to_string()] {
        let e = db.add(&args(&bad), &nics, &[]).await.unwrap_err();
        assert!(matches!(e, DbError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("containerId"), "{e}");
        db.del(&id(&bad)).await.expect("DEL of an ID ADD refuses");
    }
    assert_eq!(db.stats().attachments, 0);
}
