//! The public engine: a mutex around the state for the decisions, the group-commit
//! writer outside it for the IO.
//!
//! Each mutating call decides under the lock and queues its log record before
//! letting go, so the log's order is the order decisions were made in (replay
//! then reaches the same state). It then waits, without the lock, until the
//! writer reports its record durable; only then does the caller get an answer.
//! A crash before that point loses a decision nobody was told about.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use nix::fcntl::{Flock, FlockArg};
use railyard_core::attach::DeviceClass;
use railyard_core::ipam::{AttachmentId, NicAllocation, Request, Response};
use railyard_core::Nic;
use tokio::sync::watch;

use crate::error::{DbError, Result};
use crate::frame::Record;
use crate::model::{AddArgs, Attachment, Change, ChangeEvent, Changes, NetworkConfig, Stats};
use crate::recover::recover;
use crate::state::Core;
use crate::writer::{open_append, remove_stale_tmp, Cmd, Counters, Durable, Writer, LOG_FILE};

#[derive(Debug, Clone)]
pub struct Options {
    /// Compact after this many records since the last snapshot, and never before as
    /// many records as there are live attachments, so the cost of writing a
    /// snapshot stays proportional to the records it saves replaying.
    pub compact_after: u64,
    /// How many undrained changes to keep before the feed overflows.
    pub change_capacity: usize,
    /// fsyncs in flight at once (see the writer's doc); at least 1. Idle sync
    /// threads only sleep, so a few cost nothing.
    pub sync_threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compact_after: 100_000,
            change_capacity: 100_000,
            sync_threads: 4,
        }
    }
}

/// This host's durable allocations. Share it as `Arc<AllocDb>`; every method takes
/// `&self`. Dropping it flushes what is queued and stops the writer.
pub struct AllocDb {
    dir: PathBuf,
    opts: Options,
    inner: Mutex<Inner>,
    durable: watch::Receiver<Durable>,
    counters: Arc<Counters>,
    writer: Option<JoinHandle<()>>,
    _lock: Flock<File>,
}

#[derive(Debug)]
struct Inner {
    core: Core,
    next_lsn: u64,
    since_snapshot: u64,
    changes: VecDeque<ChangeEvent>,
    overflowed: bool,
    tx: Option<mpsc::Sender<Cmd>>,
}

impl fmt::Debug for AllocDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllocDb").field("dir", &self.dir).finish()
    }
}

impl AllocDb {
    /// Opens (or creates) the log in `dir`, replays it and starts the writer.
    /// Blocking IO: call it before serving, or from `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| DbError::io(&dir, e))?;
        let lock = lock_dir(&dir)?;
        remove_stale_tmp(&dir).map_err(|e| DbError::io(&dir, e))?;
        let path = dir.join(LOG_FILE);
        let rec = recover(&dir, &path)?;
        let file = open_append(&path).map_err(|e| DbError::io(&path, e))?;
        let (tx, rx) = mpsc::channel();
        let (dtx, drx) = watch::channel(Durable {
            lsn: rec.last_lsn,
            failed: None,
        });
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(dir.clone(), file, rx, dtx, counters.clone(), rec.last_lsn);
        let syncers = opts.sync_threads;
        let handle = std::thread::Builder::new()
            .name("allocdb-log".into())
            .spawn(move || writer.run(syncers))
            .map_err(|e| DbError::io(&dir, e))?;
        tracing::info!(dir = %dir.display(), attachments = rec.core.live(), records = rec.records, "allocation log recovered");
        let db = AllocDb {
            dir,
            inner: Mutex::new(Inner {
                core: rec.core,
                next_lsn: rec.last_lsn + 1,
                since_snapshot: rec.records,
                changes: VecDeque::new(),
                overflowed: false,
                tx: Some(tx),
            }),
            durable: drx,
            counters,
            writer: Some(handle),
            _lock: lock,
            opts,
        };
        {
            let mut g = db.lock()?;
            g.maybe_compact(&db.opts)?;
        }
        Ok(db)
    }

    /// Installs or updates a network's config from the plan. Unchanged configs
    /// cost nothing, so the daemon can call this on every plan event.
    pub async fn set_network(&self, cfg: NetworkConfig) -> Result<()> {
        let lsn = {
            let mut g = self.lock()?;
            if g.core.config(&cfg.name) == Some(&cfg) {
                g.next_lsn - 1
            } else {
                let cfg = Arc::new(cfg);
                g.core.apply_network(cfg.clone());
                let lsn = g.log(Record::Network(cfg))?;
                g.maybe_compact(&self.opts)?;
                lsn
            }
        };
        self.wait(lsn).await
    }

    /// ADD: one address per selected NIC and family, durable before it returns.
    /// The same attachment always gets the same answer; on any error nothing is
    /// allocated. `nics` are the host's NICs as discovered now (a planned NIC
    /// missing from them is not used); `classes` the known DeviceClasses.
    pub async fn add(
        &self,
        args: &AddArgs,
        nics: &[Nic],
        classes: &[DeviceClass],
    ) -> Result<Vec<NicAllocation>> {
        validate(&args.attachment)?;
        let (att, lsn) = {
            let mut g = self.lock()?;
            match g.core.get(&args.attachment) {
                // It may be another caller's, still in flight: wait for everything.
                Some(a) => (a.clone(), g.next_lsn - 1),
                None => {
                    let a = g.core.allocate(args, nics, classes)?;
                    let lsn = g.log(Record::Add(a.clone()))?;
                    g.push_change(&self.opts, lsn, Change::Added(a.clone()));
                    g.maybe_compact(&self.opts)?;
                    (a, lsn)
                }
            }
        };
        self.wait(lsn).await?;
        Ok(att.nics.clone())
    }

    /// DEL: releases the attachment's addresses. An unknown attachment succeeds.
    pub async fn del(&self, id: &AttachmentId) -> Result<()> {
        let lsn = {
            let mut g = self.lock()?;
            match g.core.release(id) {
                Some(_) => {
                    let lsn = g.log(Record::Release(vec![id.clone()]))?;
                    g.push_change(&self.opts, lsn, Change::Released(id.clone()));
                    g.maybe_compact(&self.opts)?;
                    lsn
                }
                // A concurrent DEL may still be in flight: wait for it too.
                None => g.next_lsn - 1,
            }
        };
        self.wait(lsn).await
    }

    /// CHECK: the attachment exists and still holds its addresses.
    pub async fn check(&self, id: &AttachmentId) -> Result<Arc<Attachment>> {
        let (att, lsn) = {
            let g = self.lock()?;
            (g.core.check(id)?, g.next_lsn - 1)
        };
        self.wait(lsn).await?;
        Ok(att)
    }

    /// GC: releases every attachment of `network` not in `valid`, in one record.
    pub async fn gc(&self, network: &str, valid: &[AttachmentId]) -> Result<u32> {
        let keep: HashSet<&AttachmentId> = valid.iter().collect();
        let (released, lsn) = {
            let mut g = self.lock()?;
            let gone: Vec<AttachmentId> = g
                .core
                .attachment_ids(network)
                .into_iter()
                .filter(|id| !keep.contains(id))
                .collect();
            if gone.is_empty() {
                (0, g.next_lsn - 1)
            } else {
                for id in &gone {
                    g.core.release(id);
                }
                let lsn = g.log(Record::Release(gone.clone()))?;
                let n = gone.len();
                for id in gone {
                    g.push_change(&self.opts, lsn, Change::Released(id));
                }
                g.maybe_compact(&self.opts)?;
                (n, lsn)
            }
        };
        self.wait(lsn).await?;
        Ok(u32::try_from(released).unwrap_or(u32::MAX))
    }

    /// STATUS: whether `network` can allocate now.
    pub fn status(&self, network: &str) -> Result<()> {
        self.healthy()?;
        if self.lock()?.core.ready(network) {
            Ok(())
        } else {
            Err(DbError::UnknownNetwork(network.to_string()))
        }
    }

    /// Serves one protocol request, errors included, for the daemon's socket loop.
    pub async fn handle(&self, req: Request, nics: &[Nic], classes: &[DeviceClass]) -> Response {
        let result = match req {
            Request::Add {
                attachment,
                pod,
                selection,
                master,
            } => {
                let args = AddArgs {
                    attachment,
                    pod,
                    selection,
                    master,
                };
                self.add(&args, nics, classes)
                    .await
                    .map(|nics| Response::Added { nics })
            }
            Request::Del { attachment } => self.del(&attachment).await.map(|()| Response::Done),
            Request::Check { attachment } => self.check(&attachment).await.map(|_| Response::Done),
            Request::Gc { network, valid } => self
                .gc(&network, &valid)
                .await
                .map(|released| Response::Collected { released }),
            Request::Status { network } => self.status(&network).map(|()| Response::Done),
        };
        result.unwrap_or_else(|e| Response::Error(e.reply()))
    }

    /// Durable changes since the last drain, oldest first, for mirroring to etcd.
    pub fn drain_changes(&self) -> Changes {
        let durable = self.durable.borrow().lsn;
        let Ok(mut g) = self.lock() else {
            return Changes::default();
        };
        let n = g.changes.iter().take_while(|c| c.lsn <= durable).count();
        Changes {
            events: g.changes.drain(..n).collect(),
            overflowed: std::mem::take(&mut g.overflowed),
        }
    }

    /// Every attachment (of one network, or all), durable: for a full resync.
    pub async fn attachments(&self, network: Option<&str>) -> Result<Vec<Arc<Attachment>>> {
        let (all, lsn) = {
            let g = self.lock()?;
            (g.core.attachments(network), g.next_lsn - 1)
        };
        self.wait(lsn).await?;
        Ok(all)
    }

    pub fn stats(&self) -> Stats {
        let wal = self.counters.snapshot();
        match self.lock() {
            Ok(g) => Stats {
                blocks: g.core.block_stats(),
                nic_allocations: g
                    .core
                    .nic_load
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
                attachments: g.core.live(),
                wal,
            },
            Err(_) => Stats {
                wal,
                ..Stats::default()
            },
        }
    }

    /// Writes a snapshot now and starts a fresh log after it.
    pub async fn compact(&self) -> Result<()> {
        let lsn = {
            let mut g = self.lock()?;
            g.compact()?
        };
        self.wait(lsn).await
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.healthy()?;
        self.inner
            .lock()
            .map_err(|_| DbError::Failed("a caller panicked while holding the state lock".into()))
    }

    fn healthy(&self) -> Result<()> {
        match &self.durable.borrow().failed {
            Some(e) => Err(DbError::Failed(e.to_string())),
            None => Ok(()),
        }
    }

    async fn wait(&self, lsn: u64) -> Result<()> {
        let mut rx = self.durable.clone();
        let d = rx
            .wait_for(|d| d.lsn >= lsn || d.failed.is_some())
            .await
            .map_err(|_| DbError::Failed("the log writer stopped".into()))?;
        match &d.failed {
            Some(e) if d.lsn < lsn => Err(DbError::Failed(e.to_string())),
            _ => Ok(()),
        }
    }
}

impl Inner {
    /// Queues a record; its order in the log is the order of these calls.
    fn log(&mut self, rec: Record) -> Result<u64> {
        let lsn = self.next_lsn;
        let sent = match &self.tx {
            Some(tx) => tx.send(Cmd { lsn, rec }).is_ok(),
            None => false,
        };
        if !sent {
            // The state now holds a decision the log lacks: refuse everything.
            self.tx = None;
            return Err(DbError::Failed("the log writer stopped".into()));
        }
        self.next_lsn += 1;
        self.since_snapshot += 1;
        Ok(lsn)
    }

    fn push_change(&mut self, opts: &Options, lsn: u64, change: Change) {
        if self.changes.len() >= opts.change_capacity.max(1) {
            self.changes.pop_front();
            self.overflowed = true;
        }
        self.changes.push_back(ChangeEvent { lsn, change });
    }

    fn maybe_compact(&mut self, opts: &Options) -> Result<()> {
        let due = opts.compact_after.max(self.core.live() as u64);
        if self.since_snapshot >= due {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<u64> {
        let snap = self.core.snapshot();
        let lsn = self.log(Record::Snapshot(Box::new(snap)))?;
        self.since_snapshot = 0;
        Ok(lsn)
    }
}

impl Drop for AllocDb {
    fn drop(&mut self) {
        if let Ok(mut g) = self.inner.lock() {
            g.tx = None;
        }
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

fn validate(id: &AttachmentId) -> Result<()> {
    for (field, v) in [
        ("network", &id.network),
        ("containerId", &id.container_id),
        ("ifname", &id.ifname),
    ] {
        if v.is_empty() {
            return Err(DbError::Invalid(format!("attachment {field} is empty")));
        }
    }
    Ok(())
}

/// One process per log: two daemons appending to one file would interleave
/// records and each hand out the other's addresses.
fn lock_dir(dir: &Path) -> Result<Flock<File>> {
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DbError::io(&path, e))?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => DbError::Locked { path },
        e => DbError::io(&path, e.into()),
    })
}
