//! Format versions of what railyard stores in etcd, against the committed
//! values of the previous release (`fixtures/format-v1/etcd/`):
//!
//! - this build reads every one of them through the record codec
//!   (`KeyValue::decode_json`), so it can take over from that release;
//! - what it writes back is the same JSON, so that release still reads what
//!   this one writes: this is what lets old and new daemons run side by side
//!   during a rolling upgrade (`tests/tests/upgrade.rs` runs both builds);
//! - a value claiming a newer version is refused naming the key and both
//!   versions, the allocation mirror never overwrites one, and a daemon
//!   meeting an allocation log of a newer version refuses to start without
//!   touching it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_allocdb::{AllocDb, Attachment, Options};
use railyard_core::attach::DeviceClass;
use railyard_core::status::NetworkStatus;
use railyard_core::{HostInventory, HostPlan, NetworkManifest, PlanMeta, Tombstone};
use railyard_route_daemon::ipam::{run_mirror, MirrorConfig};
use railyard_store::{KeyValue, MemStore, Store, StoreError, FORMAT_VERSION};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/format-v1")
}

/// (fixture file, the key it was stored under).
const RECORDS: [(&str, &str); 8] = [
    ("network.json", "/railyard/v1/networks/rails"),
    ("host.json", "/railyard/v1/hosts/fxhost-0"),
    ("plan-meta.json", "/railyard/v1/plans/rails/meta"),
    ("plan-host.json", "/railyard/v1/plans/rails/hosts/fxhost-0"),
    ("status.json", "/railyard/v1/status/rails"),
    (
        "allocation.json",
        "/railyard/v1/allocations/rails/fxhost-0/fxpod-0-0/net1",
    ),
    ("tombstone.json", "/railyard/v1/tombstones/rails"),
    ("deviceclass.json", "/railyard/v1/deviceclasses/mlx-100g"),
];

fn kv(key: &str, value: Vec<u8>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        create_revision: 1,
        mod_revision: 1,
        version: 1,
        lease: None,
    }
}

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("etcd").join(file)).unwrap()
}

/// Decodes fixture `file` as `T` through the codec and encodes it again: the
/// result must be the JSON the previous release wrote, apart from fields in
/// `dropped` (which `T` does not model: the daemon's view of a DeviceClass
/// ignores the controller's `k8sUid`).
fn round_trip<T: DeserializeOwned + Serialize>(file: &str, key: &str, dropped: &[&str]) {
    let bytes = fixture(file);
    let decoded: T = kv(key, bytes.clone())
        .decode_json()
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut old: Value = serde_json::from_slice(&bytes).unwrap();
    for field in dropped {
        old.as_object_mut().unwrap().remove(*field);
    }
    let new = serde_json::to_value(&decoded).unwrap();
    assert_eq!(new, old, "{file}: this build writes another format");
}

#[test]
fn every_record_of_the_previous_release_is_read_and_written_back_alike() {
    round_trip::<NetworkManifest>("network.json", RECORDS[0].1, &[]);
    round_trip::<HostInventory>("host.json", RECORDS[1].1, &[]);
    round_trip::<PlanMeta>("plan-meta.json", RECORDS[2].1, &[]);
    round_trip::<HostPlan>("plan-host.json", RECORDS[3].1, &[]);
    round_trip::<NetworkStatus>("status.json", RECORDS[4].1, &[]);
    round_trip::<Attachment>("allocation.json", RECORDS[5].1, &[]);
    round_trip::<Tombstone>("tombstone.json", RECORDS[6].1, &[]);
    round_trip::<DeviceClass>("deviceclass.json", RECORDS[7].1, &["k8sUid"]);
}

/// `file`'s value with a top-level `formatVersion` set to `version`.
fn with_version(file: &str, version: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(file)).unwrap();
    v.as_object_mut()
        .unwrap()
        .insert("formatVersion".into(), version);
    serde_json::to_vec(&v).unwrap()
}

/// Whether the codec reads `value` under `key` as the type stored there.
fn decode(file: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
    let kv = kv(key, value);
    match file {
        "network.json" => kv.decode_json::<NetworkManifest>().map(drop),
        "host.json" => kv.decode_json::<HostInventory>().map(drop),
        "plan-meta.json" => kv.decode_json::<PlanMeta>().map(drop),
        "plan-host.json" => kv.decode_json::<HostPlan>().map(drop),
        "status.json" => kv.decode_json::<NetworkStatus>().map(drop),
        "allocation.json" => kv.decode_json::<Attachment>().map(drop),
        "tombstone.json" => kv.decode_json::<Tombstone>().map(drop),
        "deviceclass.json" => kv.decode_json::<DeviceClass>().map(drop),
        other => panic!("no type for {other}"),
    }
}

#[test]
fn an_explicit_current_version_is_read_and_a_newer_one_refused() {
    for (file, key) in RECORDS {
        decode(file, key, with_version(file, FORMAT_VERSION.into()))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let newer = FORMAT_VERSION + 1;
        let err = decode(file, key, with_version(file, newer.into())).unwrap_err();
        assert_eq!(
            err,
            StoreError::NewerFormat {
                key: key.into(),
                found: newer,
                supported: FORMAT_VERSION,
            },
            "{file}"
        );
        let text = err.to_string();
        assert!(
            text.contains(key) && text.contains(&format!("format version {newer}")),
            "{text}"
        );
    }
}

#[test]
fn a_version_that_is_not_a_number_is_refused_naming_field_and_value() {
    let (file, key) = RECORDS[3];
    for bad in [
        Value::from("2"),
        Value::from(0),
        Value::from(-3),
        Value::Null,
    ] {
        let err = decode(file, key, with_version(file, bad.clone())).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("formatVersion") && text.contains(&bad.to_string()) && text.contains(key),
            "{bad}: {text}"
        );
    }
}

/// A daemon whose allocation log is of a newer version stops before it
/// starts anything (no etcd, no socket, no root needed to see it), naming
/// the file and the versions, and leaves the log as it was.
#[test]
fn a_daemon_refuses_to_start_on_a_newer_allocation_log() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("allocations");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("allocations.log");
    let mut bytes =
        std::fs::read(fixtures().join("allocations/fxhost-0.log")).expect("log fixture");
    let newer = railyard_allocdb::LOG_FORMAT + 1;
    bytes[6..8].copy_from_slice(format!("{newer:02}").as_bytes());
    std::fs::write(&log, &bytes).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_railyard-route-daemon"))
        .args([
            "--node-name=fxhost-0",
            // Nothing listens there: the daemon must stop before it asks.
            "--etcd-endpoints=http://127.0.0.1:9",
            "--metrics-addr=off",
        ])
        .arg(format!(
            "--ipam-socket={}",
            state.path().join("ipam.sock").display()
        ))
        .arg(format!("--state-dir={}", state.path().display()))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "it ran: {said}");
    assert!(started.elapsed() < Duration::from_secs(20));
    for part in [
        log.display().to_string(),
        format!("format version {newer}"),
        format!("up to {}", railyard_allocdb::LOG_FORMAT),
    ] {
        assert!(said.contains(&part), "{said} lacks {part}");
    }
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "the log was touched");
    assert!(!state.path().join("ipam.sock").exists());
}

/// The allocation key of pod `pod` of the fixtures' host.
fn allocation_key(pod: &str) -> String {
    railyard_core::keys::allocation("rails", "fxhost-0", pod, "net1")
}

/// The previous release's log of `fxhost-0` (two pods), opened by this build,
/// and its mirror into `store` run until its first re-sync is done.
async fn mirror_fixture_log(store: &MemStore) -> (tempfile::TempDir, Arc<AllocDb>) {
    let state = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("allocations/fxhost-0.log"),
        state.path().join("allocations.log"),
    )
    .unwrap();
    let db = Arc::new(AllocDb::open(state.path(), Options::default()).unwrap());
    let (synced_tx, mut synced) = watch::channel(false);
    let (_stop, shutdown) = watch::channel(false);
    let cfg = MirrorConfig {
        host: "fxhost-0".into(),
        interval: Duration::from_millis(20),
    };
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    tokio::spawn(run_mirror(
        dyn_store,
        Arc::clone(&db),
        cfg,
        synced_tx,
        shutdown,
    ));
    tokio::time::timeout(Duration::from_secs(10), synced.wait_for(|s| *s))
        .await
        .expect("the mirror re-synced")
        .unwrap();
    // Written after the re-sync, in the mirror's next batch.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (state, db)
}

/// The value under `key`, as text so a failure shows it.
async fn stored(store: &MemStore, key: &str) -> Option<String> {
    let kv = store.get(key).await.unwrap()?;
    Some(String::from_utf8(kv.value).unwrap())
}

fn text(bytes: Vec<u8>) -> Option<String> {
    Some(String::from_utf8(bytes).unwrap())
}

/// This build mirrors the previous release's log into exactly the records
/// that release mirrored from it: an old daemon elsewhere, `railyard get` of
/// either build and the planner read them as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_release_s_log_is_mirrored_into_the_same_records() {
    let store = MemStore::new();
    let _db = mirror_fixture_log(&store).await;
    assert_eq!(
        stored(&store, &allocation_key("fxpod-0-0")).await,
        text(fixture("allocation.json"))
    );
    assert!(stored(&store, &allocation_key("fxpod-0-1")).await.is_some());
}

/// A record of a newer format is never overwritten or deleted by the mirror,
/// whether the log holds that attachment or has no account of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_leaves_records_of_a_newer_format_alone() {
    let store = MemStore::new();
    let newer = FORMAT_VERSION + 1;
    let held = with_version("allocation.json", newer.into());
    let mut unknown: Value = serde_json::from_slice(&held).unwrap();
    unknown["id"]["containerId"] = "fxpod-0-9".into();
    let unknown = serde_json::to_vec(&unknown).unwrap();
    store
        .put(&allocation_key("fxpod-0-0"), held.clone(), None)
        .await
        .unwrap();
    store
        .put(&allocation_key("fxpod-0-9"), unknown.clone(), None)
        .await
        .unwrap();
    let (_state, db) = mirror_fixture_log(&store).await;
    assert_eq!(
        stored(&store, &allocation_key("fxpod-0-0")).await,
        text(held)
    );
    assert_eq!(
        stored(&store, &allocation_key("fxpod-0-9")).await,
        text(unknown)
    );
    // Not adopted either: the log holds just its own two pods.
    assert_eq!(db.stats().attachments, 2);
    // The pod the newer record does not cover is mirrored as usual.
    assert!(stored(&store, &allocation_key("fxpod-0-1")).await.is_some());
}
