//! `up` and `down`: the order things are made in, and undone in.

use std::path::Path;
use std::time::{Duration, Instant};

use super::cmd::{self, ip_batch};
use super::process;
use super::state::State;
use super::topology;
use super::{Cluster, ClusterSpec};
use crate::bins;
use crate::error::{Error, Result};

/// Files and directories `up` makes inside the state dir; `down` removes these
/// and then the dir only if it is empty, so a mistyped `--state /` is harmless.
const STATE_ENTRIES: [&str; 5] = ["logs", "etcd", "cni", "network.json", "cluster.json.tmp"];

impl Cluster {
    /// Makes the cluster of `spec`: topology, etcd, planner(s), the network,
    /// daemons (waiting for every host's routes) and `spec.pods` pods per host.
    /// `progress` hears one line per step.
    ///
    /// A cluster already running from the same state dir is refused; leftovers of
    /// one that is not running (a crash, a killed test) are removed first.
    pub fn up(spec: ClusterSpec, progress: &mut dyn FnMut(&str)) -> Result<Cluster> {
        preflight(&spec)?;
        if let Some(mut old) = Cluster::open(&spec.state_dir)? {
            let alive: Vec<String> = old
                .processes()
                .into_iter()
                .filter(|(_, _, alive)| *alive)
                .map(|(role, pid, _)| format!("{role} (pid {pid})"))
                .collect();
            if !alive.is_empty() {
                return Err(Error::AlreadyRunning(format!(
                    "a local cluster is already running from {}: {}. \
                     `railyard-local down` (or `make demo-down`) removes it",
                    spec.state_dir.display(),
                    alive.join(", ")
                )));
            }
            progress("removing the leftovers of a cluster that is not running");
            let problems = old.down();
            if !problems.is_empty() {
                return Err(Error::Refused(format!(
                    "could not remove the previous cluster: {}",
                    problems.join("; ")
                )));
            }
        }
        let mut c = Cluster::with_state(State::new(spec));
        c.state.save()?;
        let started = Instant::now();
        let step = |what: &str, progress: &mut dyn FnMut(&str)| {
            progress(&format!(
                "{what} ({:.1} s)",
                started.elapsed().as_secs_f64()
            ));
        };
        c.make_topology()?;
        if c.spec().routed {
            c.start_leaves()?;
        }
        step("namespaces, bridges and NICs made", progress);
        c.start_etcd()?;
        step("etcd ready", progress);
        c.apply_network()?;
        for i in 0..c.spec().hosts {
            c.start_daemon(i)?;
        }
        let all: Vec<usize> = (0..c.spec().hosts).collect();
        // The planner starts once every host is registered: its first plan then
        // numbers hosts in name order, so host-i owns block i in the demo.
        c.wait_registered(&all, Duration::from_secs(30))?;
        for n in 0..c.spec().planners {
            c.start_planner(n)?;
        }
        step(
            "network applied, daemons registered, planner running",
            progress,
        );
        let timeout = Duration::from_secs(30 + c.spec().hosts as u64);
        c.wait_converged(&all, timeout)?;
        if c.spec().routed {
            // Pods reach each other once the leaves learned every block.
            c.wait_leaves(&all, &[], timeout)?;
        }
        c.prepare_hosts(&all)?;
        step("every host has its routes", progress);
        if c.spec().pods > 0 {
            let jobs: Vec<(usize, usize)> = all
                .iter()
                .flat_map(|&i| (0..c.spec().pods).map(move |k| (i, k)))
                .collect();
            let count = jobs.len();
            c.attach_pods(&jobs, c.spec().parallel)?;
            c.wait_mirrored(Duration::from_secs(30))?;
            step(&format!("{count} pods attached"), progress);
        }
        Ok(c)
    }

    fn make_topology(&mut self) -> Result<()> {
        let spec = self.spec().clone();
        topology::make_mgmt(&mut self.state)?;
        topology::make_fabric(&mut self.state)?;
        for i in 0..spec.hosts {
            topology::make_host(&mut self.state, i)?;
        }
        self.state.save()
    }

    /// `railyard apply` of the spec's network, as a user would.
    fn apply_network(&mut self) -> Result<()> {
        let spec = self.spec().clone();
        let file = spec.state_dir.join("network.json");
        let text = serde_json::to_vec_pretty(&spec.manifest())
            .map_err(|e| Error::Refused(format!("cannot encode the network: {e}")))?;
        std::fs::write(&file, text).map_err(|e| Error::io("write the network", &file, e))?;
        cmd::run(
            std::process::Command::new(spec.bin_dir.join("railyard"))
                .arg("apply")
                .arg("-f")
                .arg(&file)
                .arg("--etcd-endpoints")
                .arg(spec.local_endpoint()),
            None,
        )
        .map(|_| ())
    }

    /// Adds host `state.hosts` (a host joining) and starts its daemon; returns
    /// its index. Wait for routes with `wait_converged`.
    pub fn add_host(&mut self) -> Result<usize> {
        let i = self.state.hosts;
        if i >= self.spec().max_hosts() {
            return Err(Error::Refused(format!(
                "no room for host {i}: the layout holds {}",
                self.spec().max_hosts()
            )));
        }
        topology::make_host(&mut self.state, i)?;
        if self.spec().routed {
            self.configure_leaves()?;
        }
        self.start_daemon(i)?;
        Ok(i)
    }

    /// Host `i` leaves: its daemon stops (its routes stay on the host, as after a
    /// crash) and its registration lease is revoked, so the planner sees it gone
    /// now rather than after the lease TTL.
    pub fn leave(&mut self, i: usize) -> Result<()> {
        self.stop_daemon(i);
        // On a routed fabric the host's BIRD goes with it: its sessions close
        // and the leaves withdraw its blocks.
        if self.spec().routed {
            self.stop_host_bird(i);
        }
        let host = self.spec().host(i);
        self.observer()?.revoke_registration(&host)?;
        Ok(())
    }

    /// Per-host set-up once the host is planned: a wait for CNI STATUS to
    /// report the network ready. (Macvlan pods' gateway shims are the
    /// route-daemon's own, made from the plan: nothing to do here.)
    pub fn prepare_hosts(&mut self, hosts: &[usize]) -> Result<()> {
        if self.daemon_has_ipam() {
            for &i in hosts {
                super::pods::wait_ready(self.spec(), i, Duration::from_secs(30))?;
            }
        }
        Ok(())
    }

    /// Removes everything the state file lists: processes, namespaces, links,
    /// directories. Best effort: returns what could not be removed (and then
    /// keeps the state file, so `down` can be run again).
    pub fn down(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        // Every process is asked first, then all are waited for together.
        for p in &self.state.processes {
            process::signal(p, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for p in self.state.processes.clone() {
            while process::is_alive(&p) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            process::stop(&p, self.children.get_mut(&p.role), Duration::ZERO);
            if process::is_alive(&p) {
                problems.push(format!("{} (pid {}) still runs", p.role, p.pid));
            }
        }
        self.children.clear();
        self.observer = None;
        let netns: Vec<String> = self
            .state
            .netns
            .iter()
            .rev()
            .filter(|n| cmd::netns_exists(n))
            .cloned()
            .collect();
        // One `ip` for all of them: a scale run leaves a thousand pod namespaces.
        let lines: Vec<String> = netns.iter().map(|n| format!("netns del {n}")).collect();
        if let Err(e) = ip_batch(None, &lines) {
            problems.push(e.to_string());
        }
        for link in self.state.links.iter().rev() {
            if let Err(e) = cmd::link_del(link) {
                problems.push(e.to_string());
            }
        }
        for dir in &self.state.dirs {
            remove(dir, &mut problems);
        }
        super::kernel_limits::restore(&self.state.sysctls, &mut problems);
        self.unmount_all(&mut problems);
        let spec = self.spec().clone();
        for i in 0..self.state.hosts {
            remove(&spec.daemon_state(i), &mut problems);
        }
        for entry in STATE_ENTRIES {
            remove(&spec.state_dir.join(entry), &mut problems);
        }
        if problems.is_empty() {
            remove(&spec.state_file(), &mut problems);
            // Only if empty: never delete what someone else keeps there.
            let _ = std::fs::remove_dir(&spec.state_dir);
        } else if let Err(e) = self.state.save() {
            problems.push(e.to_string());
        }
        problems
    }
}

/// What `up` needs, checked before anything is made.
fn preflight(spec: &ClusterSpec) -> Result<()> {
    spec.validate()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Refused(
            "needs root: it creates network namespaces, links and routes".into(),
        ));
    }
    bins::check_dir(&spec.bin_dir)?;
    bins::check_cni_dir(&spec.cni_dir)?;
    let etcd = super::etcd::argv(spec).remove(0);
    if !Path::new(&etcd).is_file() {
        return Err(Error::Missing(format!(
            "{etcd} not found: {}",
            super::etcd::MISSING_HINT
        )));
    }
    if !bins::on_path("ip") {
        return Err(Error::Missing(
            "ip not found on PATH (install iproute2)".into(),
        ));
    }
    Ok(())
}

fn remove(path: &Path, problems: &mut Vec<String>) {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("remove {}: {e}", path.display())),
    }
}
