//! The in-memory pod-resources: a table the tests (and the test server) fill.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::proto::{
    ContainerDevices, ContainerResources, ListPodResourcesResponse, NumaNode,
    PodResources as PodEntry, TopologyInfo,
};
use crate::{devices_of, Error, PodDevice, PodResources};

/// (namespace, name) to one device list per container.
type Table = BTreeMap<(String, String), Vec<Vec<PodDevice>>>;

/// Pods and their containers' devices, as a kubelet would hold them. Cheap to
/// clone: clones share the table, so a test can change what a server serves.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pods: Arc<Mutex<Table>>,
}

impl Memory {
    pub fn new() -> Self {
        Memory::default()
    }

    /// Sets the pod's devices, one list per container (replacing any before).
    pub fn set_pod(&self, namespace: &str, name: &str, containers: Vec<Vec<PodDevice>>) {
        self.table()
            .insert((namespace.to_owned(), name.to_owned()), containers);
    }

    /// Forgets the pod, as the kubelet does once it is gone.
    pub fn remove_pod(&self, namespace: &str, name: &str) {
        self.table()
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// The table as the kubelet's `List` answer.
    pub fn list(&self) -> ListPodResourcesResponse {
        let pod_resources = self
            .table()
            .iter()
            .map(|((namespace, name), containers)| PodEntry {
                name: name.clone(),
                namespace: namespace.clone(),
                containers: containers
                    .iter()
                    .enumerate()
                    .map(|(i, devices)| ContainerResources {
                        name: format!("c{i}"),
                        devices: devices.iter().map(container_devices).collect(),
                        ..ContainerResources::default()
                    })
                    .collect(),
            })
            .collect();
        ListPodResourcesResponse { pod_resources }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One device as the kubelet groups them (it groups by resource; one entry per
/// device is equally valid and keeps each device's own topology).
fn container_devices(d: &PodDevice) -> ContainerDevices {
    ContainerDevices {
        resource_name: d.resource.clone(),
        device_ids: vec![d.id.clone()],
        topology: (!d.numa_nodes.is_empty()).then(|| TopologyInfo {
            nodes: d.numa_nodes.iter().map(|&id| NumaNode { id }).collect(),
        }),
    }
}

impl PodResources for Memory {
    fn pod_devices(&self, namespace: &str, name: &str) -> Result<Option<Vec<PodDevice>>, Error> {
        Ok(devices_of(&self.list(), namespace, name))
    }
}
