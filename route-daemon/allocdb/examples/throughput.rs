//! Durable allocations per second with 1, 8 and 64 concurrent callers.
//!
//! `cargo run --release -p railyard-allocdb --example throughput -- [DIR] [SECONDS] [SYNC_THREADS]`
//!
//! Each caller loops on ADD of a new attachment (two NICs, one address each, on
//! one of eight networks so the blocks last) and
//! counts the ADDs that returned, i.e. that are fsynced. A fresh log per run, in a
//! temporary directory under DIR (default /tmp), so the disk under test is DIR's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_allocdb::{AddArgs, AllocDb, NetworkConfig, Options};
use railyard_core::ipam::AttachmentId;
use railyard_core::{Block, Interface, Nic, Strategy};

/// Networks the callers spread over: a block tracks at most 65,536 addresses,
/// fewer than a fast disk hands out in a run.
const NETWORKS: usize = 8;

/// Network `n`: two rails, a /16 block per NIC (10.n.0.0/16 and 10.(n+100).0.0/16).
fn config(n: usize) -> NetworkConfig {
    let rail = |r: usize| Interface {
        index: r as u32,
        net_address: format!("192.168.{r}.0/24").parse().expect("literal"),
        cidrs: vec![format!("10.{}.0.0/16", n + 100 * r)
            .parse()
            .expect("literal")],
    };
    let block = |r: usize| Block {
        interface: r as u32,
        nic: format!("eth{r}").parse().expect("valid name"),
        nic_address: format!("192.168.{r}.1").parse().expect("literal"),
        cidr: format!("10.{}.0.0/16", n + 100 * r)
            .parse()
            .expect("literal"),
    };
    NetworkConfig {
        routes: Vec::new(),
        pools: Vec::new(),
        gateway: Default::default(),
        name: format!("bench{n}"),
        strategy: Strategy::None,
        policy_target: String::new(),
        excludes: vec![],
        interfaces: vec![rail(0), rail(1)],
        blocks: vec![block(0), block(1)],
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/tmp".into()));
    let secs: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let opts = Options {
        sync_threads: args
            .next()
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(Options::default().sync_threads),
        ..Options::default()
    };
    let nics: Arc<Vec<Nic>> = Arc::new(
        (0..2)
            .map(|k| Nic {
                name: format!("eth{k}"),
                // The blocks' nicAddress: a NIC without it is refused.
                addresses: vec![format!("192.168.{k}.1/24").parse().expect("literal")],
                up: true,
                ..Nic::default()
            })
            .collect(),
    );
    println!(
        "dir {} ({secs} s per run, {} sync threads)",
        base.display(),
        opts.sync_threads
    );
    println!("callers  adds/s   records/fsync  mean fsync");
    for callers in [1usize, 8, 64] {
        let dir = tempfile::tempdir_in(&base)?;
        let db = Arc::new(AllocDb::open(dir.path(), opts.clone())?);
        for n in 0..NETWORKS {
            db.set_network(config(n)).await?;
        }
        let before = db.stats().wal;
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|c| {
                let (db, nics, done, stop) = (db.clone(), nics.clone(), done.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let args = AddArgs::new(AttachmentId {
                            network: format!("bench{}", c % NETWORKS),
                            container_id: format!("c{c}-{i}"),
                            ifname: "net1".into(),
                        });
                        db.add(&args, &nics, &[]).await?;
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Ok::<_, railyard_allocdb::DbError>(())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await??;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let wal = db.stats().wal;
        let (records, syncs) = (
            wal.records - before.records,
            (wal.syncs - before.syncs).max(1),
        );
        println!(
            "{callers:>7}  {:>7.0}  {:>13.1}  {:>7.2} ms",
            done.load(Ordering::Relaxed) as f64 / elapsed,
            records as f64 / syncs as f64,
            (wal.sync_micros - before.sync_micros) as f64 / syncs as f64 / 1000.0,
        );
    }
    Ok(())
}
