//! GPU-aligned NIC choice: which of a host's NICs sit close to a pod's GPUs.
//!
//! GPUDirect RDMA moves data between a GPU and a NIC over PCIe. When both hang
//! off the same PCIe root complex the transfer never crosses the CPU's
//! interconnect; on the same NUMA node it crosses less of it. Published NCCL
//! measurements put an aligned NIC at about 1.6 to 2.2 times the bandwidth of a
//! misaligned one, so the topology policy ranks NICs by [`Alignment`] to the
//! pod's GPUs before anything else.
//!
//! The facts come from sysfs (a device's canonical path names its root complex,
//! `pci0000:3a`, and `numa_node` its node): the route-daemon reads them for its
//! NICs, railyard-cni for the GPUs the kubelet gave the pod. This module only
//! compares them, so the rule is the same on both sides and testable alone.

use std::fmt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

/// One GPU of the pod, as placed on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuPlace {
    /// The kubelet's device ID (a PCI address for most GPU device plugins).
    pub id: String,
    /// The PCIe root complex (`pci0000:3a`), when the ID is a PCI address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie_root: Option<String>,
    /// The NUMA node, from sysfs or from the kubelet's topology hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<i32>,
}

/// How close a NIC is to the pod's GPUs; smaller is closer, so it sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Alignment {
    /// Shares a PCIe root complex with one of the GPUs.
    PcieRoot,
    /// Shares a NUMA node with one of the GPUs.
    Numa,
    /// Neither (or the facts are unknown).
    Unaligned,
}

impl Alignment {
    /// The rule's name as reported in a pod's result.
    pub fn rule(self) -> &'static str {
        match self {
            Alignment::PcieRoot => "gpu-pcie-root",
            Alignment::Numa => "gpu-numa",
            Alignment::Unaligned => "gpu-unaligned",
        }
    }
}

impl fmt::Display for Alignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rule())
    }
}

/// How close a NIC with these facts is to any of `gpus`. An unknown fact never
/// matches: two NICs that both lack a root must not count as sharing one.
pub fn alignment(gpus: &[GpuPlace], pcie_root: Option<&str>, numa: Option<i32>) -> Alignment {
    let shares_root = pcie_root.is_some_and(|r| {
        gpus.iter()
            .any(|g| g.pcie_root.as_deref().is_some_and(|gr| gr == r))
    });
    if shares_root {
        return Alignment::PcieRoot;
    }
    if numa.is_some_and(|n| gpus.iter().any(|g| g.numa_node == Some(n))) {
        return Alignment::Numa;
    }
    Alignment::Unaligned
}

/// The PCIe root complex of a device from its canonical sysfs path
/// (`/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0`): the `pci<domain>:<bus>`
/// component, as Kubernetes' `resource.kubernetes.io/pcieRoot` attribute names
/// it. A device outside a PCI hierarchy (virtio-mmio, a platform device) has
/// none.
pub fn pcie_root_of(canonical: &Path) -> Option<String> {
    canonical.components().find_map(|c| match c {
        Component::Normal(s) => s.to_str().filter(|s| is_root_complex(s)).map(str::to_owned),
        _ => None,
    })
}

/// `pci` then `dddd:bb` in hex.
fn is_root_complex(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("pci") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 7
        && b[4] == b':'
        && b[..4].iter().all(u8::is_ascii_hexdigit)
        && b[5..].iter().all(u8::is_ascii_hexdigit)
}

/// A sysfs `numa_node` file's content. -1 is the kernel's "no NUMA affinity"
/// (single-node machines, virtual devices): unknown, like an unreadable one.
pub fn parse_numa_node(text: &str) -> Option<i32> {
    let v: i32 = text.trim().parse().ok()?;
    (v >= 0).then_some(v)
}

/// Whether `s` is a PCI address (`dddd:bb:dd.f`, hex), as device plugins and
/// sysfs write them.
pub fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && hex(0..4)
        && b[4] == b':'
        && hex(5..7)
        && b[7] == b':'
        && hex(8..10)
        && b[10] == b'.'
        && (b'0'..=b'7').contains(&b[11])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(root: &str, numa: i32) -> GpuPlace {
        GpuPlace {
            id: "0000:3b:00.0".into(),
            pcie_root: Some(root.into()),
            numa_node: Some(numa),
        }
    }

    #[test]
    fn root_beats_numa_and_unknowns_never_match() {
        let gpus = [gpu("pci0000:3a", 0), gpu("pci0000:d7", 1)];
        assert_eq!(
            alignment(&gpus, Some("pci0000:d7"), Some(0)),
            Alignment::PcieRoot
        );
        assert_eq!(
            alignment(&gpus, Some("pci0000:17"), Some(1)),
            Alignment::Numa
        );
        assert_eq!(alignment(&gpus, None, None), Alignment::Unaligned);
        let unknown = [GpuPlace::default()];
        assert_eq!(alignment(&unknown, None, None), Alignment::Unaligned);
        assert_eq!(
            alignment(&[], Some("pci0000:3a"), Some(0)),
            Alignment::Unaligned
        );
    }

    #[test]
    fn root_complex_from_a_canonical_path() {
        let p = Path::new("/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0");
        assert_eq!(pcie_root_of(p).as_deref(), Some("pci0000:3a"));
        let virtio = Path::new("/sys/devices/platform/a000000.virtio_mmio/virtio3");
        assert_eq!(pcie_root_of(virtio), None);
        assert_eq!(pcie_root_of(Path::new("/sys/devices/pcifoo")), None);
        assert_eq!(pcie_root_of(Path::new("pci0000:0g")), None);
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:3b:00.1"));
        assert!(!is_pci_address("0000:3b:00.8"));
        assert!(!is_pci_address("GPU-8d9f"));
        assert!(!is_pci_address("0000:3b:00"));
    }
}
