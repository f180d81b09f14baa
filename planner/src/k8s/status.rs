//! The MultiNicNetwork status: a pure function of what the controller observed
//! (its own verdict on the spec, the planner's status from etcd, the NADs written)
//! and the previous status.
//!
//! All three conditions are always present, so `kubectl wait --for=condition=Ready`
//! and alerting on `Exhausted` work without special cases for "not set yet". A
//! condition keeps its `lastTransitionTime` while its status stays the same: the
//! time tells when it changed, not when the controller last looked.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as K8sCondition, Time};

use super::crd::{CapacityStatus, MultiNicNetworkStatus, UnplannedHost};
use super::nad::NadPlan;
use crate::status::{Condition, NetworkStatus};

pub const READY: &str = "Ready";
pub const INVALID: &str = "Invalid";
pub const EXHAUSTED: &str = "Exhausted";
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
    /// The NADs written (absent while the spec is invalid).
    pub nads: Option<&'a NadPlan>,
}

/// One condition before timestamps: (type, status, reason, message).
type Verdict = (&'static str, &'static str, &'static str, String);

/// The status to write. `previous` supplies the transition times to keep.
pub fn network_status(
    seen: &Observed<'_>,
    previous: Option<&MultiNicNetworkStatus>,
    now: &Time,
) -> MultiNicNetworkStatus {
    let conditions = verdicts(seen)
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
        out.nad_namespaces = count(n.namespaces.len());
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
