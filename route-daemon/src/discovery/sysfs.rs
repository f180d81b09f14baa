//! What the kernel tells about a NIC's hardware only through sysfs: speed, NUMA
//! node, PCI identity and driver. Virtual NICs lack most of these files, and a
//! down link refuses to report its speed, so every read may come back empty; that
//! is a fact about the NIC, not an error.

use std::path::{Path, PathBuf};

pub use railyard_core::align::parse_numa_node;
use railyard_core::align::{is_pci_address, pcie_root_of};

/// Reads files below `/sys/class/net/<ifname>/`. A trait so discovery can be
/// tested against a made-up NIC.
pub trait Sysfs: Send + Sync {
    /// The trimmed content of `<ifname>/<attr>`, or `None` when it cannot be read.
    fn read(&self, ifname: &str, attr: &str) -> Option<String>;
    /// Where the symlink `<ifname>/<attr>` points, or `None`.
    fn link_target(&self, ifname: &str, attr: &str) -> Option<PathBuf>;
    /// `<ifname>/<attr>` with every symlink resolved (the device's place in
    /// `/sys/devices`, which names its PCIe root complex), or `None`.
    fn canonical(&self, ifname: &str, attr: &str) -> Option<PathBuf>;
}

/// The real sysfs (or a copy of its layout in a test directory).
#[derive(Debug, Clone)]
pub struct SysfsDir {
    root: PathBuf,
}

impl SysfsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysfsDir { root: root.into() }
    }
}

impl Default for SysfsDir {
    fn default() -> Self {
        SysfsDir::new("/sys/class/net")
    }
}

impl Sysfs for SysfsDir {
    fn read(&self, ifname: &str, attr: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join(ifname).join(attr)).ok()?;
        Some(text.trim().to_owned())
    }

    fn link_target(&self, ifname: &str, attr: &str) -> Option<PathBuf> {
        std::fs::read_link(self.root.join(ifname).join(attr)).ok()
    }

    fn canonical(&self, ifname: &str, attr: &str) -> Option<PathBuf> {
        std::fs::canonicalize(self.root.join(ifname).join(attr)).ok()
    }
}

/// The hardware facts of one NIC; each is `None` when sysfs does not know it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hardware {
    pub speed_mbps: Option<u32>,
    pub numa_node: Option<i32>,
    pub pci_address: Option<String>,
    pub pcie_root: Option<String>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub driver: Option<String>,
}

pub fn hardware(sysfs: &dyn Sysfs, ifname: &str) -> Hardware {
    Hardware {
        speed_mbps: sysfs.read(ifname, "speed").as_deref().and_then(parse_speed),
        numa_node: sysfs
            .read(ifname, "device/numa_node")
            .as_deref()
            .and_then(parse_numa_node),
        pci_address: sysfs
            .link_target(ifname, "device")
            .as_deref()
            .and_then(parse_pci_address),
        pcie_root: sysfs
            .canonical(ifname, "device")
            .as_deref()
            .and_then(pcie_root_of),
        vendor: sysfs
            .read(ifname, "device/vendor")
            .as_deref()
            .and_then(parse_pci_id),
        product: sysfs
            .read(ifname, "device/device")
            .as_deref()
            .and_then(parse_pci_id),
        driver: sysfs
            .link_target(ifname, "device/driver")
            .as_deref()
            .and_then(basename),
    }
}

/// `speed` is Mbit/s; drivers say -1 (or its u32 wrap) when the link has no
/// negotiated speed, which means "unknown", not a very fast link.
pub fn parse_speed(text: &str) -> Option<u32> {
    let v: i64 = text.trim().parse().ok()?;
    if v <= 0 || v >= i64::from(u32::MAX) {
        None
    } else {
        u32::try_from(v).ok()
    }
}

/// PCI vendor and device ids as sysfs writes them (`0x15b3`), returned as the
/// four lowercase hex digits `lspci -n` shows (`15b3`).
pub fn parse_pci_id(text: &str) -> Option<String> {
    let t = text.trim();
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    (!hex.is_empty() && hex.len() <= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("{:0>4}", hex.to_ascii_lowercase()))
}

/// The PCI address is the last component of the `device` symlink
/// (`../../../0000:3b:00.0`). Non-PCI parents (virtio, vmbus, platform devices)
/// have other names there; they get no PCI address rather than a wrong one.
pub fn parse_pci_address(target: &Path) -> Option<String> {
    let name = basename(target)?;
    is_pci_address(&name).then_some(name)
}

fn basename(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn speed_unknown_values_are_none() {
        assert_eq!(parse_speed("100000\n"), Some(100_000));
        assert_eq!(parse_speed("-1"), None);
        assert_eq!(parse_speed("4294967295"), None);
        assert_eq!(parse_speed("0"), None);
        assert_eq!(parse_speed("fast"), None);
    }

    #[test]
    fn numa_minus_one_is_none() {
        assert_eq!(parse_numa_node("1\n"), Some(1));
        assert_eq!(parse_numa_node("-1"), None);
        assert_eq!(parse_numa_node(""), None);
    }

    #[test]
    fn pci_ids_are_normalised() {
        assert_eq!(parse_pci_id("0x15b3\n").as_deref(), Some("15b3"));
        assert_eq!(parse_pci_id("0x1AF4").as_deref(), Some("1af4"));
        assert_eq!(parse_pci_id("0x8").as_deref(), Some("0008"));
        assert_eq!(parse_pci_id("0x"), None);
        assert_eq!(parse_pci_id("0x12345"), None);
        assert_eq!(parse_pci_id("zz"), None);
    }

    #[test]
    fn pci_address_only_from_pci_parents() {
        let pci = Path::new("../../../0000:3b:00.0");
        assert_eq!(parse_pci_address(pci).as_deref(), Some("0000:3b:00.0"));
        assert_eq!(parse_pci_address(Path::new("../../../virtio3")), None);
        assert_eq!(parse_pci_address(Path::new("../../0000:3b:00.9")), None);
        assert_eq!(parse_pci_address(Path::new("")), None);
    }

    /// A NIC made of a map: path -> content; symlinks are entries starting with '@'.
    struct FakeSysfs(HashMap<&'static str, &'static str>);

    impl Sysfs for FakeSysfs {
        fn read(&self, ifname: &str, attr: &str) -> Option<String> {
            let v = self.0.get(format!("{ifname}/{attr}").as_str())?;
            (!v.starts_with('@')).then(|| v.trim().to_owned())
        }
        fn link_target(&self, ifname: &str, attr: &str) -> Option<PathBuf> {
            let v = self.0.get(format!("{ifname}/{attr}").as_str())?;
            v.strip_prefix('@').map(PathBuf::from)
        }
        fn canonical(&self, ifname: &str, attr: &str) -> Option<PathBuf> {
            let v = self.0.get(format!("{ifname}/{attr}=").as_str())?;
            Some(PathBuf::from(v))
        }
    }

    #[test]
    fn hardware_of_physical_and_virtual_nics() {
        let sysfs = FakeSysfs(HashMap::from([
            ("ens1/speed", "200000\n"),
            ("ens1/device", "@../../../0000:3b:00.0"),
            (
                "ens1/device=",
                "/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0",
            ),
            ("ens1/device/numa_node", "1\n"),
            ("ens1/device/vendor", "0x15b3\n"),
            ("ens1/device/device", "0x101b\n"),
            (
                "ens1/device/driver",
                "@../../../../bus/pci/drivers/mlx5_core",
            ),
            ("veth0/speed", "10000"),
        ]));
        assert_eq!(
            hardware(&sysfs, "ens1"),
            Hardware {
                speed_mbps: Some(200_000),
                numa_node: Some(1),
                pci_address: Some("0000:3b:00.0".into()),
                pcie_root: Some("pci0000:3a".into()),
                vendor: Some("15b3".into()),
                product: Some("101b".into()),
                driver: Some("mlx5_core".into()),
            }
        );
        assert_eq!(
            hardware(&sysfs, "veth0"),
            Hardware {
                speed_mbps: Some(10_000),
                ..Hardware::default()
            }
        );
        assert_eq!(hardware(&sysfs, "missing"), Hardware::default());
    }

    #[test]
    fn sysfs_dir_tolerates_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nic = dir.path().join("eth9");
        std::fs::create_dir_all(&nic).expect("mkdir");
        std::fs::write(nic.join("speed"), "25000\n").expect("write");
        let sysfs = SysfsDir::new(dir.path());
        assert_eq!(
            hardware(&sysfs, "eth9"),
            Hardware {
                speed_mbps: Some(25_000),
                ..Hardware::default()
            }
        );
    }
}
