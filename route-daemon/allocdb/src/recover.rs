//! Opening a log: replay every complete record, cut a torn tail, rebuild the
//! bitmaps and cursors.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::error::{DbError, Result};
use crate::frame::{self, End, Record, MAGIC};
use crate::state::Core;
use crate::writer::sync_dir;

#[derive(Debug)]
pub(crate) struct Recovered {
    pub core: Core,
    pub last_lsn: u64,
    /// Records since the last snapshot, to decide whether to compact right away.
    pub records: u64,
}

pub(crate) fn recover(dir: &Path, path: &Path) -> Result<Recovered> {
    let io = |e| DbError::io(path, e);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
        // No log, or a crash while creating it: nothing was ever acknowledged.
        create(dir, path).map_err(io)?;
        return Ok(Recovered {
            core: Core::default(),
            last_lsn: 0,
            records: 0,
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(DbError::Corrupt {
            path: path.into(),
            offset: 0,
            reason: "not a railyard allocation log (bad magic)".into(),
        });
    }
    let mut core = Core::default();
    let mut last_lsn = 0;
    let mut records = 0u64;
    let end = frame::read(&bytes, |lsn, rec| {
        if records > 0 && lsn <= last_lsn {
            return Err(format!("sequence number {lsn} after {last_lsn}"));
        }
        match rec {
            Record::Snapshot(s) if records == 0 => core.restore(*s),
            Record::Snapshot(_) => return Err("a snapshot after the first record".into()),
            Record::Network(cfg) => core.apply_network(cfg),
            Record::Add(a) => core.claim(a),
            Record::Release(ids) => {
                for id in &ids {
                    core.release(id);
                }
            }
        }
        last_lsn = lsn;
        records += 1;
        Ok(())
    });
    match end {
        End::Clean => {}
        End::Torn { offset, reason } => {
            tracing::warn!(
                path = %path.display(),
                offset,
                dropped_bytes = bytes.len() - offset,
                %reason,
                "allocation log ends in an incomplete record (a crash mid-write); cutting it off"
            );
            let f = OpenOptions::new().write(true).open(path).map_err(io)?;
            f.set_len(offset as u64).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        End::Unreadable { offset, reason } => {
            return Err(DbError::Corrupt {
                path: path.into(),
                offset: offset as u64,
                reason,
            })
        }
    }
    core.resume_all();
    Ok(Recovered {
        core,
        last_lsn,
        records,
    })
}

fn create(dir: &Path, path: &Path) -> std::io::Result<()> {
    let mut f = crate::writer::create_private(path)?;
    f.write_all(MAGIC)?;
    f.sync_all()?;
    sync_dir(dir)
}
