//! Starting and stopping the cluster's processes one by one: what `up` does in
//! bulk, and what the tests do to one of them (crash a daemon, kill the leading
//! planner, stop etcd).

use std::process::Command;
use std::time::Duration;

use super::process::{self, ProcRecord};
use super::{etcd, Cluster};
use crate::error::Result;

/// How long a SIGTERM'd process gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Cluster {
    pub(super) fn launch(
        &mut self,
        role: &str,
        argv: Vec<String>,
        env: &[(&str, String)],
    ) -> Result<()> {
        let log = self.spec().log(role);
        // Written before the spawn would be better still, but the pid is only
        // known after; a crash in between leaves one process for the user to see.
        let (record, child) = process::spawn(role, &argv, env, &log)?;
        self.children.insert(role.to_owned(), child);
        self.state.set_process(record);
        self.state.save()
    }

    fn record(&self, role: &str) -> Option<ProcRecord> {
        self.state.process(role).cloned()
    }

    /// SIGTERM, then SIGKILL after a grace period.
    pub(super) fn stop_role(&mut self, role: &str) {
        if let Some(r) = self.record(role) {
            process::stop(&r, self.children.get_mut(role), STOP_GRACE);
            self.children.remove(role);
        }
    }

    /// SIGKILL: a crash.
    pub(super) fn crash_role(&mut self, role: &str) {
        if let Some(r) = self.record(role) {
            process::crash(&r, self.children.get_mut(role));
            self.children.remove(role);
        }
    }

    /// Starts etcd (again: data and ports are kept) and waits until it is healthy.
    pub fn start_etcd(&mut self) -> Result<()> {
        if self.spec().etcd_members > 1 {
            return self.start_etcd_members();
        }
        let argv = etcd::argv(self.spec());
        self.launch("etcd", argv, &[])?;
        let log = self.spec().log("etcd");
        etcd::wait_healthy(self.spec(), Duration::from_secs(20), &log)
    }

    /// Kills etcd abruptly, as a crash or a power cut would.
    pub fn stop_etcd(&mut self) {
        if self.spec().etcd_members > 1 {
            for m in 0..self.spec().etcd_members {
                self.kill_etcd_member(m);
            }
        } else {
            self.crash_role("etcd");
        }
        // The observer's connection went with it; a fresh one after the restart.
        self.observer = None;
    }

    pub fn planner_role(n: usize) -> String {
        format!("planner-{n}")
    }

    /// Planner `n`: metrics off (several run side by side), the spec's grace,
    /// NIC grace and lease TTL (a short TTL makes failover quick).
    pub fn start_planner(&mut self, n: usize) -> Result<()> {
        let spec = self.spec().clone();
        let role = Cluster::planner_role(n);
        let mut argv = vec![
            spec.bin_dir.join("railyard-planner").display().to_string(),
            format!("--etcd-endpoints={}", spec.local_endpoint()),
            format!("--identity={}{role}", spec.prefix),
            format!("--lease-ttl={}", spec.lease_ttl),
            format!("--grace={}", spec.grace),
            "--metrics-addr=off".into(),
            "--kubernetes=off".into(),
        ];
        if let Some(nic_grace) = &spec.nic_grace {
            argv.push(format!("--nic-grace={nic_grace}"));
        }
        self.launch(&role, argv, &log_env())
    }

    pub fn kill_planner(&mut self, n: usize) {
        self.crash_role(&Cluster::planner_role(n));
    }

    /// Host `i`'s route-daemon, inside the host's namespace as a DaemonSet pod
    /// with host networking would run. Only `rail*` NICs are rails (`mgmt0` is
    /// the management link).
    pub fn start_daemon(&mut self, i: usize) -> Result<()> {
        let spec = self.spec().clone();
        let host = spec.host(i);
        let bin = spec.bin_dir.join("railyard-route-daemon");
        let mut argv = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            host.clone(),
            bin.display().to_string(),
            format!("--node-name={host}"),
            format!("--etcd-endpoints={}", spec.mgmt_endpoint()),
            "--include=rail*".into(),
            format!("--lease-ttl={}", spec.lease_ttl),
            "--metrics-addr=off".into(),
        ];
        if self.daemon_has_ipam() {
            self.mount_state_tmpfs(i)?;
            argv.push(format!("--ipam-socket={}", spec.socket(i).display()));
            argv.push(format!("--state-dir={}", spec.daemon_state(i).display()));
        }
        if spec.routed {
            // The BIRD beside the daemon, whose configuration it writes.
            self.start_host_bird(i)?;
            let (config, socket) = spec.bird_files(&host);
            argv.push(format!("--bird-config={}", config.display()));
            argv.push(format!("--bird-socket={}", socket.display()));
        }
        if let Some(kubeconfig) = &spec.kubeconfig {
            super::forward::api_into(&host, kubeconfig)?;
            argv.push(format!("--kubeconfig={}", kubeconfig.display()));
            argv.push("--leak-grace=2s".into());
            argv.push("--leak-sweep-every=1s".into());
        }
        self.launch(&host, argv, &log_env())
    }

    /// SIGTERM: the daemon stops cleanly, leaving routes and allocations.
    pub fn stop_daemon(&mut self, i: usize) {
        let role = self.spec().host(i);
        self.stop_role(&role);
    }

    /// SIGKILL mid-run.
    pub fn crash_daemon(&mut self, i: usize) {
        let role = self.spec().host(i);
        self.crash_role(&role);
    }

    /// Whether the daemon binary has the IPAM server's flags. Until it does the
    /// cluster still runs (topology, plan, routes), but pods cannot attach.
    pub fn daemon_has_ipam(&mut self) -> bool {
        if let Some(has) = self.daemon_has_ipam {
            return has;
        }
        let bin = self.spec().bin_dir.join("railyard-route-daemon");
        let has = Command::new(bin)
            .arg("--help")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("--ipam-socket"))
            .unwrap_or(false);
        self.daemon_has_ipam = Some(has);
        has
    }
}

/// The services' logging: `RUST_LOG` if set, else info; no colour codes in
/// the log files.
pub(super) fn log_env() -> [(&'static str, String); 2] {
    [
        (
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ),
        ("NO_COLOR", "1".into()),
    ]
}
