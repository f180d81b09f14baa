//! A local multi-host rail cluster in network namespaces, run from the real
//! binaries: etcd, the planner(s), one route-daemon per host namespace, pods
//! attached through `railyard-cni`. `railyard-local` drives it from the command
//! line; the end-to-end tests drive it from code.
//!
//! Everything made is first written to the state file (see `state.rs`), so
//! `down` can always undo `up`, from another process and after any failure.

mod birds;
pub mod cmd;
pub mod etcd;
pub mod etcd_members;
pub mod fabric;
pub mod forward;
pub mod kernel_limits;
mod lifecycle;
pub mod observe;
pub mod pods;
pub mod process;
mod services;
pub mod spec;
pub mod state;
pub mod tmpfs;
pub mod topology;
mod wait;
mod workload;

use std::collections::HashMap;
use std::process::Child;

pub use observe::Observer;
pub use spec::{ClusterSpec, Delegate, Family, IpvlanMode};
pub use state::{PodRecord, State};
pub use wait::CheckRun;

use crate::error::{Error, Result};

/// A cluster this process made or found through its state file.
#[derive(Debug)]
pub struct Cluster {
    pub state: State,
    /// Processes this process started, kept to reap them (`down` from another
    /// process finds them by the state file instead).
    children: HashMap<String, Child>,
    observer: Option<Observer>,
    /// Whether the daemon binary serves IPAM (`--ipam-socket`); asked once.
    daemon_has_ipam: Option<bool>,
}

impl Cluster {
    fn with_state(state: State) -> Self {
        Cluster {
            state,
            children: HashMap::new(),
            observer: None,
            daemon_has_ipam: None,
        }
    }

    /// The cluster recorded in `state_dir`, if any.
    pub fn open(state_dir: &std::path::Path) -> Result<Option<Cluster>> {
        Ok(State::load(state_dir)?.map(Cluster::with_state))
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.state.spec
    }

    /// etcd, read from the root namespace (connected on first use).
    pub fn observer(&mut self) -> Result<&mut Observer> {
        if self.observer.is_none() {
            self.observer = Some(Observer::new(self.spec().local_endpoint())?);
        }
        self.observer
            .as_mut()
            .ok_or_else(|| Error::Refused("no etcd observer".into()))
    }

    /// Indexes of the hosts whose route-daemon runs.
    pub fn running_hosts(&self) -> Vec<usize> {
        (0..self.state.hosts)
            .filter(|&i| {
                self.state
                    .process(&self.spec().host(i))
                    .is_some_and(process::is_alive)
            })
            .collect()
    }

    /// The recorded processes and whether each still runs, for `status`.
    pub fn processes(&self) -> Vec<(String, u32, bool)> {
        self.state
            .processes
            .iter()
            .map(|p| (p.role.clone(), p.pid, process::is_alive(p)))
            .collect()
    }

    /// The last lines of every log, for a failing test's output.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for p in &self.state.processes {
            out.push_str(&format!(
                "--- {} ({}) ---\n{}\n",
                p.role,
                p.log.display(),
                process::tail(&p.log, lines)
            ));
        }
        out
    }
}
