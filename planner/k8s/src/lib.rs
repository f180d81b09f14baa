//! The Kubernetes side of railyard: CRDs generated from Rust types, and a
//! controller that turns `MultiNicNetwork` objects into what the rest of railyard
//! already understands (the network spec in etcd, exactly as `railyard apply`
//! writes it) and into what Multus understands (NetworkAttachmentDefinitions).
//!
//! It also mirrors etcd into read-only HostInterface and CIDR objects
//! ([`views_sync`]) and copies DeviceClass objects into etcd for the route-daemons
//! ([`devclass_sync`]).
//!
//! The split follows the project rule: decisions are pure functions ([`convert`],
//! [`nad`], [`nad_problems`], [`status`], [`leader::leading_guard`], [`views`], [`devclass`]) tested
//! on their own; the controller ([`controller`], [`reconcile`], [`cleanup`],
//! [`views_sync`], [`devclass_sync`]) only fetches and applies.

pub mod cleanup;
pub mod controller;
pub mod convert;
pub mod crd;
pub mod crdgen;
pub mod devclass;
pub mod devclass_sync;
pub mod error;
pub mod leader;
pub mod nad;
pub mod nad_problems;
pub mod reconcile;
pub mod status;
pub mod views;
pub mod views_sync;

pub use controller::{run, ControllerConfig};
pub use error::K8sError;

/// The API group of every railyard CRD.
pub const GROUP: &str = "railyard.dev";
/// The one API version each CRD serves.
pub const VERSION: &str = "v1";
/// Field manager of every server-side apply: `kubectl get -o yaml --show-managed-fields`
/// then tells which fields railyard owns.
pub const FIELD_MANAGER: &str = "railyard";

/// MultiNicNetwork annotation: the name of the generated NetworkAttachmentDefinition
/// (the network's name by default), so a network can be adopted next to an existing
/// NAD of the same name without overwriting it.
pub const ANNOTATION_NAD_NAME: &str = "railyard.dev/nad-name";
/// MultiNicNetwork annotation: the `cniVersion` written into the NAD config, for a
/// Multus or runtime that only speaks an older version.
pub const ANNOTATION_CNI_VERSION: &str = "railyard.dev/cni-version";
/// MultiNicNetwork annotation: the SR-IOV device plugin resource (alternative to
/// `spec.plugin.args.resourceName`).
pub const ANNOTATION_RESOURCE_NAME: &str = "railyard.dev/resource-name";
/// Written into the etcd copy of a network that came from Kubernetes: the object's
/// UID. The cleanup removes only specs carrying it, so networks applied with the
/// `railyard` CLI are never deleted for lack of a MultiNicNetwork.
pub const ANNOTATION_K8S_UID: &str = "railyard.dev/k8s-uid";

/// NAD annotation the SR-IOV device plugin and Multus read to allocate a VF.
pub const NAD_RESOURCE_NAME: &str = "k8s.v1.cni.cncf.io/resourceName";
/// NAD label: which network a NAD belongs to (the controller lists its NADs by it).
pub const LABEL_NETWORK: &str = "railyard.dev/network";
/// Label on every object railyard writes (NADs, HostInterfaces, CIDRs): railyard
/// lists, and so ever deletes, only objects carrying it.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "railyard";
