//! Named network namespaces for tests: each test gets a private kernel network
//! stack (`ry-t-<pid>-<n>[-<role>]`), deleted on drop, also while a failing
//! test unwinds; namespaces left by killed runs are removed by the next one.
//! Needs root and iproute2.
//!
//! A namespace is entered per thread (`setns` affects only the calling thread),
//! so work inside one runs on a dedicated thread with its own current-thread
//! runtime, and every socket it opens belongs to that namespace.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use serde_json::Value;

/// Prefix of the namespaces [`NamedNetns::private`] makes.
const PRIVATE_PREFIX: &str = "ry-t-";

/// Something about a namespace failed; `reason` carries ip's or the kernel's
/// own message.
#[derive(Debug, thiserror::Error)]
#[error("network namespace {name}: {reason}")]
pub struct NetnsError {
    pub name: String,
    pub reason: String,
}

/// A namespace made with `ip netns add`, deleted when dropped.
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl NamedNetns {
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        run_ip(&["netns", "add", name]).map_err(|reason| NetnsError {
            name: name.to_owned(),
            reason,
        })?;
        Ok(NamedNetns {
            name: name.to_owned(),
        })
    }

    /// A fresh namespace for one test, `lo` up; `role` (may be empty) makes the
    /// name readable in `ip netns list`. Namespaces of earlier runs whose
    /// process is gone are removed first, so interrupted runs do not pile them
    /// up. Panics with ip's message on failure (call [`crate::require_root`]
    /// first for the clearer one).
    pub fn private(role: &str) -> NamedNetns {
        remove_stale();
        let mut name = format!(
            "{PRIVATE_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if !role.is_empty() {
            name = format!("{name}-{role}");
        }
        let ns = NamedNetns::create(&name).unwrap_or_else(|e| panic!("{e}"));
        ns.ip_ok(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `ip -n <name> <args>`; the error carries ip's own message.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ip(&full).map_err(|reason| NetnsError {
            name: self.name.clone(),
            reason,
        })
    }

    /// [`Self::ip`], panicking with ip's message.
    pub fn ip_ok(&self, args: &[&str]) -> String {
        self.ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `f` inside the namespace, with `/sys` showing the namespace's own
    /// interfaces. See [`run_in_netns`].
    pub fn run<F, Fut, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        run_in_netns(&self.path(), true, f)
    }

    /// Interface name -> its IPv4 addresses with prefix (`10.0.0.1/24`), for
    /// every interface.
    pub fn addrs(&self) -> BTreeMap<String, Vec<String>> {
        let mut map = BTreeMap::new();
        let v = self.ip_json(&["-j", "addr"]);
        for link in v.as_array().into_iter().flatten() {
            let name = link["ifname"].as_str().unwrap_or_default().to_owned();
            let addrs = link["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["family"] == "inet")
                .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
                .collect();
            map.insert(name, addrs);
        }
        map
    }

    /// Interface names, `lo` excluded.
    pub fn links(&self) -> Vec<String> {
        self.addrs().into_keys().filter(|n| n != "lo").collect()
    }

    /// `dst via gw dev` of every IPv4 route with a gateway (main table).
    pub fn gateway_routes(&self) -> Vec<String> {
        let v = self.ip_json(&["-j", "route"]);
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some(format!(
                    "{} via {} dev {}",
                    r["dst"].as_str()?,
                    r["gateway"].as_str()?,
                    r["dev"].as_str()?
                ))
            })
            .collect()
    }

    fn ip_json(&self, args: &[&str]) -> Value {
        let text = self.ip_ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("ip {args:?} in {} printed no JSON ({e}): {text}", self.name)
        })
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        if let Err(e) = run_ip(&["netns", "del", &self.name]) {
            eprintln!("could not delete network namespace {}: {e}", self.name);
        }
    }
}

/// Removes the namespaces [`NamedNetns::private`] made in processes that are gone.
pub fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PRIVATE_PREFIX)
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = run_ip(&["netns", "del", &name]);
        }
    }
}

/// Runs `ip` with `args` (in the current namespace), panicking with its stderr.
pub fn ip(args: &[&str]) -> String {
    run_ip(args).unwrap_or_else(|e| panic!("{e}"))
}

/// iproute2's `ip`: `/usr/sbin/ip` when there (a test's PATH may lack sbin).
pub fn ip_binary() -> &'static str {
    if Path::new("/usr/sbin/ip").exists() {
        "/usr/sbin/ip"
    } else {
        "ip"
    }
}

fn run_ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new(ip_binary())
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
pub fn run_in_netns<F, Fut, T>(netns: &Path, fresh_sysfs: bool, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = netns.to_owned();
    let name = path.display().to_string();
    let thread = std::thread::Builder::new()
        .name(format!("netns {name}"))
        .spawn(move || -> Result<T, NetnsError> {
            enter(&path, fresh_sysfs)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| NetnsError {
                    name: path.display().to_string(),
                    reason: format!("tokio runtime: {e}"),
                })?;
            Ok(runtime.block_on(f()))
        })
        .map_err(|e| NetnsError {
            name: name.clone(),
            reason: format!("spawn thread: {e}"),
        })?;
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn enter(path: &Path, fresh_sysfs: bool) -> Result<(), NetnsError> {
    let fail = |what: &str, e: nix::Error| NetnsError {
        name: path.display().to_string(),
        reason: format!("{what}: {e}"),
    };
    let file = File::open(path).map_err(|e| NetnsError {
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
        let _ = umount2("/sys", MntFlags::MNT_DETACH);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_namespace_runs_ip_and_is_gone_after_drop() {
        let ns = NamedNetns::private("self");
        assert!(ns.path().exists());
        assert!(ns.name().starts_with(PRIVATE_PREFIX) && ns.name().ends_with("-self"));
        assert!(ns.links().is_empty(), "only lo: {:?}", ns.links());
        ns.ip_ok(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
        ns.ip_ok(&["addr", "add", "10.9.0.1/24", "dev", "d0"]);
        assert_eq!(ns.addrs()["d0"], ["10.9.0.1/24"]);
        let err = ns.ip(&["link", "del", "nope"]).expect_err("no such link");
        assert!(err.to_string().contains("nope"), "{err}");
        let inside = ns
            .run(|| async { std::fs::read_dir("/sys/class/net").map(|d| d.count()) })
            .expect("entered")
            .expect("sysfs");
        assert_eq!(inside, 3, "lo, d0 and d1");
        let path = ns.path();
        drop(ns);
        assert!(!path.exists());
    }
}
