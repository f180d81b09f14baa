//! What railyard-cni remembers between ADD and DEL, one small JSON file per
//! attachment.
//!
//! Why a file at all: DEL must undo exactly what ADD did, and neither the
//! runtime's DEL nor the daemon can say which NICs and delegate configs
//! that was (prevResult is optional before 0.4.0 and never names the
//! masters; asking IPAM again would allocate). Probing the pod for
//! `<ifname>-<i>` instead would need entering its netns and still not know
//! each interface's config. So ADD writes the full plan *before* creating
//! the first interface, and DEL replays it. A crash mid-ADD therefore
//! leaves a plan whose DEL removes whatever was created; DEL of a member
//! that never came to be is a no-op for every delegate.
//!
//! File name: `<containerID>@<ifname>.json`. The `@` (unlike `-`) cannot
//! occur in a container ID, so no two attachments share a file.
//! Writes are atomic (temp file, fsync, rename, fsync of the directory):
//! a torn state file would make DEL fail forever.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// One attachment's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    /// For GC, which runs without a netns of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    pub members: Vec<Member>,
}

/// One delegate invocation: the pod interface, its host NIC and the exact
/// config ADD used (DEL and CHECK must send the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub ifname: String,
    pub nic: String,
    /// The delegate key `nic` went into, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_field: Option<String>,
    pub config: Map<String, Value>,
    /// The delegate's ADD result, once it succeeded; CHECK's prevResult.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore { dir: dir.into() }
    }

    pub fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}@{ifname}.json"))
    }

    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<State>, Error> {
        read(&self.path(container_id, ifname))
    }

    pub fn save(&self, state: &State) -> Result<(), Error> {
        let path = self.path(&state.container_id, &state.ifname);
        let io = |context: &str, source| Error::Io {
            context: format!("{context} {}", path.display()),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io("creating the directory of", e))?;
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::Internal {
            reason: format!("serializing state: {e}"),
        })?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, &path))
            .and_then(|()| File::open(&self.dir).and_then(|d| d.sync_all()));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io("writing", e));
        }
        Ok(())
    }

    /// Absent already is fine: DEL is idempotent.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), Error> {
        let path = self.path(container_id, ifname);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::Io {
                context: format!("removing {}", path.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every record, for GC. A missing directory means nothing was added.
    pub fn list(&self) -> Result<Vec<State>, Error> {
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(|source| Error::Io {
                context: format!("listing {}", self.dir.display()),
                source,
            })?,
        };
        let mut states = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                states.extend(read(&path)?);
            }
        }
        Ok(states)
    }
}

fn read(path: &Path) -> Result<Option<State>, Error> {
    let bytes = match fs::read(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        other => other.map_err(|source| Error::Io {
            context: format!("reading {}", path.display()),
            source,
        })?,
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::decode(format!("railyard-cni state {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(cid: &str, ifname: &str) -> State {
        State {
            network: "rdma".into(),
            container_id: cid.into(),
            ifname: ifname.into(),
            netns: Some("/var/run/netns/p".into()),
            members: vec![Member {
                ifname: format!("{ifname}-0"),
                nic: "eth1".into(),
                nic_field: Some("master".into()),
                config: Map::new(),
                result: None,
            }],
        }
    }

    #[test]
    fn save_load_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("nested"));
        assert_eq!(store.load("c1", "net1").unwrap(), None);
        assert!(store.list().unwrap().is_empty());
        // Names that would collide with a '-' separator stay apart.
        let a = state("a-b", "c");
        let b = state("a", "b-c");
        store.save(&a).unwrap();
        store.save(&b).unwrap();
        assert_eq!(store.load("a-b", "c").unwrap(), Some(a.clone()));
        assert_eq!(store.list().unwrap().len(), 2);
        store.remove("a-b", "c").unwrap();
        store.remove("a-b", "c").unwrap();
        assert_eq!(store.list().unwrap(), vec![b]);
    }

    #[test]
    fn corrupt_state_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        fs::write(store.path("c1", "net1"), b"{").unwrap();
        let err = store.load("c1", "net1").unwrap_err();
        assert_eq!(err.code(), crate::error::codes::DECODE_FAILURE);
        assert!(err.to_string().contains("c1@net1.json"), "{err}");
    }
}
