//! Why a network's NADs are not all in place, as pure decisions the reconcile
//! acts on and the status reports.
//!
//! The NADs are written namespace by namespace, and a namespace that refuses
//! one (a ResourceQuota, a policy engine, a namespace being terminated) or that
//! holds a NAD of the same name controlled by someone else must not stop the
//! others, nor the etcd spec, nor the status: the problem is reported in the
//! `NADsApplied` condition and retried with backoff.
//!
//! Two kinds of name conflict are refused rather than fought over:
//! - two MultiNicNetworks mapping to the same NAD name (through
//!   `railyard.dev/nad-name`) in one namespace. Both apply with the field manager
//!   `railyard`, so server-side apply would hand the owner reference to whichever
//!   wrote last, back and forth; neither writes there and both say why;
//! - a NAD that already has a controller owner other than this network. The
//!   apiserver refuses a second controller reference (422) on every attempt; the
//!   status names the owner instead.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use super::crd::{MultiNicNetwork, NetworkAttachmentDefinition};
use super::nad::NadPlan;
use super::ANNOTATION_NAD_NAME;

/// One namespace whose NAD is not as wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NadProblem {
    /// Another MultiNicNetwork claims the same NAD name in this namespace.
    SharedName { namespace: String, network: String },
    /// The NAD exists and is controlled by another object (`owner`: "Kind name").
    ForeignController { namespace: String, owner: String },
    /// The API refused the write (or the delete of a NAD no longer wanted).
    Refused { namespace: String, message: String },
}

impl NadProblem {
    pub fn namespace(&self) -> &str {
        match self {
            NadProblem::SharedName { namespace, .. }
            | NadProblem::ForeignController { namespace, .. }
            | NadProblem::Refused { namespace, .. } => namespace,
        }
    }

    pub fn is_conflict(&self) -> bool {
        !matches!(self, NadProblem::Refused { .. })
    }

    /// `"team-a: <why>"`, for the condition message.
    pub fn describe(&self, nad: &str) -> String {
        match self {
            NadProblem::SharedName { namespace, network } => format!(
                "{namespace}: MultiNicNetwork {network} also maps to NAD name {nad} (set a distinct railyard.dev/nad-name on one of them)"
            ),
            NadProblem::ForeignController { namespace, owner } => format!(
                "{namespace}: NAD {nad} exists and is controlled by {owner}, not by this network (delete it or set railyard.dev/nad-name)"
            ),
            NadProblem::Refused { namespace, message } => format!("{namespace}: {message}"),
        }
    }
}

/// What the NAD writes of one reconcile came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NadReport {
    /// Multus's NetworkAttachmentDefinition CRD is not installed: nothing was
    /// written; the NADs are created when it appears.
    pub crd_missing: bool,
    pub problems: Vec<NadProblem>,
}

impl NadReport {
    pub fn crd_missing() -> Self {
        NadReport {
            crd_missing: true,
            problems: Vec::new(),
        }
    }

    pub fn is_clean(&self) -> bool {
        !self.crd_missing && self.problems.is_empty()
    }

    /// How many of `plan`'s namespaces have the NAD as wanted.
    pub fn in_place(&self, plan: &NadPlan) -> usize {
        if self.crd_missing {
            return 0;
        }
        let failed: BTreeSet<&str> = self.problems.iter().map(NadProblem::namespace).collect();
        plan.namespaces
            .iter()
            .filter(|ns| !failed.contains(ns.as_str()))
            .count()
    }
}

/// The NAD name `net` claims: its annotation, else its own name. Unvalidated on
/// purpose: an invalid network still holds on to the NADs of its last valid spec.
pub fn claimed_name(net: &MultiNicNetwork) -> String {
    net.annotations()
        .get(ANNOTATION_NAD_NAME)
        .cloned()
        .unwrap_or_else(|| net.name_any())
}

/// The namespaces of `plan` in which another network of `networks` claims the
/// same NAD name, each with that network's name (the first, by name). A network
/// without `namespaces` claims every namespace.
pub fn shared_names(
    me: &MultiNicNetwork,
    plan: &NadPlan,
    networks: &[Arc<MultiNicNetwork>],
) -> BTreeMap<String, String> {
    let mut others: Vec<&MultiNicNetwork> = networks
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| n.name_any() != me.name_any() && claimed_name(n) == plan.name)
        .collect();
    others.sort_by_key(|n| n.name_any());
    let mut out = BTreeMap::new();
    for ns in &plan.namespaces {
        let claimant = others
            .iter()
            .find(|n| n.spec.namespaces.is_empty() || n.spec.namespaces.contains(ns));
        if let Some(other) = claimant {
            out.insert(ns.clone(), other.name_any());
        }
    }
    out
}

/// The controller owner of `have` when it is not `owner` (matched by UID), as
/// "Kind name": the apiserver would refuse our controller reference next to it.
pub fn foreign_controller(
    have: &NetworkAttachmentDefinition,
    owner: &OwnerReference,
) -> Option<String> {
    have.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.uid != owner.uid)
        .map(|o| format!("{} {} (uid {})", o.kind, o.name, o.uid))
}

/// First retry of a network whose NADs are not all in place (or whose reconcile
/// failed), doubling per consecutive failure up to [`MAX_RETRY`]: a quota or a
/// conflict is fixed by a person, so retrying every few seconds forever only
/// loads the apiserver. Watch events (the namespace, the NAD, the network
/// changes) still reconcile at once.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(120);

/// The wait before retry number `failures` (1 for the first failure).
pub fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}
