//! The pod's own devices, from the kubelet: one SR-IOV VF per rail, and the
//! GPUs the topology policy aligns the NICs with (`devices` in the config).
//!
//! A device plugin gives each container VFs of the resources it asked for
//! (one resource per rail, since each rail's VFs are a separate pool) and its
//! GPUs. The kubelet's pod-resources API says which; sysfs says where each
//! sits: a VF's `physfn` is its PF, the host NIC of a rail, and a device's
//! canonical path names its PCIe root. From that, railyard-cni tells the
//! daemon which rails the pod can be served on (`deviceRails`) and where its
//! GPUs are (`gpus`), before any address is allocated; then it hands each
//! rail's VF to that rail's delegate.
//!
//! Only the IO is here; the ranking is `railyard_core::attach`, and the
//! alignment rule `railyard_core::align`, which the daemon uses too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use railyard_core::align::{alignment, is_pci_address, parse_numa_node, pcie_root_of, GpuPlace};
use railyard_podresources::{Kubelet, PodDevice, PodResources};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cni::{decode, CniEnv, NetConf};
use crate::Error;

/// The config key.
pub const FIELD: &str = "devices";
/// The key railyard-cni adds to the IPAM's config for the daemon.
pub const IPAM_KEY: &str = crate::ipam::config::DEVICES_KEY;
/// Delegates that take a rail's VF, and the key each takes it in.
pub const VF_DELEGATES: [(&str, &str); 3] = [
    ("sriov", "deviceID"),
    ("ib-sriov", "deviceID"),
    ("host-device", "device"),
];
/// GPU resources counted unless `gpuResources` says otherwise.
pub const DEFAULT_GPU_RESOURCES: [&str; 2] = ["nvidia.com/gpu", "amd.com/gpu"];
/// How long the kubelet gets to answer: an ADD must not hang on it.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    rail_resources: Option<BTreeMap<String, String>>,
    gpu_resources: Option<Vec<String>>,
    pod_resources_socket: Option<String>,
    pci_devices: Option<String>,
    net_devices: Option<String>,
}

/// `devices`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicesConfig {
    /// Rail index to the extended resource of its VFs (`railResources`).
    pub rail_resources: BTreeMap<u32, String>,
    pub gpu_resources: Vec<String>,
    pub socket: PathBuf,
    /// `/sys/bus/pci/devices` (a test tree in tests).
    pub pci_root: PathBuf,
    /// `/sys/class/net` (a test tree in tests).
    pub net_root: PathBuf,
}

impl DevicesConfig {
    /// `None` when the config has no `devices`: then the kubelet is never asked.
    pub fn parse(conf: &NetConf, delegate_type: &str) -> Result<Option<DevicesConfig>, Error> {
        let Some(raw) = conf.extra_as::<Raw>(FIELD)? else {
            return Ok(None);
        };
        let mut rail_resources = BTreeMap::new();
        for (rail, resource) in raw.rail_resources.unwrap_or_default() {
            let field = format!("{FIELD}.railResources.{rail}");
            let index: u32 = rail.parse().map_err(|_| {
                Error::invalid_config(&field, "is keyed by a rail index (\"0\", \"1\", ...)")
            })?;
            if resource.trim().is_empty() {
                return Err(Error::invalid_config(
                    field,
                    "must name a resource, not be empty",
                ));
            }
            rail_resources.insert(index, resource);
        }
        if !rail_resources.is_empty() && vf_key(delegate_type).is_none() {
            return Err(Error::UnsupportedField {
                field: format!("{FIELD}.railResources"),
                value: decode::show(&json!(rail_resources)),
                reason: format!(
                    "delegate {delegate_type:?} cannot take a VF; use sriov, ib-sriov or host-device"
                ),
            });
        }
        let path = |v: Option<String>, field: &str, default: &str| match v {
            None => Ok(PathBuf::from(default)),
            Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
            Some(p) => Err(Error::invalid_config(
                format!("{FIELD}.{field}"),
                format!("= {p:?}: must be an absolute path"),
            )),
        };
        Ok(Some(DevicesConfig {
            rail_resources,
            gpu_resources: raw
                .gpu_resources
                .unwrap_or_else(|| DEFAULT_GPU_RESOURCES.map(String::from).to_vec()),
            socket: path(
                raw.pod_resources_socket,
                "podResourcesSocket",
                railyard_podresources::DEFAULT_SOCKET,
            )?,
            pci_root: path(raw.pci_devices, "pciDevices", "/sys/bus/pci/devices")?,
            net_root: path(raw.net_devices, "netDevices", "/sys/class/net")?,
        }))
    }

    /// The real kubelet at the configured socket.
    pub fn kubelet(&self) -> Kubelet {
        Kubelet::new(&self.socket, TIMEOUT)
    }
}

/// The key a VF delegate takes its VF in.
pub fn vf_key(delegate_type: &str) -> Option<&'static str> {
    VF_DELEGATES
        .iter()
        .find(|(t, _)| *t == delegate_type)
        .map(|(_, k)| *k)
}

/// One VF the pod holds, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vf {
    pub pci: String,
    /// The PF's netdev: the host NIC of the VF's rail.
    pub pf: String,
    /// The VF's own netdev in the host namespace (what host-device moves).
    pub netdev: Option<String>,
}

/// What the kubelet gave the pod, placed on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDevices {
    pub gpus: Vec<GpuPlace>,
    /// Every rail of `railResources`, with the pod's VFs of its resource.
    pub vfs: BTreeMap<u32, Vec<Vf>>,
}

impl PodDevices {
    /// What the daemon gets (under [`IPAM_KEY`]): the GPUs, and per rail that
    /// needs a VF the NICs the pod holds one on.
    pub fn for_ipam(&self) -> Value {
        let rails: Vec<Value> = self
            .vfs
            .iter()
            .map(|(rail, vfs)| {
                let mut pfs: Vec<&str> = vfs.iter().map(|v| v.pf.as_str()).collect();
                pfs.dedup();
                json!({"rail": rail, "nics": pfs})
            })
            .collect();
        json!({"gpus": self.gpus, "deviceRails": rails})
    }

    /// The VF for the pod's interface on `rail` through `nic`.
    pub fn vf_for(&self, rail: Option<u32>, nic: &str) -> Option<&Vf> {
        self.vfs.get(&rail?)?.iter().find(|v| v.pf == nic)
    }

    /// Whether `rail` needs one of the pod's VFs.
    pub fn needs_vf(&self, rail: Option<u32>) -> bool {
        rail.is_some_and(|r| self.vfs.contains_key(&r))
    }
}

/// Asks the kubelet (through `source`) for the pod's devices and places them.
/// `None` when there is nothing to do: no pod named (not Kubernetes) and no
/// rail needs a VF.
pub fn lookup(
    cfg: &DevicesConfig,
    env: &CniEnv,
    source: &dyn PodResources,
) -> Result<Option<PodDevices>, Error> {
    let needs_vfs = !cfg.rail_resources.is_empty();
    let Some(pod) = env.args.pod() else {
        if needs_vfs {
            return Err(Error::PodDevice {
                reason: format!(
                    "{FIELD}.railResources needs the pod's VFs, but the runtime named no pod \
                     (K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS)"
                ),
            });
        }
        return Ok(None);
    };
    let listed = source
        .pod_devices(pod.namespace, pod.name)
        .map_err(|e| Error::TryAgainLater {
            reason: e.to_string(),
        })?;
    let Some(devices) = listed else {
        if needs_vfs {
            return Err(Error::TryAgainLater {
                reason: format!(
                    "the kubelet ({}) does not list pod {}/{} yet",
                    cfg.socket.display(),
                    pod.namespace,
                    pod.name
                ),
            });
        }
        return Ok(None);
    };
    place(cfg, &devices)
}

/// Places each device: GPUs by PCIe root and NUMA node, VFs by their PF.
fn place(cfg: &DevicesConfig, devices: &[PodDevice]) -> Result<Option<PodDevices>, Error> {
    let pci = Pci(&cfg.pci_root);
    let mut out = PodDevices::default();
    for d in devices
        .iter()
        .filter(|d| cfg.gpu_resources.contains(&d.resource))
    {
        let on_pci = is_pci_address(&d.id);
        out.gpus.push(GpuPlace {
            id: d.id.clone(),
            pcie_root: on_pci.then(|| pci.pcie_root(&d.id)).flatten(),
            numa_node: on_pci
                .then(|| pci.numa_node(&d.id))
                .flatten()
                .or_else(|| d.numa_nodes.first().and_then(|&n| i32::try_from(n).ok())),
        });
    }
    for (&rail, resource) in &cfg.rail_resources {
        let mut vfs = Vec::new();
        for d in devices.iter().filter(|d| d.resource == *resource) {
            let reason = |why: String| Error::PodDevice {
                reason: format!(
                    "device {:?} of resource {resource:?} (rail {rail}): {why}",
                    d.id
                ),
            };
            if !is_pci_address(&d.id) {
                return Err(reason("is not a PCI address, so not an SR-IOV VF".into()));
            }
            let pf_pci = pci.physfn(&d.id).ok_or_else(|| {
                reason(format!(
                    "{} has no physfn: not an SR-IOV VF",
                    cfg.pci_root.join(&d.id).display()
                ))
            })?;
            let pf = pci
                .netdevs(&pf_pci)
                .into_iter()
                .next()
                .ok_or_else(|| reason(format!("its PF {pf_pci} has no network interface")))?;
            vfs.push(Vf {
                pci: d.id.clone(),
                pf,
                netdev: pci.netdevs(&d.id).into_iter().next(),
            });
        }
        vfs.sort_by(|a, b| (&a.pf, &a.pci).cmp(&(&b.pf, &b.pci)));
        out.vfs.insert(rail, vfs);
    }
    Ok(Some(out))
}

/// Which rule chose `nic` for a pod with `gpus`: its alignment, read from
/// the NIC's sysfs as the daemon's discovery reads it.
pub fn choice(cfg: &DevicesConfig, gpus: &[GpuPlace], nic: &str) -> Option<String> {
    if gpus.is_empty() {
        return None;
    }
    let dev = cfg.net_root.join(nic).join("device");
    let root = std::fs::canonicalize(&dev)
        .ok()
        .and_then(|p| pcie_root_of(&p));
    let numa = read_numa(&dev.join("numa_node"));
    Some(alignment(gpus, root.as_deref(), numa).rule().to_owned())
}

/// `/sys/bus/pci/devices`, or a tree of the same shape.
struct Pci<'a>(&'a Path);

impl Pci<'_> {
    fn pcie_root(&self, bdf: &str) -> Option<String> {
        pcie_root_of(&std::fs::canonicalize(self.0.join(bdf)).ok()?)
    }

    fn numa_node(&self, bdf: &str) -> Option<i32> {
        read_numa(&self.0.join(bdf).join("numa_node"))
    }

    fn physfn(&self, bdf: &str) -> Option<String> {
        let target = std::fs::read_link(self.0.join(bdf).join("physfn")).ok()?;
        let name = target.file_name()?.to_str()?;
        is_pci_address(name).then(|| name.to_owned())
    }

    /// The device's network interfaces, sorted.
    fn netdevs(&self, bdf: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.join(bdf).join("net"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// Unreadable and -1 (no affinity) are both unknown.
fn read_numa(path: &Path) -> Option<i32> {
    parse_numa_node(&std::fs::read_to_string(path).ok()?)
}
