//! The MultiNicNetwork status: a pure function of what the controller observed
//! (its own verdict on the spec, the planner's status from etcd, the NADs written)
//! and the previous status.
//!
//! All four conditions are always present, so `kubectl wait --for=condition=Ready`
//! and alerting on `Exhausted` work without special cases for "not set yet". A
//! condition keeps its `lastTransitionTime` while its status stays the same: the
//! time tells when it changed, not when the controller last looked.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as K8sCondition, Time};

use super::crd::{CapacityStatus, MultiNicNetworkStatus, UnplannedHost};
use super::nad::NadPlan;
use super::nad_problems::NadReport;
use railyard_core::status::{Condition, NetworkStatus};

pub const READY: &str = "Ready";
pub const INVALID: &str = "Invalid";
pub const EXHAUSTED: &str = "Exhausted";
/// Whether every target namespace has the NAD as wanted. Apart from `Ready`, which
/// follows the planner: a network can be planned while one namespace's quota
/// refuses its NAD, and both facts are worth knowing.
pub const NADS_APPLIED: &str = "NADsApplied";
/// Problems listed by name in the `NADsApplied` message; the rest are counted.
pub const MAX_PROBLEMS_LISTED: usize = 10;
/// An API message longer than this is cut: a policy engine's can run to pages.
const MAX_API_MESSAGE: usize = 300;
/// More than this many unplanned hosts are counted, not listed: a status is read
/// by people, and the object must stay far below the apiserver's size limit.
pub const MAX_UNPLANNED_LISTED: usize = 20;

/// What one reconcile saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    pub generation: Option<i64>,
    /// The controller's own verdict: `NetworkSpec::validate` or the NAD rules failed.
    pub invalid: Option<&'a str>,
    /// `/railyard/v1/status/<net>`; `None` until the planner has looked at the network.
    pub planner: Option<&'a NetworkStatus>,
    /// The NADs wanted (absent while the spec is invalid).
    pub nads: Option<&'a NadPlan>,
    /// What writing them came to; `None` counts as all written.
    pub nad_report: Option<&'a NadReport>,
}

/// One condition before timestamps: (type, status, reason, message).
type Verdict = (&'static str, &'static str, &'static str, String);

/// The status to write. `previous` supplies the transition times to keep.
pub fn network_status(
    seen: &Observed<'_>,
    previous: Option<&MultiNicNetworkStatus>,
    now: &Time,
) -> MultiNicNetworkStatus {
    let mut verdicts = verdicts(seen).to_vec();
    verdicts.push(nads_verdict(seen));
    let conditions = verdicts
        .into_iter()
        .map(|(kind, status, reason, message)| {
            let last_transition_time = previous
                .and_then(|p| p.conditions.iter().find(|c| c.type_ == kind))
                .filter(|c| c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            K8sCondition {
                type_: kind.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message,
                observed_generation: seen.generation,
                last_transition_time,
            }
        })
        .collect();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let mut out = MultiNicNetworkStatus {
        conditions,
        observed_generation: seen.generation,
        ..MultiNicNetworkStatus::default()
    };
    if let Some(p) = seen.planner {
        out.hosts_planned = count(p.hosts_planned);
        out.hosts_departed = count(p.hosts_departed);
        out.hosts_unplanned = count(p.hosts_unplanned.len());
        out.unplanned_hosts = p
            .hosts_unplanned
            .iter()
            .take(MAX_UNPLANNED_LISTED)
            .map(|u| UnplannedHost {
                host: u.host.clone(),
                reason: u.reason.clone(),
            })
            .collect();
        out.interfaces = count(p.interfaces);
        out.plan_revision = p.plan_revision;
        let c = &p.capacity;
        // A network that was never valid has no layout, hence no capacity.
        if c.hosts_total > 0 || c.interfaces_total > 0 {
            out.capacity = Some(CapacityStatus {
                hosts_total: i64::from(c.hosts_total),
                hosts_free: i64::from(c.hosts_free),
                interfaces_total: i64::from(c.interfaces_total),
                pods_per_host_per_rail: c
                    .pods_per_host_per_rail
                    .iter()
                    .map(|n| i64::try_from(*n).unwrap_or(i64::MAX))
                    .collect(),
            });
        }
    }
    if let Some(n) = seen.nads {
        out.nad_name = Some(n.name.clone());
        out.nad_namespaces = count(
            seen.nad_report
                .map_or(n.namespaces.len(), |r| r.in_place(n)),
        );
        out.missing_namespaces = n.missing_namespaces.clone();
    }
    out
}

fn verdicts(seen: &Observed<'_>) -> [Verdict; 3] {
    let exhausted = |p: &NetworkStatus| -> Verdict {
        if p.condition == Condition::Exhausted {
            (EXHAUSTED, "True", "NoFreeIndex", unplanned_summary(p))
        } else {
            (
                EXHAUSTED,
                "False",
                "Planned",
                "no host or NIC subnet is waiting for an index".into(),
            )
        }
    };
    if let Some(err) = seen.invalid {
        let exhausted = seen.planner.map_or_else(
            || {
                (
                    EXHAUSTED,
                    "Unknown",
                    "InvalidSpec",
                    "the spec is invalid".to_string(),
                )
            },
            exhausted,
        );
        return [
            (
                READY,
                "False",
                "InvalidSpec",
                format!(
                    "the spec is invalid (the previous valid spec, if any, stays in force): {err}"
                ),
            ),
            (INVALID, "True", "InvalidSpec", err.to_string()),
            exhausted,
        ];
    }
    let Some(p) = seen.planner else {
        let waiting = "waiting for the planner to plan this network (is railyard-planner running?)";
        return [
            (READY, "Unknown", "Pending", waiting.to_string()),
            (INVALID, "False", "Valid", "the spec is valid".to_string()),
            (EXHAUSTED, "Unknown", "Pending", waiting.to_string()),
        ];
    };
    match p.condition {
        Condition::Ready => [
            (
                READY,
                "True",
                "Planned",
                format!(
                    "{} hosts planned on {} rails",
                    p.hosts_planned, p.interfaces
                ),
            ),
            (INVALID, "False", "Valid", "the spec is valid".to_string()),
            exhausted(p),
        ],
        Condition::Exhausted => [
            (READY, "False", "Exhausted", unplanned_summary(p)),
            (INVALID, "False", "Valid", "the spec is valid".to_string()),
            exhausted(p),
        ],
        Condition::Invalid => {
            let why = p
                .last_error
                .clone()
                .unwrap_or_else(|| "the planner rejected the spec".into());
            [
                (READY, "False", "PlannerRejected", why.clone()),
                (INVALID, "True", "PlannerRejected", why),
                exhausted(p),
            ]
        }
    }
}

fn nads_verdict(seen: &Observed<'_>) -> Verdict {
    if seen.invalid.is_some() {
        return (
            NADS_APPLIED,
            "Unknown",
            "InvalidSpec",
            "the spec is invalid: the NADs of the last valid spec, if any, stay as they are".into(),
        );
    }
    let Some(plan) = seen.nads else {
        return (NADS_APPLIED, "Unknown", "Pending", "not written yet".into());
    };
    let clean = NadReport::default();
    let report = seen.nad_report.unwrap_or(&clean);
    if report.crd_missing {
        return (
            NADS_APPLIED,
            "False",
            "CRDMissing",
            format!(
                "the NetworkAttachmentDefinition CRD (network-attachment-definitions.k8s.cni.cncf.io, installed with Multus) is missing: \
                 the etcd spec is stored and the NADs {} are created in {} namespaces when the CRD appears",
                plan.name,
                plan.namespaces.len()
            ),
        );
    }
    if report.problems.is_empty() {
        return (
            NADS_APPLIED,
            "True",
            "Applied",
            format!("NAD {} in {} namespaces", plan.name, plan.namespaces.len()),
        );
    }
    let reason = if report.problems.iter().any(|p| p.is_conflict()) {
        "NameConflict"
    } else {
        "ApplyFailed"
    };
    let failed = report.problems.len();
    let mut listed: Vec<String> = report
        .problems
        .iter()
        .take(MAX_PROBLEMS_LISTED)
        .map(|p| cut(&p.describe(&plan.name), MAX_API_MESSAGE))
        .collect();
    if failed > MAX_PROBLEMS_LISTED {
        listed.push(format!("and {} more", failed - MAX_PROBLEMS_LISTED));
    }
    (
        NADS_APPLIED,
        "False",
        reason,
        format!(
            "NAD {} not written in {failed} of {} namespaces (retried with backoff; the others are written): {}",
            plan.name,
            plan.namespaces.len().max(failed),
            listed.join("; ")
        ),
    )
}

/// `text` cut to at most `max` bytes at a character boundary, marked with "...".
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// "2 hosts and 1 NIC subnet without an index: node-9 (...), ...".
fn unplanned_summary(p: &NetworkStatus) -> String {
    let mut parts: Vec<String> = p
        .hosts_unplanned
        .iter()
        .take(5)
        .map(|u| format!("{} ({})", u.host, u.reason))
        .collect();
    parts.extend(
        p.unplanned_interfaces
            .iter()
            .take(5)
            .map(|u| format!("{} ({})", u.net_address, u.reason)),
    );
    let more =
        p.hosts_unplanned.len().saturating_sub(5) + p.unplanned_interfaces.len().saturating_sub(5);
    let tail = if more > 0 {
        format!(", and {more} more")
    } else {
        String::new()
    };
    format!(
        "{} hosts and {} NIC subnets found no free index: {}{tail}",
        p.hosts_unplanned.len(),
        p.unplanned_interfaces.len(),
        parts.join(", ")
    )
}
