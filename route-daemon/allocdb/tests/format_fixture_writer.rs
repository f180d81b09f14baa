//! Writes the allocation-log fixtures of `fixtures/format-v1/allocations/`
//! (`api-records.log`, `api-compacted.log`). It uses only the API the release
//! that wrote them had, because it is meant to run there, never against a build
//! whose format the fixtures are meant to pin (that would test nothing): copy
//! it into a checkout of that release and run it as
//! `fixtures/format-v1/README.md` shows. `tests/format.rs` reads what it wrote.

mod common;

use std::path::PathBuf;

use common::*;

const LOG: &str = "allocations.log";

/// Writes the API fixtures into `$RAILYARD_FIXTURE_OUT`: every record kind
/// (network, add, a DEL's release, a GC's release) in one log, and the same
/// history compacted into a snapshot (cursors, the released-not-mirrored set)
/// followed by more records. Run it against the build whose format the
/// fixtures pin, never against this one (see the module doc).
#[tokio::test]
#[ignore = "writes fixtures; run it in a checkout of the release they pin"]
async fn write_fixture_logs() {
    let out = PathBuf::from(std::env::var("RAILYARD_FIXTURE_OUT").expect("RAILYARD_FIXTURE_OUT"));
    for compacted in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = open_with(dir.path(), dual_stack()).await;
        let nics = nics(&["eth0", "eth1"]);
        for c in ["a", "b", "c", "d", "e"] {
            db.add(&args(c), &nics, &[]).await.unwrap();
        }
        db.del(&id("b")).await.unwrap();
        db.gc(NET, &[id("a"), id("c"), id("e")]).await.unwrap();
        if compacted {
            db.compact().await.unwrap();
            db.add(&args("f"), &nics, &[]).await.unwrap();
            db.del(&id("c")).await.unwrap();
        }
        drop(db);
        let name = if compacted {
            "api-compacted.log"
        } else {
            "api-records.log"
        };
        std::fs::copy(dir.path().join(LOG), out.join(name)).unwrap();
    }
}
