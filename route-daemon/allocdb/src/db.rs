//! The public engine: a mutex around the state for the decisions, the group-commit
//! writer outside it for the IO.
//!
//! Each mutating call decides under the lock and queues its log record before
//! letting go, so the log's order is the order decisions were made in (replay
//! then reaches the same state). It then waits, without the lock, until the
//! writer reports its record durable; only then does the caller get an answer.
//! A crash before that point loses a decision nobody was told about.
//!
//! When the log cannot be written (a full disk, an IO error), nothing that needs
//! a record is served, but the engine does not give up: at most once a
//! [`RETRY_EVERY`] it reopens the log, which means exactly what a restart does
//! (replay what is on disk, the only state known to be durable) followed by a
//! snapshot written to a fresh file; once that snapshot is on disk, serving
//! resumes. A DEL meanwhile is accepted: the release is queued in memory, its
//! addresses stay held (nobody else can get them), and it goes into that
//! snapshot. Should the daemon die before, the attachment comes back from the log
//! and the runtime's next CNI GC (which lists the live attachments) releases it:
//! a release is delayed, never turned into a duplicate.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use railyard_core::attach::DeviceClass;
use railyard_core::ipam::{AttachmentId, NicAllocation, NicChoice};
use railyard_core::Nic;
use tokio::sync::watch;

use crate::error::{DbError, Result};
use crate::frame::{Record, LOG_FORMAT};
use crate::model::{
    AddArgs, Adopted, Attachment, Change, ChangeEvent, Changes, NetworkConfig, Stats,
};
use crate::recover::{recover, Recovered};
use crate::state::Core;
use crate::writer::{
    open_append, remove_stale_tmp, rotate, Cmd, Counters, Durable, Writer, LOG_FILE,
};

/// How often a log that cannot be written is reopened (see the module doc).
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Mode of the log directory and its files: they name every pod of the host.
const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

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
    durable_tx: watch::Sender<Durable>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The log held no record at all when opened: a new host, or a state dir
    /// that was lost. The daemon must not trust such an empty state blindly.
    opened_empty: bool,
    /// When this process opened the log: the last ADD of an attachment that
    /// came from the log (or etcd) is taken to be this late, since the log
    /// keeps no times (see [`AllocDb::attachments_added`]).
    opened_at: Instant,
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
    /// DELs accepted while the log could not be written (see the module doc).
    pending_releases: Vec<AttachmentId>,
    /// Plan configs that arrived meanwhile; applied on reopen.
    pending_networks: BTreeMap<String, NetworkConfig>,
    last_reopen: Option<Instant>,
    /// When an ADD last decided each attachment in this process (memory only,
    /// never logged): what the leak sweep's release checks under the lock.
    added: HashMap<AttachmentId, Instant>,
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
        make_private_dir(&dir).map_err(|e| DbError::io(&dir, e))?;
        let lock = lock_dir(&dir)?;
        let path = dir.join(LOG_FILE);
        // Recovery checks the format version first, so a log this build does
        // not read is refused before the log or a compaction leftover is touched.
        let rec = recover(&dir, &path)?;
        remove_stale_tmp(&dir).map_err(|e| DbError::io(&dir, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| DbError::io(&path, e))?;
        let file = open_append(&path).map_err(|e| DbError::io(&path, e))?;
        let (dtx, drx) = watch::channel(Durable {
            lsn: rec.last_lsn,
            failed: None,
        });
        let counters = Arc::new(Counters::default());
        let opened_empty = rec.last_lsn == 0;
        let older = (rec.version < LOG_FORMAT).then_some(rec.version);
        tracing::info!(dir = %dir.display(), attachments = rec.core.live(), records = rec.records, version = rec.version, "allocation log recovered");
        let db = AllocDb {
            inner: Mutex::new(Inner {
                core: Core::default(),
                next_lsn: rec.last_lsn + 1,
                since_snapshot: rec.records,
                changes: VecDeque::new(),
                overflowed: false,
                tx: None,
                pending_releases: Vec::new(),
                pending_networks: BTreeMap::new(),
                last_reopen: None,
                added: HashMap::new(),
            }),
            durable: drx,
            durable_tx: dtx,
            counters,
            writer: Mutex::new(None),
            opened_empty,
            opened_at: Instant::now(),
            _lock: lock,
            opts,
            dir,
        };
        {
            let mut g = db.lock()?;
            db.start_writer(&mut g, rec, file)?;
            if let Some(found) = older {
                // A log of an older format is converted at once, by the
                // compaction path: a snapshot written to a fresh file of
                // this format, renamed over the old one. It is the first
                // record queued, so nothing of this format is ever appended
                // to the old file; a crash leaves the whole old file.
                tracing::info!(dir = %db.dir.display(), from = found, to = LOG_FORMAT, "allocation log of an older format: converting it");
                g.compact()?;
            } else {
                g.maybe_compact(&db.opts)?;
            }
        }
        Ok(db)
    }

    /// Installs a recovered state and a writer appending to `file`.
    fn start_writer(&self, g: &mut Inner, rec: Recovered, file: File) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            self.dir.clone(),
            file,
            rx,
            self.durable_tx.clone(),
            self.counters.clone(),
            rec.last_lsn,
        );
        let syncers = self.opts.sync_threads;
        let handle = std::thread::Builder::new()
            .name("allocdb-log".into())
            .spawn(move || writer.run(syncers))
            .map_err(|e| DbError::io(&self.dir, e))?;
        if let Ok(mut w) = self.writer.lock() {
            *w = Some(handle);
        }
        g.core = rec.core;
        g.next_lsn = rec.last_lsn + 1;
        g.tx = Some(tx);
        Ok(())
    }

    /// Whether the log held no record at all when it was opened (new, or lost).
    pub fn opened_empty(&self) -> bool {
        self.opened_empty
    }

    /// Installs or updates a network's config from the plan. Unchanged configs
    /// cost nothing, so the daemon can call this on every plan event.
    pub async fn set_network(&self, cfg: NetworkConfig) -> Result<()> {
        let lsn = {
            let mut g = self.lock()?;
            if !self.writable(&mut g) {
                // Not a decision: it is applied when the log can be written again.
                g.pending_networks.insert(cfg.name.clone(), cfg);
                return Ok(());
            }
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
            self.ensure_writable(&mut g)?;
            let decided = match g.core.get(&args.attachment) {
                // It may be another caller's, still in flight: wait for everything.
                Some(a) => (a.clone(), g.next_lsn - 1),
                None => {
                    let (a, took_over) = g.core.allocate_retained(args, nics, classes)?;
                    if let Some(old) = took_over {
                        let lsn = g.log(Record::Release(vec![old.clone()]))?;
                        g.push_change(&self.opts, lsn, Change::Released(old));
                    }
                    let lsn = g.log(Record::Add(a.clone()))?;
                    g.push_change(&self.opts, lsn, Change::Added(a.clone()));
                    g.maybe_compact(&self.opts)?;
                    (a, lsn)
                }
            };
            // A repeated ADD counts too: its pod is being (re)created now.
            g.added.insert(args.attachment.clone(), Instant::now());
            decided
        };
        self.wait(lsn).await?;
        Ok(att.nics.clone())
    }

    /// External IPAM: the NICs an ADD would give the pod and their host
    /// blocks, by the same attach policy, allocating and logging nothing
    /// (`choose.rs`). Served while the log cannot be written: it needs none.
    pub fn choose(
        &self,
        args: &AddArgs,
        nics: &[Nic],
        classes: &[DeviceClass],
    ) -> Result<Vec<NicChoice>> {
        validate(&args.attachment)?;
        self.lock()?.core.choose(args, nics, classes)
    }

    /// DEL: releases the attachment's addresses. An unknown attachment succeeds.
    /// While the log cannot be written the release is queued (see the module doc).
    pub async fn del(&self, id: &AttachmentId) -> Result<()> {
        if let Err(e) = validate(id) {
            // ADD refuses such an id, so nothing can hold it: a DEL that failed
            // here would make the runtime retry it forever.
            tracing::debug!(error = %e, "DEL of an attachment that cannot exist: done");
            return Ok(());
        }
        let lsn = {
            let mut g = self.lock()?;
            if !self.writable(&mut g) {
                if g.core.get(id).is_some() && !g.pending_releases.contains(id) {
                    tracing::warn!(network = %id.network, container = %id.container_id, ifname = %id.ifname,
                        "allocation log cannot be written: DEL accepted, release queued until it can (its addresses stay held meanwhile)");
                    g.pending_releases.push(id.clone());
                }
                return Ok(());
            }
            match g.core.release(id) {
                Some(att) => {
                    g.added.remove(id);
                    let mut lsn = g.log(Record::Release(vec![id.clone()]))?;
                    g.push_change(&self.opts, lsn, Change::Released(id.clone()));
                    // A StatefulSet pod's addresses stay held for its name
                    // (`retain.rs`), unless its successor is already attached
                    // (the runtime added the new sandbox before it deleted the
                    // old one): nobody would take them over. Logged after the
                    // release: a crash between the two loses the retention,
                    // never holds twice.
                    if crate::retain::keeps(&att) && !g.core.has_successor(&att) {
                        let kept = Arc::new(crate::retain::placeholder(&att));
                        g.core.claim(Arc::clone(&kept));
                        lsn = g.log(Record::Add(Arc::clone(&kept)))?;
                        g.push_change(&self.opts, lsn, Change::Added(kept));
                    }
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
            let mut g = self.lock()?;
            self.ensure_writable(&mut g)?;
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
            self.ensure_writable(&mut g)?;
            let gone: Vec<AttachmentId> = g
                .core
                .attachment_ids(network)
                .into_iter()
                // Retained addresses are not the runtime's to collect.
                .filter(|id| !keep.contains(id) && !crate::retain::is_retained(id))
                .collect();
            if gone.is_empty() {
                (0, g.next_lsn - 1)
            } else {
                for id in &gone {
                    g.core.release(id);
                    g.added.remove(id);
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

    /// Every attachment, durable, with when an ADD last decided it (allocated it,
    /// or answered a repeated ADD for it) in this process. Attachments replayed
    /// from the log or adopted from etcd count as added when the log was opened:
    /// the log keeps no times, and a later time only delays a leak sweep.
    pub async fn attachments_added(&self) -> Result<Vec<(Arc<Attachment>, Instant)>> {
        let (all, lsn) = {
            let g = self.lock()?;
            let all = g
                .core
                .attachments(None)
                .into_iter()
                .map(|a| {
                    let at = g.added.get(&a.id).copied().unwrap_or(self.opened_at);
                    (a, at)
                })
                .collect();
            (all, g.next_lsn - 1)
        };
        self.wait(lsn).await?;
        Ok(all)
    }

    /// The leak sweep's release: of `ids`, those still held whose last ADD
    /// (as [`AllocDb::attachments_added`] tells it) came before `added_before`
    /// are released in one record, as a GC releases, durable before it
    /// returns; the released attachments are returned. The check and the
    /// release happen under the lock every ADD decides under, so an ADD for
    /// one of them that came after `added_before`, or is deciding right now,
    /// keeps it; an ADD that comes after the release allocates afresh.
    pub async fn release_idle(
        &self,
        ids: &[AttachmentId],
        added_before: Instant,
    ) -> Result<Vec<Arc<Attachment>>> {
        let (released, lsn) = {
            let mut g = self.lock()?;
            self.ensure_writable(&mut g)?;
            let idle: Vec<AttachmentId> = ids
                .iter()
                .filter(|id| g.core.get(id).is_some())
                .filter(|id| g.added.get(*id).copied().unwrap_or(self.opened_at) < added_before)
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if idle.is_empty() {
                (Vec::new(), g.next_lsn - 1)
            } else {
                let released: Vec<Arc<Attachment>> =
                    idle.iter().filter_map(|id| g.core.release(id)).collect();
                for id in &idle {
                    g.added.remove(id);
                }
                let lsn = g.log(Record::Release(idle.clone()))?;
                for id in idle {
                    g.push_change(&self.opts, lsn, Change::Released(id));
                }
                g.maybe_compact(&self.opts)?;
                (released, lsn)
            }
        };
        self.wait(lsn).await?;
        Ok(released)
    }

    /// STATUS: whether `network` can allocate now.
    pub fn status(&self, network: &str) -> Result<()> {
        let mut g = self.lock()?;
        self.ensure_writable(&mut g)?;
        if g.core.ready(network) {
            Ok(())
        } else {
            Err(DbError::UnknownNetwork(network.to_string()))
        }
    }

    /// Takes records found in etcd for this host that the log has no account of
    /// (see `railyard-route-daemon`'s mirror): each is logged as held, unless an
    /// address of it is held here by another attachment (then the log decided
    /// later and the record is stale; it is returned with the reason). Records
    /// already held are skipped. Durable before it returns.
    pub async fn adopt(&self, found: Vec<Attachment>) -> Result<Adopted> {
        let mut out = Adopted::default();
        let lsn = {
            let mut g = self.lock()?;
            self.ensure_writable(&mut g)?;
            let mut lsn = g.next_lsn - 1;
            for att in found {
                validate(&att.id)?;
                if g.core.get(&att.id).is_some() {
                    continue;
                }
                if let Some(why) = g.core.adopt_conflict(&att) {
                    out.stale.push((att.id, why));
                    continue;
                }
                let att = Arc::new(att);
                g.core.claim(att.clone());
                lsn = g.log(Record::Add(att.clone()))?;
                out.adopted.push(att.id.clone());
            }
            g.maybe_compact(&self.opts)?;
            lsn
        };
        self.wait(lsn).await?;
        Ok(out)
    }

    /// Whether `id` was released here and its etcd record may still exist: the
    /// only records of this host the mirror may delete without a stale address.
    pub fn released_unmirrored(&self, id: &AttachmentId) -> bool {
        self.lock().is_ok_and(|g| g.core.released.contains(id))
    }

    /// The mirror deleted these records from etcd: forget their releases.
    pub fn mirrored_releases(&self, ids: &[AttachmentId]) {
        if let Ok(mut g) = self.lock() {
            for id in ids {
                if g.core.get(id).is_none() {
                    g.core.released.remove(id);
                }
            }
        }
    }

    /// Retries a log that could not be written; whether it can be now. The
    /// daemon calls it on a timer so a host with no requests recovers too.
    pub fn retry(&self) -> bool {
        match self.lock() {
            Ok(mut g) => self.writable(&mut g),
            Err(_) => false,
        }
    }

    /// Whether the log can be written, reopening it first when it could not
    /// (at most once per [`RETRY_EVERY`]).
    fn writable(&self, g: &mut Inner) -> bool {
        if self.durable.borrow().failed.is_none() && g.tx.is_some() {
            return true;
        }
        if g.last_reopen.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return false;
        }
        g.last_reopen = Some(Instant::now());
        match self.reopen(g) {
            Ok(()) => {
                tracing::warn!(dir = %self.dir.display(), "allocation log writable again: reopened from what is on disk, serving resumes");
                true
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "allocation log still cannot be written; retrying");
                false
            }
        }
    }

    fn ensure_writable(&self, g: &mut Inner) -> Result<()> {
        if self.writable(g) {
            return Ok(());
        }
        let why = self
            .durable
            .borrow()
            .failed
            .as_deref()
            .unwrap_or("the log writer stopped")
            .to_string();
        Err(DbError::LogUnwritable(why))
    }

    /// What a restart would do, in place: stop the writer, replay the log on
    /// disk, apply what was queued meanwhile, and write it all as a snapshot to a
    /// fresh file. Only once that is durable is the old failure cleared.
    fn reopen(&self, g: &mut Inner) -> Result<()> {
        g.tx = None;
        let old = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = old {
            let _ = h.join();
        }
        let path = self.dir.join(LOG_FILE);
        remove_stale_tmp(&self.dir).map_err(|e| DbError::io(&self.dir, e))?;
        let mut rec = recover(&self.dir, &path)?;
        for cfg in g.pending_networks.values() {
            if rec.core.config(&cfg.name) != Some(cfg) {
                rec.core.apply_network(Arc::new(cfg.clone()));
            }
        }
        for id in &g.pending_releases {
            rec.core.release(id);
        }
        rec.core.resume_all();
        // Above every number ever queued, so the waiters' order still holds.
        let lsn = g.next_lsn.max(rec.last_lsn + 1);
        let snap = Record::Snapshot(Box::new(rec.core.snapshot()));
        let file = match rotate(&self.dir, lsn, &snap) {
            Ok(f) => f,
            Err(e) => {
                let _ = remove_stale_tmp(&self.dir);
                return Err(DbError::io(&path, e));
            }
        };
        rec.last_lsn = lsn;
        let released = std::mem::take(&mut g.pending_releases);
        g.pending_networks.clear();
        self.durable_tx.send_modify(|d| {
            d.lsn = d.lsn.max(lsn);
            d.failed = None;
        });
        self.start_writer(g, rec, file)?;
        g.since_snapshot = 0;
        // The feed may name decisions that never reached the disk: resync.
        g.changes.clear();
        g.overflowed = true;
        if !released.is_empty() {
            tracing::warn!(
                releases = released.len(),
                "queued DEL releases are now durable"
            );
        }
        Ok(())
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
        self.inner
            .lock()
            .map_err(|_| DbError::Failed("a caller panicked while holding the state lock".into()))
    }

    async fn wait(&self, lsn: u64) -> Result<()> {
        let mut rx = self.durable.clone();
        let d = rx
            .wait_for(|d| d.lsn >= lsn || d.failed.is_some())
            .await
            .map_err(|_| DbError::Failed("the log writer stopped".into()))?;
        match &d.failed {
            Some(e) if d.lsn < lsn => Err(DbError::LogUnwritable(e.to_string())),
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
            // The writer stopped on a failure; reopening replaces this state by
            // the log's, so the decision just made is dropped with it.
            self.tx = None;
            return Err(DbError::LogUnwritable("the log writer stopped".into()));
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
        let handle = self.writer.get_mut().ok().and_then(Option::take);
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Longest container ID accepted. CNI sets no limit and nothing on the daemon
/// side stores it in a file name (the log is one file; etcd keys are not length
/// limited), so long IDs work; the bound only keeps a request, its log record
/// and its etcd key small.
pub const MAX_CONTAINER_ID: usize = 1024;

/// A field that is empty, too long, or holds a `/` (it is a segment of the etcd
/// key `/railyard/v1/allocations/<net>/<host>/<containerID>/<ifname>`) or a
/// control character is refused, naming the field and the value.
fn validate(id: &AttachmentId) -> Result<()> {
    for (field, v, max) in [
        ("network", &id.network, 253),
        ("containerId", &id.container_id, MAX_CONTAINER_ID),
        ("ifname", &id.ifname, 15),
    ] {
        let bad = if v.is_empty() {
            Some("is empty".to_string())
        } else if v.len() > max {
            Some(format!("is {} bytes long, more than {max}", v.len()))
        } else if v.contains('/') || v.chars().any(char::is_control) {
            Some("contains '/' or a control character".to_string())
        } else {
            None
        };
        if let Some(why) = bad {
            let shown: String = v.chars().take(80).collect();
            return Err(DbError::Invalid(format!(
                "attachment {field} {shown:?}{} {why}",
                if v.len() > 80 { "..." } else { "" }
            )));
        }
    }
    Ok(())
}

/// Creates `dir` (and parents) mode 0700, and narrows an existing one to it:
/// the log names every pod of the host.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
}

/// One process per log: two daemons appending to one file would interleave
/// records and each hand out the other's addresses.
fn lock_dir(dir: &Path) -> Result<Flock<File>> {
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| DbError::io(&path, e))?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => DbError::Locked { path },
        e => DbError::io(&path, e.into()),
    })
}
