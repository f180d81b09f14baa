//! The custom resources: railyard's own (generated into deploy/kubernetes/crds by
//! `railyard-crdgen`) and the Multus NetworkAttachmentDefinition railyard writes.

pub mod device_class;
pub mod nad;
pub mod network;
pub mod views;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use device_class::{DeviceClass, DeviceClassSpec, DeviceMatchSpec};
pub use nad::{NetworkAttachmentDefinition, NetworkAttachmentDefinitionSpec};
pub use network::{
    AttachPolicySpec, CapacityStatus, MultiNicNetwork, MultiNicNetworkSpec, MultiNicNetworkStatus,
    PluginSpec, UnplannedHost,
};
pub use views::{Cidr, CidrSpec, HostInterface, HostInterfaceSpec};

/// Every CRD railyard owns, each with the file name it is committed under.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("multinicnetworks.yaml", MultiNicNetwork::crd()),
        ("hostinterfaces.yaml", HostInterface::crd()),
        ("cidrs.yaml", Cidr::crd()),
        ("deviceclasses.yaml", DeviceClass::crd()),
    ]
}
