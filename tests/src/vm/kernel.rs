//! The full kernel the VM boots: Debian's `linux-image-amd64` (installed by
//! `make deps`), whose modules include what this machine's kernel lacks
//! (ipvlan, 8021q, bonding, vrf, dummy).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The modules that mount the host's root over virtio-9p, loaded from the
/// initramfs in dependency order before anything else can be read.
const BOOT_MODULES: [&str; 3] = ["virtio_pci", "9pnet_virtio", "9p"];

/// What the tests need of the full kernel, loaded inside once the root is up.
pub const NET_MODULES: [&str; 9] = [
    "ipvlan", "macvlan", "8021q", "bonding", "vrf", "dummy", "veth", "bridge", "tun",
];

#[derive(Debug, Clone)]
pub struct Kernel {
    pub release: String,
    pub image: PathBuf,
}

impl Kernel {
    /// `$RAILYARD_VM_KERNEL` (a release such as `6.1.0-57-amd64`), else the
    /// newest `/boot/vmlinuz-*` whose modules include ipvlan.
    pub fn find() -> Result<Kernel> {
        if let Ok(release) = std::env::var("RAILYARD_VM_KERNEL") {
            return Kernel::at(&release);
        }
        let mut releases: Vec<String> = std::fs::read_dir("/boot")
            .map_err(|e| missing(format!("cannot list /boot: {e}")))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("vmlinuz-"))
                    .map(str::to_owned)
            })
            .filter(|r| modules_dir(r).join("kernel/drivers/net/ipvlan").is_dir())
            .collect();
        releases.sort_by_key(|r| version_key(r));
        let release = releases
            .pop()
            .ok_or_else(|| missing("no kernel with ipvlan in /boot and /lib/modules".to_owned()))?;
        Kernel::at(&release)
    }

    fn at(release: &str) -> Result<Kernel> {
        let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
        if !image.is_file() || !modules_dir(release).is_dir() {
            return Err(missing(format!(
                "kernel {release}: {} or {} is missing",
                image.display(),
                modules_dir(release).display()
            )));
        }
        Ok(Kernel {
            release: release.to_owned(),
            image,
        })
    }

    /// The `.ko` files to insmod in the initramfs, dependencies first, as
    /// `modprobe --show-depends` orders them.
    pub fn boot_modules(&self) -> Result<Vec<PathBuf>> {
        let mut order: Vec<PathBuf> = Vec::new();
        for m in BOOT_MODULES {
            let out = Command::new("modprobe")
                .args(["-S", &self.release, "--show-depends", m])
                .output()
                .map_err(|e| missing(format!("cannot run modprobe (kmod): {e}")))?;
            if !out.status.success() {
                return Err(missing(format!(
                    "modprobe --show-depends {m} for {}: {}",
                    self.release,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                // "insmod /lib/modules/<r>/kernel/....ko [params]"; built-in ones
                // print "builtin <name>" and need nothing.
                if let Some(path) = line.strip_prefix("insmod ") {
                    let path = PathBuf::from(path.split_whitespace().next().unwrap_or(""));
                    if !order.contains(&path) {
                        order.push(path);
                    }
                }
            }
        }
        Ok(order)
    }
}

fn modules_dir(release: &str) -> PathBuf {
    Path::new("/lib/modules").join(release)
}

/// `6.1.0-57-amd64` -> [6, 1, 0, 57]: numeric parts in order, for sorting.
fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn missing(what: String) -> Error {
    Error::Missing(format!(
        "{what} (run `make deps`, which installs linux-image-amd64)"
    ))
}

#[cfg(test)]
mod tests {
    use super::version_key;

    #[test]
    fn releases_sort_numerically() {
        assert!(version_key("6.1.0-57-amd64") > version_key("6.1.0-9-amd64"));
        assert!(version_key("6.10.0-1-amd64") > version_key("6.9.0-1-amd64"));
    }
}
