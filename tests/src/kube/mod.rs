//! A local Kubernetes control plane for the Kubernetes tests and the demo:
//! etcd, kube-apiserver (RBAC authorization, service-account tokens, a serving
//! certificate) and kube-controller-manager (garbage collector, service-account
//! controllers), all on the loopback, from the pinned upstream builds of `make
//! deps`. No kubelet and no scheduler: railyard's controller only writes API
//! objects, so the control plane is all it needs to be tested against a real API
//! server (admission, CEL, RBAC, server-side apply, owner-reference garbage
//! collection) instead of a mock.
//!
//! `railyard-kube up|down --state DIR` drives it from the command line; tests use
//! [`ControlPlane::up`] with `tie_to_this_process`. See docs/kubernetes.md,
//! "A local control plane".

mod args;
pub mod identity;
mod kubeconfig;
pub mod kubectl;
mod pki;
pub mod plane;
pub mod planner;
pub mod upstream;
mod watchdog;

pub use kubectl::{Answer, Kubectl};
pub use plane::{down, ControlPlane, PlaneOptions, PlaneState};
pub use planner::Planner;

/// Multus's NetworkAttachmentDefinition CRD (v4.2.3), installed by `up`.
pub const NAD_CRD: &str = include_str!("multus-nad-crd.yaml");
