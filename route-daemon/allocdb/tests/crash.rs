//! Concurrency and crash safety.
//!
//! The crash test re-runs this test binary as a child (`ALLOCDB_CRASH_DIR` set)
//! that allocates and releases as fast as it can and prints each answer only after
//! the call returned; the parent `kill -9`s it at a random moment, reopens the log
//! and checks that every acknowledged operation is there and no address is held
//! twice. The child also compacts often, so kills land inside compactions too.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::*;
use railyard_allocdb::{AllocDb, Options};

const CHILD_ENV: &str = "ALLOCDB_CRASH_DIR";
const TASKS: usize = 16;

fn crash_opts() -> Options {
    Options {
        compact_after: 300,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_get_distinct_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open_with(dir.path(), dual_stack()).await);
    let nics = Arc::new(nics(&["eth0", "eth1"]));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (db, nics) = (db.clone(), nics.clone());
            tokio::spawn(async move { db.add(&args(&format!("c{i}")), &nics, &[]).await })
        })
        .collect();
    let mut all = HashSet::new();
    for t in tasks {
        let got = t.await.unwrap().unwrap();
        assert_eq!(got.len(), 2);
        for a in addrs(&got) {
            assert!(all.insert(a), "{a} handed out twice");
        }
    }
    assert_eq!(all.len(), 200 * 4);
    let wal = db.stats().wal;
    assert!(
        wal.syncs < wal.records,
        "group commit shared fsyncs: {wal:?}"
    );
    assert_eq!(assert_consistent(&db).await.len(), 800);
}

/// The child side: a burst of adds and dels until killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let round: String = std::env::var("ALLOCDB_CRASH_ROUND").unwrap_or_default();
        let db = Arc::new(AllocDb::open(&dir, crash_opts()).unwrap());
        let nics = Arc::new(nics(&["eth0", "eth1"]));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (db, nics, round) = (db.clone(), nics.clone(), round.clone());
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    for i in 0..100_000 {
                        if Instant::now() > deadline {
                            break;
                        }
                        let c = format!("r{round}-t{t}-{i}");
                        let got = db.add(&args(&c), &nics, &[]).await.unwrap();
                        let list: Vec<String> = addrs(&got).iter().map(|a| a.to_string()).collect();
                        say(&format!("A {c} {}\n", list.join(" ")));
                        if i >= 10 {
                            let old = format!("r{round}-t{t}-{}", i - 10);
                            db.del(&id(&old)).await.unwrap();
                            say(&format!("D {old}\n"));
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// One write per line, bypassing the test harness's output capture.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

#[tokio::test]
async fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    drop(
        open_with(
            dir.path(),
            config(&[
                ("eth0", 0, "192.168.0.0/22"),
                ("eth1", 1, "192.168.64.0/22"),
            ]),
        )
        .await,
    );
    // What the children were told, across all rounds: container -> addresses.
    let mut acked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut deleted: HashSet<String> = HashSet::new();
    for round in 0..8 {
        let seed = random();
        let kill_after = 1 + seed % 1500;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("ALLOCDB_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let start = Instant::now();
        while lines.len() < kill_after as usize && start.elapsed() < Duration::from_secs(15) {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
                lines.push(l);
            }
        }
        std::thread::sleep(Duration::from_micros(seed % 3000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        eprintln!(
            "round {round}: killed after {} acknowledged operations (seed {seed})",
            lines.len()
        );
        assert!(!lines.is_empty(), "the child never acknowledged anything");
        for l in &lines {
            let mut parts = l.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("A"), Some(c)) => {
                    acked.insert(c.to_string(), parts.map(String::from).collect());
                }
                (Some("D"), Some(c)) => {
                    deleted.insert(c.to_string());
                }
                _ => {}
            }
        }

        let db = AllocDb::open(dir.path(), crash_opts()).unwrap();
        let held = assert_consistent(&db).await;
        for (c, want) in &acked {
            let state = db.check(&id(c)).await;
            if deleted.contains(c) {
                assert!(
                    state.is_err(),
                    "{c} was released and acknowledged, yet is back"
                );
                continue;
            }
            // The child starts releasing `i` once add `i + 10` returned; that DEL
            // may have reached the log without being acknowledged.
            let release_started = c
                .rsplit_once('-')
                .and_then(|(task, i)| Some(format!("{task}-{}", i.parse::<u64>().ok()? + 10)))
                .is_some_and(|later| acked.contains_key(&later));
            if state.is_err() && release_started {
                continue;
            }
            let got = state.unwrap_or_else(|e| panic!("acknowledged {c} is lost: {e}"));
            let got: Vec<String> = addrs(&got.nics).iter().map(|a| a.to_string()).collect();
            assert_eq!(&got, want, "{c} changed addresses");
        }
        eprintln!(
            "round {round}: {} attachments, {} addresses after recovery",
            db.stats().attachments,
            held.len()
        );
        // Start the next round from an empty host so the blocks never run out.
        db.gc(NET, &[]).await.unwrap();
        acked.clear();
        deleted.clear();
    }
}
