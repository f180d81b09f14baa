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
//! occur in a container ID, so no two attachments share a file. A name
//! must fit Linux's 255 bytes, and the spec sets no length limit on
//! container IDs, so an ID too long for that is stored as its first 64
//! characters, `~` and a 128-bit hash of the whole ID (`~` cannot occur in
//! an ID either, so such a name never equals a plain one). The file keeps
//! the full ID, and a load checks it: two IDs that hash alike get an error
//! naming both, never each other's interfaces. Short IDs keep the plain
//! name, so state written by earlier versions is still found.
//! Writes are atomic (temp file, fsync, rename, fsync of the directory):
//! a torn state file would make DEL fail forever.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lock::AttachmentLock;
use crate::Error;

/// Linux's limit on one file name (NAME_MAX).
const NAME_MAX: usize = 255;
/// The longest suffix put after a stem: `.tmp` and a pid (at most 7
/// digits: pid_max is at most 2^22).
const LONGEST_SUFFIX: usize = ".tmp".len() + 7;
/// How much of a long container ID stays readable in its file name.
const KEPT_PREFIX: usize = 64;
/// The host-wide lock of spare-link choices ([`StateStore::lock_spares`]).
/// No attachment's lock can have this name: theirs hold an `@`.
const SPARES_LOCK: &str = "host-devices.lock";

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
    /// Whether ADD set up per-interface tables and rules in the pod
    /// (`podPolicyRouting`), so DEL removes them even if the network's
    /// config has changed since. Absent in older records: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub policy_routing: bool,
    pub members: Vec<Member>,
    /// External IPAM (`ipam.external`): one call of the user's IPAM plugin
    /// per NIC, as ADD made it; DEL and CHECK replay them. Written before
    /// the first of them runs, so a crash midway leaves what DEL needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ipam: Vec<ExternalIpam>,
}

/// One NIC's call of the external IPAM plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalIpam {
    /// The pod interface (the call's `CNI_IFNAME`).
    pub ifname: String,
    pub nic: String,
    pub rail: u32,
    /// The exact network config sent (`cniVersion`, `name`, `ipam`).
    pub config: Map<String, Value>,
    /// Its ADD result, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// One delegate invocation: the pod interface, its host NIC and the exact
/// config ADD used (DEL and CHECK must send the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub ifname: String,
    pub nic: String,
    /// The NIC's rail, when the IPAM said (records written before
    /// railyard-cni named interfaces by rail have none; nothing reads the
    /// name back from it: DEL and CHECK use `ifname` as recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rail: Option<u32>,
    /// The delegate key `nic` went into, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_field: Option<String>,
    /// host-device: the spare link chosen for `nic` (`delegate.spareDevices`),
    /// which `config` names as `device`. Kept here as well so that a
    /// concurrent ADD, reading every record, never chooses it while it is
    /// still in the host (see [`super::spares`]). `None` for other
    /// delegates and for a device the runtime chose (`deviceID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Which rule chose the NIC for a pod with GPUs (`gpu-pcie-root`, ...),
    /// reported in the pod's result as `railyardChoice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
    pub config: Map<String, Value>,
    /// The plugins chained after the delegate, as ADD ran them (`chain`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<Map<String, Value>>,
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
        self.dir
            .join(format!("{}.json", file_stem(container_id, ifname)))
    }

    /// Takes the attachment's lock (see [`super::lock`]), creating the
    /// directory first: the lock file lives next to the state it guards.
    pub fn lock(&self, container_id: &str, ifname: &str) -> Result<AttachmentLock, Error> {
        self.create_dir()?;
        let stem = file_stem(container_id, ifname);
        AttachmentLock::acquire(&self.dir.join(format!("{stem}.lock")))
    }

    /// Takes the host-wide lock under which host-device ADDs choose spare
    /// links (`<dir>/host-devices.lock`, never removed: one file per host).
    /// It ends in `.lock`, so [`StateStore::list`] never reads it as state.
    pub fn lock_spares(&self) -> Result<AttachmentLock, Error> {
        self.create_dir()?;
        AttachmentLock::acquire(&self.dir.join(SPARES_LOCK))
    }

    /// Releases `lock`, removing its file when the attachment has no state
    /// left (after a DEL, a rolled-back ADD, a CHECK of an unknown one).
    pub fn unlock(&self, lock: AttachmentLock, container_id: &str, ifname: &str) {
        if !self.path(container_id, ifname).exists() {
            lock.release_and_remove();
        }
    }

    /// The attachment's record. One that names another attachment (two
    /// long container IDs with the same hash) is an error, not a match.
    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<State>, Error> {
        let path = self.path(container_id, ifname);
        let state = read(&path)?;
        if let Some(s) = &state {
            if s.container_id != container_id || s.ifname != ifname {
                return Err(Error::Io {
                    context: format!("reading {}", path.display()),
                    source: std::io::Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "it is the state of container {:?} interface {:?}, not of container \
                             {container_id:?} interface {ifname:?}: their IDs share a file name",
                            s.container_id, s.ifname
                        ),
                    ),
                });
            }
        }
        Ok(state)
    }

    fn create_dir(&self) -> Result<(), Error> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| Error::Io {
                context: format!("creating the state directory {}", self.dir.display()),
                source,
            })
    }

    pub fn save(&self, state: &State) -> Result<(), Error> {
        let path = self.path(&state.container_id, &state.ifname);
        let io = |context: &str, source| Error::Io {
            context: format!("{context} {}", path.display()),
            source,
        };
        self.create_dir()?;
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

/// `<containerID>@<ifname>` when that fits a file name with any of our
/// suffixes, else the hashed form (see the module doc).
fn file_stem(container_id: &str, ifname: &str) -> String {
    let plain = format!("{container_id}@{ifname}");
    if plain.len() + LONGEST_SUFFIX <= NAME_MAX {
        return plain;
    }
    let kept: String = container_id.chars().take(KEPT_PREFIX).collect();
    format!(
        "{kept}~{:032x}@{ifname}",
        fnv1a_128(container_id.as_bytes())
    )
}

/// FNV-1a, 128 bits: stable forever (file names depend on it), no
/// dependency, and wide enough that a collision is not a practical worry;
/// [`StateStore::load`] still detects one.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
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
            policy_routing: false,
            members: vec![Member {
                ifname: format!("{ifname}-0"),
                nic: "eth1".into(),
                rail: None,
                nic_field: Some("master".into()),
                device: None,
                choice: None,
                chain: Vec::new(),
                config: Map::new(),
                result: None,
            }],
            external_ipam: Vec::new(),
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
    fn long_ids_get_bounded_names_and_short_ones_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        // The plain name, as every earlier version wrote it.
        assert_eq!(store.path("c1", "net1"), dir.path().join("c1@net1.json"));
        let long = "a".repeat(300);
        let longer = format!("{long}b");
        let name = |cid: &str| {
            let path = store.path(cid, "abcdefghijklmno");
            path.file_name().unwrap().to_str().unwrap().to_owned()
        };
        assert!(name(&long).len() + LONGEST_SUFFIX - ".json".len() <= NAME_MAX);
        assert!(
            name(&long).starts_with(&"a".repeat(KEPT_PREFIX)),
            "{}",
            name(&long)
        );
        assert_ne!(name(&long), name(&longer));
        // The longest plain stem and the shortest hashed one.
        let edge = "e".repeat(NAME_MAX - LONGEST_SUFFIX - "@net1".len());
        assert_eq!(name_of(&store, &edge), format!("{edge}@net1.json"));
        assert!(name_of(&store, &format!("{edge}e")).contains('~'));

        let state = state(&long, "net1");
        store.save(&state).unwrap();
        assert_eq!(store.load(&long, "net1").unwrap(), Some(state.clone()));
        assert_eq!(store.list().unwrap(), vec![state]);
        let lock = store.lock(&long, "net1").unwrap();
        store.unlock(lock, &long, "net1");
        store.remove(&long, "net1").unwrap();
        assert_eq!(store.load(&long, "net1").unwrap(), None);
    }

    fn name_of(store: &StateStore, cid: &str) -> String {
        let path = store.path(cid, "net1");
        path.file_name().unwrap().to_str().unwrap().to_owned()
    }

    #[test]
    fn a_file_of_another_attachment_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let (mine, theirs) = ("a".repeat(300), "b".repeat(300));
        // As if both IDs hashed alike: their state sits at my path.
        fs::write(
            store.path(&mine, "net1"),
            serde_json::to_vec(&state(&theirs, "net1")).unwrap(),
        )
        .unwrap();
        let err = store.load(&mine, "net1").unwrap_err();
        assert_eq!(err.code(), crate::error::codes::IO_FAILURE);
        let msg = err.to_string();
        assert!(msg.contains(&mine) && msg.contains(&theirs), "{msg}");
    }

    #[test]
    fn the_lock_file_goes_with_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("new"));
        let lock_file = dir.path().join("new/c1@net1.lock");
        let lock = store.lock("c1", "net1").unwrap();
        assert!(lock_file.exists());
        store.save(&state("c1", "net1")).unwrap();
        store.unlock(lock, "c1", "net1");
        assert!(lock_file.exists(), "kept while the attachment has state");
        let lock = store.lock("c1", "net1").unwrap();
        store.remove("c1", "net1").unwrap();
        store.unlock(lock, "c1", "net1");
        assert!(!lock_file.exists(), "removed with the state");
        assert!(store.list().unwrap().is_empty());
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
