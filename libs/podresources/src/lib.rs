//! Which devices the kubelet gave a pod: its pod-resources API
//! (`/var/lib/kubelet/pod-resources/kubelet.sock`) as a port.
//!
//! A device plugin (SR-IOV, a GPU vendor's) allocates devices to containers;
//! the kubelet remembers which and answers `List` on this socket. Multus reads
//! it to hand an SR-IOV VF to its delegate; railyard-cni reads it for the same
//! reason (one VF per rail) and to learn where the pod's GPUs sit, so the
//! topology policy can choose the NICs next to them.
//!
//! [`PodResources`] is the port: [`Kubelet`] speaks gRPC to the real socket,
//! [`Memory`] holds a table, and `conformance` (feature `conformance`) holds
//! both to one behaviour.
//! With the `server` feature, `server::TestServer` serves a [`Memory`] over
//! the kubelet's own protocol, built from the kubelet's own proto: the tests
//! and the local cluster use it where no kubelet runs.

mod error;
mod kubelet;
mod memory;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "server")]
pub mod server;

/// The generated protocol (package `v1` of the vendored kubelet proto).
#[allow(missing_debug_implementations, clippy::all)]
pub mod proto {
    tonic::include_proto!("v1");
}

pub use error::Error;
pub use kubelet::{Kubelet, DEFAULT_SOCKET};
pub use memory::Memory;

/// One device of one of the pod's containers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodDevice {
    /// The extended resource (`nvidia.com/gpu`, `intel.com/sriov_rail0`).
    pub resource: String,
    /// The device plugin's ID: a PCI address for SR-IOV and most GPU plugins.
    pub id: String,
    /// The NUMA nodes the device plugin reported for it (often one).
    pub numa_nodes: Vec<i64>,
}

/// The port: the devices the kubelet gave the pod `namespace/name`.
///
/// `Ok(None)` means the kubelet does not know the pod (not scheduled here, or
/// not admitted yet); `Ok(Some(vec![]))` a pod without devices. Devices of
/// every container are returned once each, sorted, so callers never depend on
/// the kubelet's order.
pub trait PodResources: Send + Sync {
    fn pod_devices(&self, namespace: &str, name: &str) -> Result<Option<Vec<PodDevice>>, Error>;
}

/// The pod's devices from a `List` answer: every container's, each once.
pub fn devices_of(
    list: &proto::ListPodResourcesResponse,
    namespace: &str,
    name: &str,
) -> Option<Vec<PodDevice>> {
    let pod = list
        .pod_resources
        .iter()
        .find(|p| p.namespace == namespace && p.name == name)?;
    let mut out: Vec<PodDevice> = pod
        .containers
        .iter()
        .flat_map(|c| &c.devices)
        .flat_map(|d| {
            let numa: Vec<i64> = d
                .topology
                .iter()
                .flat_map(|t| &t.nodes)
                .map(|n| n.id)
                .collect();
            d.device_ids.iter().map(move |id| PodDevice {
                resource: d.resource_name.clone(),
                id: id.clone(),
                numa_nodes: numa.clone(),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    Some(out)
}
