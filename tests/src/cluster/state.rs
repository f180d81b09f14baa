//! The state file: everything `up` made, written before each thing is made, so
//! that `down` (another process, possibly after `up` failed half way or the
//! machine's test run was killed) removes exactly that and nothing else.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::kernel_limits::RaisedSysctl;
use super::process::ProcRecord;
use super::spec::ClusterSpec;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub name: String,
    pub host: String,
    pub host_index: usize,
    /// Every address the CNI result gave the pod, all rails and families.
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub spec: ClusterSpec,
    /// Hosts made so far (hosts that joined after `up` included).
    pub hosts: usize,
    /// Namespaces in creation order; removed in reverse.
    pub netns: Vec<String>,
    /// Links made in the root namespace.
    pub links: Vec<String>,
    pub processes: Vec<ProcRecord>,
    /// Directories removed by `down` (the state dir itself goes last).
    pub dirs: Vec<PathBuf>,
    pub pods: Vec<PodRecord>,
    /// Root-namespace sysctls raised for the cluster, restored by `down`.
    #[serde(default)]
    pub sysctls: Vec<RaisedSysctl>,
    /// File systems mounted for the cluster (`ClusterSpec::state_tmpfs_kib`),
    /// recorded before they are mounted; `down` unmounts them.
    #[serde(default)]
    pub mounts: Vec<PathBuf>,
}

impl State {
    pub fn new(spec: ClusterSpec) -> Self {
        State {
            hosts: 0,
            netns: Vec::new(),
            links: Vec::new(),
            processes: Vec::new(),
            dirs: Vec::new(),
            pods: Vec::new(),
            sysctls: Vec::new(),
            mounts: Vec::new(),
            spec,
        }
    }

    /// Reads the state file in `state_dir`; `None` when there is none.
    pub fn load(state_dir: &Path) -> Result<Option<State>> {
        let path = state_dir.join("cluster.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read the state file", path, e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Refused(format!(
                "{} is not a railyard-local state file ({e}); remove it by hand",
                path.display()
            ))
        })
    }

    /// Writes atomically (temp file + rename): a crash mid-write must not lose
    /// the record of what exists.
    pub fn save(&self) -> Result<()> {
        let path = self.spec.state_file();
        let dir = &self.spec.state_dir;
        super::process::private_dir(dir).map_err(|e| Error::io("create the state dir", dir, e))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Refused(format!("cannot encode the state: {e}")))?;
        write_private(&tmp, &text).map_err(|e| Error::io("write the state file", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("write the state file", &path, e))
    }

    pub fn process(&self, role: &str) -> Option<&ProcRecord> {
        self.processes.iter().find(|p| p.role == role)
    }

    /// Records a (re)started process, replacing an older record of the role.
    pub fn set_process(&mut self, record: ProcRecord) {
        self.processes.retain(|p| p.role != record.role);
        self.processes.push(record);
    }

    pub fn add_netns(&mut self, name: &str) {
        if !self.netns.iter().any(|n| n == name) {
            self.netns.push(name.to_owned());
        }
    }

    pub fn add_dir(&mut self, dir: &Path) {
        if !self.dirs.iter().any(|d| d == dir) {
            self.dirs.push(dir.to_owned());
        }
    }
}

/// Writes `path` mode 0600 (replacing what was there).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
