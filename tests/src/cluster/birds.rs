//! The BIRDs of a routed fabric (`fabric.rs`): one per leaf, with the
//! harness's configuration, and one per host beside its route-daemon, whose
//! configuration the daemon writes (`--bird-config`, `--bird-socket`). A
//! host's BIRD runs under `railyard-bird-guard`, as in the Kubernetes
//! component: started once the daemon beats, stopped when it has been
//! silent for the planner's grace.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{fabric, process, Cluster};
use crate::error::{Error, Result};

/// Debian's bird2.
const BIRD: &str = "/usr/sbin/bird";
/// The guard a host's BIRD runs under, from the bin dir.
pub const GUARD: &str = "railyard-bird-guard";
const BIRDC: &str = "/usr/sbin/birdc";

impl Cluster {
    /// The role (process name in the state file) of a namespace's BIRD.
    pub fn bird_role(netns: &str) -> String {
        format!("bird-{netns}")
    }

    /// Starts a BIRD in `netns` from `text` (its file) and waits until it
    /// answers on its socket.
    fn start_bird(&mut self, netns: &str, text: &str) -> Result<()> {
        if !Path::new(BIRD).exists() {
            return Err(Error::Refused(format!(
                "a routed fabric needs BIRD 2 ({BIRD}): `make deps` installs bird2"
            )));
        }
        let (config, socket) = self.spec().bird_files(netns);
        if let Some(dir) = config.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("make", dir, e))?;
        }
        std::fs::write(&config, text).map_err(|e| Error::io("write", &config, e))?;
        let argv = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            netns.to_owned(),
            BIRD.into(),
            "-f".into(),
            "-c".into(),
            config.display().to_string(),
            "-s".into(),
            socket.display().to_string(),
        ];
        self.launch(&Cluster::bird_role(netns), argv, &[])?;
        let start = Instant::now();
        while !answers(&socket) {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(Error::Refused(format!(
                    "BIRD in {netns} does not answer on {}",
                    socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Every leaf's BIRD, with sessions for the hosts so far.
    pub fn start_leaves(&mut self) -> Result<()> {
        for j in 0..self.spec().rails {
            let leaf = self.spec().leaf(j);
            let text = self.leaf_text(j);
            self.start_bird(&leaf, &text)?;
        }
        Ok(())
    }

    fn leaf_text(&self, j: usize) -> String {
        let spec = self.spec();
        fabric::leaf_config(
            j,
            self.state.hosts,
            spec.family.has_v4(),
            spec.family.has_v6(),
        )
    }

    /// After a host joined: every leaf's configuration with its sessions,
    /// reloaded.
    pub fn configure_leaves(&mut self) -> Result<()> {
        for j in 0..self.spec().rails {
            let leaf = self.spec().leaf(j);
            let (config, socket) = self.spec().bird_files(&leaf);
            let text = self.leaf_text(j);
            std::fs::write(&config, text).map_err(|e| Error::io("write", &config, e))?;
            birdc(&socket, &["configure"])?;
        }
        Ok(())
    }

    /// Leaf `j` turns rogue: it announces `routes` (IPv4) to every host on
    /// top of what it learned (`fabric::offered`).
    pub fn offer_from_leaf(&mut self, j: usize, routes: &[String]) -> Result<()> {
        let leaf = self.spec().leaf(j);
        let (config, socket) = self.spec().bird_files(&leaf);
        let text = self.leaf_text(j) + &fabric::offered(routes);
        std::fs::write(&config, text).map_err(|e| Error::io("write", &config, e))?;
        birdc(&socket, &["configure"]).map(|_| ())
    }

    /// `birdc` on host `i`'s BIRD.
    pub fn host_birdc(&self, i: usize, args: &[&str]) -> Result<String> {
        let (_, socket) = self.spec().bird_files(&self.spec().host(i));
        birdc(&socket, args)
    }

    /// Leaf `j`'s BIRD killed and started again (a leaf restart).
    pub fn restart_leaf(&mut self, j: usize) -> Result<()> {
        let leaf = self.spec().leaf(j);
        self.crash_role(&Cluster::bird_role(&leaf));
        let text = self.leaf_text(j);
        self.start_bird(&leaf, &text)
    }

    /// Host `i`'s BIRD guard, unless it runs, with `--silent-after` the
    /// planner's grace. The guard starts BIRD once the daemon has written
    /// its configuration and beats (`route-daemon/src/bgp/guard`).
    pub(super) fn start_host_bird(&mut self, i: usize) -> Result<()> {
        let spec = self.spec().clone();
        let host = spec.host(i);
        let role = Cluster::bird_role(&host);
        if self.state.process(&role).is_some_and(process::is_alive) {
            return Ok(());
        }
        let guard = spec.bin_dir.join(GUARD);
        if !guard.exists() || !Path::new(BIRD).exists() {
            return Err(Error::Refused(format!(
                "a routed fabric needs {} (`cargo build --bins`) and BIRD 2 ({BIRD}, `make deps`)",
                guard.display()
            )));
        }
        let (config, socket) = spec.bird_files(&host);
        if let Some(dir) = config.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("make", dir, e))?;
        }
        let argv = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            host,
            guard.display().to_string(),
            format!("--bird-config={}", config.display()),
            format!("--bird-socket={}", socket.display()),
            format!("--silent-after={}", spec.grace),
            "--poll=200ms".into(),
        ];
        self.launch(&role, argv, &super::services::log_env())
    }

    /// Host `i`'s BIRD guard stopped, and with it BIRD (SIGTERM: it closes
    /// its sessions, so the leaves withdraw its blocks at once), as when the
    /// host goes away.
    pub fn stop_host_bird(&mut self, i: usize) {
        let role = Cluster::bird_role(&self.spec().host(i));
        self.stop_role(&role);
    }

    /// The routes leaf `j` learned over BGP (`ip route show proto bird`).
    pub fn leaf_routes(&self, j: usize) -> Result<String> {
        super::cmd::ip_in(
            &self.spec().leaf(j),
            &["route", "show", "table", "all", "proto", "bird"],
        )
    }
}

impl Cluster {
    /// What leaf `j` should have learned: each of `hosts`' blocks on rail `j`
    /// (every family) via that host's end of its link, as `ip route` prints
    /// the start of it (`<block> via <host address>`).
    pub fn leaf_wants(&mut self, hosts: &[usize], j: usize) -> Result<Vec<String>> {
        let spec = self.spec().clone();
        let plan = self.observer()?.plan(&spec.network)?.unwrap_or_default();
        let mut want = Vec::new();
        for &i in hosts {
            let Some(h) = plan.hosts.get(&spec.host(i)) else {
                continue;
            };
            for b in h.blocks.iter().filter(|b| b.interface as usize == j) {
                want.push(format!("{} via {}", b.cidr, b.nic_address));
            }
        }
        Ok(want)
    }

    /// Waits until every leaf learned the blocks of `hosts` (BGP converged),
    /// and none of `gone`'s; returns how long that took.
    pub fn wait_leaves(
        &mut self,
        hosts: &[usize],
        gone: &[usize],
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        let rails = self.spec().rails;
        let mut wants = Vec::new();
        let mut unwanted = Vec::new();
        for j in 0..rails {
            wants.push(self.leaf_wants(hosts, j)?);
            unwanted.push(self.leaf_wants(gone, j)?);
        }
        loop {
            let mut missing = Vec::new();
            for j in 0..rails {
                let have = self.leaf_routes(j)?;
                let has = |w: &String| have.lines().any(|l| l.starts_with(&format!("{w} ")));
                missing.extend(
                    wants[j]
                        .iter()
                        .filter(|w| !has(w))
                        .map(|w| format!("leaf{j} lacks {w}")),
                );
                missing.extend(
                    unwanted[j]
                        .iter()
                        .filter(|w| has(w))
                        .map(|w| format!("leaf{j} still has {w}")),
                );
            }
            if missing.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(Error::Refused(format!(
                    "the leaves did not converge within {timeout:?}: {}",
                    missing.join("; ")
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn answers(socket: &Path) -> bool {
    birdc(socket, &["show", "status"]).is_ok()
}

fn birdc(socket: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(BIRDC)
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .map_err(|e| Error::io("run", Path::new(BIRDC), e))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Unable to connect") {
        return Err(Error::Refused(format!("birdc {args:?}: {text}")));
    }
    Ok(text)
}
