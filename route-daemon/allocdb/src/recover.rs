//! Opening a log: replay every complete record, cut a torn tail, rebuild the
//! bitmaps and cursors.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::error::{DbError, Result};
use crate::frame::{self, End, Header, Record, LOG_FORMAT, MAGIC, MIN_LOG_FORMAT};
use crate::state::Core;
use crate::writer::sync_dir;

#[derive(Debug)]
pub(crate) struct Recovered {
    pub core: Core,
    pub last_lsn: u64,
    /// Records since the last snapshot, to decide whether to compact right away.
    pub records: u64,
    /// The format version of the file read ([`LOG_FORMAT`] for a new one):
    /// an older one is converted by a snapshot into a fresh file.
    pub version: u32,
}

pub(crate) fn recover(dir: &Path, path: &Path) -> Result<Recovered> {
    let io = |e| DbError::io(path, e);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    let version = match frame::header(&bytes) {
        Header::Unborn => {
            // No log, or a crash while creating it: nothing was ever acknowledged.
            create(dir, path).map_err(io)?;
            return Ok(Recovered {
                core: Core::default(),
                last_lsn: 0,
                records: 0,
                version: LOG_FORMAT,
            });
        }
        Header::Readable(v) => v,
        Header::Version(found) => return Err(version_error(path, found)),
        Header::Foreign => {
            return Err(DbError::Corrupt {
                path: path.into(),
                offset: 0,
                reason: format!(
                    "not a railyard allocation log (bad magic): it starts with \"{}\", not \
                     \"RYALOG\" and two digits of format version",
                    bytes[..bytes.len().min(MAGIC.len())].escape_ascii()
                ),
            })
        }
    };
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
        version,
    })
}

/// Reads only the header of the log in `dir`, if there is one: what a daemon
/// checks before it starts anything, so that a log written by a newer railyard
/// stops it at once (see [`DbError::NewerFormat`]) instead of leaving it
/// running without IPAM. Other problems are left to [`AllocDb::open`]'s
/// recovery, which reports them with the offset.
///
/// [`AllocDb::open`]: crate::AllocDb::open
pub fn check_format(dir: &Path) -> Result<()> {
    let path = dir.join(crate::writer::LOG_FILE);
    let mut head = Vec::with_capacity(MAGIC.len());
    match std::fs::File::open(&path) {
        Ok(f) => {
            use std::io::Read;
            f.take(MAGIC.len() as u64)
                .read_to_end(&mut head)
                .map_err(|e| DbError::io(&path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DbError::io(&path, e)),
    }
    match frame::header(&head) {
        Header::Version(found) => Err(version_error(&path, found)),
        Header::Unborn | Header::Readable(_) | Header::Foreign => Ok(()),
    }
}

fn version_error(path: &Path, found: u32) -> DbError {
    if found > LOG_FORMAT {
        DbError::NewerFormat {
            path: path.into(),
            found,
            supported: LOG_FORMAT,
        }
    } else {
        DbError::Corrupt {
            path: path.into(),
            offset: 0,
            reason: format!(
                "format version {found} is not one this build reads (versions {MIN_LOG_FORMAT} to {LOG_FORMAT})"
            ),
        }
    }
}

fn create(dir: &Path, path: &Path) -> std::io::Result<()> {
    let mut f = crate::writer::create_private(path)?;
    f.write_all(MAGIC)?;
    f.sync_all()?;
    sync_dir(dir)
}
