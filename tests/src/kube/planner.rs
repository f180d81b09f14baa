//! `railyard-planner --kubernetes` as a test runs it: the real binary, its own
//! etcd endpoint, a kubeconfig (normally the service-account one of
//! [`identity`](super::identity)), its log in a file the test can search.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use super::watchdog;
use crate::cluster::process::{self, ProcRecord};
use crate::error::Result;

#[derive(Debug)]
pub struct Planner {
    pub record: ProcRecord,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Planner {
    /// Starts `<bin_dir>/railyard-planner --kubernetes` against `etcd` with
    /// `kubeconfig`, logging at info (`RUST_LOG` overrides) to `log`. Stopped on
    /// drop, and by a watchdog if this process dies first.
    pub fn start(
        bin_dir: &Path,
        etcd: &str,
        kubeconfig: &Path,
        identity: &str,
        log: &Path,
    ) -> Result<Planner> {
        let argv = vec![
            bin_dir.join("railyard-planner").display().to_string(),
            "--kubernetes".into(),
            format!("--etcd-endpoints={etcd}"),
            format!("--identity={identity}"),
            "--metrics-addr=off".into(),
            // Short, so a restarted planner takes over quickly.
            "--lease-ttl=3".into(),
        ];
        let env = [
            ("KUBECONFIG", kubeconfig.display().to_string()),
            (
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            ),
            ("NO_COLOR", "1".into()),
        ];
        let (record, child) = process::spawn(identity, &argv, &env, log)?;
        let watchdog = watchdog::guard(record.pid, None);
        Ok(Planner {
            record,
            child: Some(child),
            watchdog,
        })
    }

    pub fn log_path(&self) -> PathBuf {
        self.record.log.clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.record.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn stop(&mut self) {
        process::stop(&self.record, self.child.as_mut(), Duration::from_secs(5));
        self.child = None;
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Planner {
    fn drop(&mut self) {
        self.stop();
    }
}
