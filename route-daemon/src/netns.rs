//! Running netlink work inside a named network namespace. The daemon's tests and
//! benchmark use it to get a private kernel network stack each; the local netns
//! cluster can run one daemon per "host" the same way. Needs root and iproute2.
//!
//! A namespace is entered per thread (`setns` affects only the calling thread),
//! so the work runs on a dedicated thread with its own current-thread runtime,
//! and every socket it opens belongs to that namespace.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// A namespace made with `ip netns add`, deleted when dropped (also while a
/// failing test unwinds).
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
}

impl NamedNetns {
    pub fn create(name: &str) -> Result<Self> {
        run_ip(&["netns", "add", name]).map_err(|reason| Error::Netns {
            name: name.to_owned(),
            reason,
        })?;
        Ok(NamedNetns {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `ip -n <name> <args>`; the error carries ip's own message.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ip(&full).map_err(|reason| Error::Netns {
            name: self.name.clone(),
            reason,
        })
    }

    /// Runs `f` inside the namespace, with `/sys` showing the namespace's own
    /// interfaces. See [`run_in_netns`].
    pub fn run<F, Fut, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        run_in_netns(&self.path(), true, f)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        if let Err(e) = run_ip(&["netns", "del", &self.name]) {
            tracing::warn!(netns = %self.name, error = %e, "could not delete network namespace");
        }
    }
}

fn run_ip(args: &[&str]) -> std::result::Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `f` on a new thread that has entered the network namespace at `netns`,
/// on a current-thread tokio runtime, and waits for it. A panic in `f` is
/// re-raised here, so test assertions inside work as usual.
///
/// With `fresh_sysfs`, the thread also gets a private mount namespace with a
/// sysfs mounted for the entered namespace (what `ip netns exec` does), so
/// `/sys/class/net` lists that namespace's interfaces. The mount never
/// propagates to the host: the private namespace is made a slave first.
pub fn run_in_netns<F, Fut, T>(netns: &Path, fresh_sysfs: bool, f: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = netns.to_owned();
    let name = path.display().to_string();
    let thread = std::thread::Builder::new()
        .name(format!("netns {name}"))
        .spawn(move || -> Result<T> {
            enter(&path, fresh_sysfs)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Netns {
                    name: path.display().to_string(),
                    reason: format!("tokio runtime: {e}"),
                })?;
            Ok(runtime.block_on(f()))
        })
        .map_err(|e| Error::Netns {
            name: name.clone(),
            reason: format!("spawn thread: {e}"),
        })?;
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn enter(path: &Path, fresh_sysfs: bool) -> Result<()> {
    let fail = |what: &str, e: nix::Error| Error::Netns {
        name: path.display().to_string(),
        reason: format!("{what}: {e}"),
    };
    let file = File::open(path).map_err(|e| Error::Netns {
        name: path.display().to_string(),
        reason: format!("open: {e}"),
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| fail("setns", e))?;
    if fresh_sysfs {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| fail("unshare mount namespace", e))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| fail("make mounts slave", e))?;
        // Nothing to detach when /sys is not mounted (minimal containers).
        if let Err(e) = umount2("/sys", MntFlags::MNT_DETACH) {
            tracing::debug!(error = %e, "no /sys to detach");
        }
        mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| fail("mount sysfs", e))?;
    }
    Ok(())
}
