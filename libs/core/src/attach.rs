//! The attach policy: which of this host's NICs a pod gets on a network.
//!
//! A pure function over a snapshot (the NICs with their facts and current load), so
//! the route-daemon can decide under its allocation lock without IO and every rule
//! below is testable on its own. The pod's selection (`nics`, `masters`, `class`,
//! `numa` from cni-args) only narrows what the network's policy allows: a pod must
//! not be able to reach a NIC the network operator did not grant it.
//!
//! A request that cannot be met in full is refused, never half-served: a pod asking
//! for three NICs that silently gets two would train on a slower topology than its
//! owner believes. The default request (no count, no names) means *every* NIC of
//! this host with a block, so a NIC that is down or otherwise unusable right now
//! makes it fail instead of shrinking it: once attached, a pod keeps its
//! interfaces for good, and CHECK cannot tell a rail it never got.

use std::cmp::{Ordering, Reverse};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::align::{alignment, Alignment};
use crate::inventory::Nic;
use crate::ipam::{codes, Selection};
use crate::spec::Strategy;

/// A NIC of this host that has a block in the network's plan, with the facts the
/// policies rank on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub name: String,
    /// The rail (interface index) the NIC is on.
    pub interface: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<i32>,
    /// The PCIe root complex (`pci0000:3a`), for GPU alignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub up: bool,
    /// Pod addresses currently allocated on this NIC (the balance policy's load).
    #[serde(default)]
    pub allocations: u32,
    /// Why the NIC cannot carry a pod interface now although the host is planned
    /// on its rail (it lost an address the plan needs, say). Treated like a NIC
    /// that is down: left out, and named in the error of a request it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unusable: Option<String>,
}

impl Candidate {
    pub fn from_nic(nic: &Nic, interface: u32, allocations: u32) -> Self {
        Candidate {
            name: nic.name.clone(),
            interface,
            speed_mbps: nic.speed_mbps,
            numa_node: nic.numa_node,
            pcie_root: nic.pcie_root.clone(),
            vendor: nic.vendor.clone(),
            product: nic.product.clone(),
            driver: nic.driver.clone(),
            up: nic.up,
            allocations,
            unusable: None,
        }
    }
}

/// A named set of NIC kinds (the `DeviceClass` CRD: its name and its spec). A NIC
/// belongs to the class when any rule matches it; a class without rules matches
/// nothing, so an empty spec cannot silently grant every NIC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceClass {
    pub name: String,
    /// multi-nic-cni calls this list `ids`; both spellings load.
    #[serde(default, alias = "ids")]
    pub rules: Vec<DeviceMatch>,
}

/// One rule: every field that is set must match (an empty rule matches any NIC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMatch {
    /// PCI vendor ID, as sysfs (`0x15b3`) or lspci (`15b3`) writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// PCI device IDs; any of them matches.
    #[serde(default, alias = "product", skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// A NIC of unknown speed never meets a minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_speed_mbps: Option<u32>,
}

impl DeviceClass {
    pub fn matches(&self, c: &Candidate) -> bool {
        self.rules.iter().any(|r| r.matches(c))
    }
}

impl DeviceMatch {
    pub fn matches(&self, c: &Candidate) -> bool {
        let id_eq = |want: &str, have: &Option<String>| {
            have.as_deref().is_some_and(|h| pci_id(h) == pci_id(want))
        };
        self.vendor.as_deref().is_none_or(|v| id_eq(v, &c.vendor))
            && (self.products.is_empty() || self.products.iter().any(|p| id_eq(p, &c.product)))
            && self
                .driver
                .as_deref()
                .is_none_or(|d| c.driver.as_deref() == Some(d))
            && self
                .min_speed_mbps
                .is_none_or(|m| c.speed_mbps.is_some_and(|s| s >= m))
    }
}

/// sysfs and lspci disagree on case and the `0x` prefix; the ID is the same.
fn pci_id(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    s.to_ascii_lowercase()
}

/// Why no selection was made. Each message names the policy, what was asked and
/// what was available, so it can go to the pod's events as it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectError {
    #[error("attach policy {policy}: NIC {name:?} has no block on this host for this network (NICs with a block: {known})")]
    UnknownNic {
        policy: String,
        name: String,
        known: String,
    },
    #[error("attach policy {policy}: NIC {name:?} is not among the network's masters ({allowed})")]
    NotAllowed {
        policy: String,
        name: String,
        allowed: String,
    },
    #[error("attach policy {policy}: asked for {asked}, {available} available{detail}")]
    Unsatisfiable {
        policy: String,
        asked: String,
        available: usize,
        detail: String,
    },
    #[error("attach policy {policy}: {reason}")]
    Invalid { policy: String, reason: String },
}

impl SelectError {
    /// The IPAM error code: a configuration problem is 7, an unmet request 100.
    pub fn code(&self) -> u32 {
        match self {
            SelectError::Invalid { .. } => codes::INVALID_CONFIG,
            _ => codes::NO_NIC,
        }
    }
}

/// The policy name as users write it in `attachPolicy.strategy`.
pub fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::None => "none",
        Strategy::Masters => "masters",
        Strategy::DevClass => "devClass",
        Strategy::Perf => "perf",
        Strategy::Balance => "balance",
        Strategy::Topology => "topology",
    }
}

/// The DeviceClass a request filters by, if any, so the caller knows which one to
/// fetch before calling [`select_nics`]. Under `devClass` the network's target is
/// the class; a pod's `class` may repeat it but not replace it (that would widen).
pub fn wanted_class<'a>(
    strategy: Strategy,
    policy_target: &'a str,
    selection: &'a Selection,
) -> Result<Option<&'a str>, SelectError> {
    let asked = selection.class.as_deref().filter(|c| !c.is_empty());
    if strategy != Strategy::DevClass || policy_target.is_empty() {
        return Ok(asked);
    }
    match asked {
        Some(c) if c != policy_target => Err(SelectError::Invalid {
            policy: strategy_name(strategy).to_string(),
            reason: format!(
                "the pod asks for DeviceClass {c:?} but the network is restricted to {policy_target:?}"
            ),
        }),
        _ => Ok(Some(policy_target)),
    }
}

/// Picks the NICs for one attachment, best first. See the module doc for the rules;
/// the result is a function of the inputs only (never of `candidates`' order).
pub fn select_nics<'a>(
    strategy: Strategy,
    policy_target: &str,
    candidates: &'a [Candidate],
    selection: &Selection,
    device_class: Option<&DeviceClass>,
) -> Result<Vec<&'a Candidate>, SelectError> {
    let class_name = wanted_class(strategy, policy_target, selection)?;
    let policy = match (class_name, selection.numa) {
        (Some(c), _) => format!("{} (DeviceClass {c})", strategy_name(strategy)),
        (None, Some(n)) if strategy == Strategy::Topology => format!("topology (NUMA node {n})"),
        (None, None) if gpu_aligned(strategy, selection) => {
            format!(
                "topology (aligned with {})",
                plural_gpus(selection.gpus.len())
            )
        }
        _ => strategy_name(strategy).to_string(),
    };
    let invalid = |reason: String| SelectError::Invalid {
        policy: policy.clone(),
        reason,
    };
    if selection.nics == Some(0) {
        return Err(invalid("nics must be at least 1".into()));
    }
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = sorted.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(invalid(format!("NIC {:?} is listed twice", w[0].name)));
    }
    sorted.sort_by(|a, b| by_rail(a, b));
    let class = resolve_class(class_name, device_class).map_err(invalid)?;
    let named = named_nics(strategy, policy_target, selection, &policy)?;
    let mut left_out = Vec::new();
    let universe: Vec<&Candidate> = match &named {
        None => sorted.clone(),
        Some(names) => {
            let mut found = Vec::with_capacity(names.list.len());
            for n in &names.list {
                match sorted.iter().find(|c| c.name == *n) {
                    Some(c) => found.push(*c),
                    // The network's list may name NICs other hosts have; only a
                    // pod's own typo is an error by itself.
                    None if !names.from_pod => {
                        left_out.push(format!("{n} (no block on this host)"))
                    }
                    None => {
                        return Err(SelectError::UnknownNic {
                            policy: policy.clone(),
                            name: n.to_string(),
                            known: list(sorted.iter().map(|c| c.name.as_str())),
                        })
                    }
                }
            }
            found
        }
    };
    let mut pool = Vec::with_capacity(universe.len());
    // What "every NIC" means: a down or unusable NIC is still one the pod is owed.
    let mut owed = 0;
    // Filter first, then count: with GPUs and neither a count nor names, "every
    // NIC" means every NIC of the closest tier any NIC reaches (down ones
    // included, so a down aligned NIC fails the request instead of being
    // replaced by a far one). A count takes the closest first (see `rank`).
    let by_tier = gpu_aligned(strategy, selection) && selection.nics.is_none() && named.is_none();
    let tier = by_tier.then(|| {
        universe
            .iter()
            .filter(|c| class.is_none_or(|k| k.matches(c)))
            .map(|c| align_of(selection, c))
            .min()
            .unwrap_or(Alignment::Unaligned)
    });
    for c in universe {
        let in_class = class.is_none_or(|k| k.matches(c));
        let in_tier = tier.is_none_or(|t| align_of(selection, c) <= t);
        owed += usize::from(in_class && in_tier);
        if let Some(why) = missing_device(selection, c) {
            left_out.push(format!("{} ({why})", c.name));
        } else if !c.up {
            left_out.push(format!("{} (down)", c.name));
        } else if let Some(why) = c.unusable.as_deref() {
            left_out.push(format!("{} ({why})", c.name));
        } else if !in_class {
            left_out.push(format!(
                "{} (not in DeviceClass {})",
                c.name,
                class_name.unwrap_or("")
            ));
        } else if !in_tier {
            left_out.push(format!("{} ({})", c.name, align_of(selection, c)));
        } else {
            pool.push(c);
        }
    }
    rank(strategy, selection, &mut pool);
    let wanted = match (selection.nics, &named) {
        (Some(n), _) => n as usize,
        (None, Some(names)) => names.list.len(),
        (None, None) => owed.max(1),
    };
    if wanted > pool.len() {
        return Err(unsatisfiable(
            policy,
            wanted,
            selection.nics.is_some(),
            named.as_ref(),
            &pool,
            candidates.is_empty(),
            &left_out,
        ));
    }
    pool.truncate(wanted);
    Ok(pool)
}

/// The DeviceClass object for the class the request filters by, if any.
fn resolve_class<'c>(
    name: Option<&str>,
    given: Option<&'c DeviceClass>,
) -> Result<Option<&'c DeviceClass>, String> {
    match (name, given) {
        (None, _) => Ok(None),
        (Some(want), Some(c)) if c.name == want => Ok(Some(c)),
        (Some(want), Some(c)) => Err(format!(
            "needs DeviceClass {want:?}, was given {:?}",
            c.name
        )),
        (Some(want), None) => Err(format!("DeviceClass {want:?} does not exist")),
    }
}

fn unsatisfiable(
    policy: String,
    wanted: usize,
    counted: bool,
    named: Option<&Named<'_>>,
    pool: &[&Candidate],
    no_candidates: bool,
    left_out: &[String],
) -> SelectError {
    let asked = match (counted, named) {
        (_, Some(names)) => format!("{} of {}", plural(wanted), list(names.list.iter().copied())),
        (true, None) => plural(wanted),
        (false, None) => "every NIC".to_string(),
    };
    let mut detail = format!(" ({})", list(pool.iter().map(|c| c.name.as_str())));
    if no_candidates {
        detail = " (no NIC of this host has a block in the network's plan)".into();
    } else if !left_out.is_empty() {
        detail.push_str(&format!("; left out: {}", left_out.join(", ")));
    }
    SelectError::Unsatisfiable {
        policy,
        asked,
        available: pool.len(),
        detail,
    }
}

/// An explicit list of NIC names and whether the pod gave it.
struct Named<'s> {
    list: Vec<&'s str>,
    from_pod: bool,
}

/// The explicit name list, if any: the network's target under `masters`, narrowed
/// by the pod's `masters`; under other policies only the pod's list.
fn named_nics<'s>(
    strategy: Strategy,
    policy_target: &'s str,
    selection: &'s Selection,
    policy: &str,
) -> Result<Option<Named<'s>>, SelectError> {
    let asked = dedup(selection.masters.iter().map(String::as_str));
    let pod = |list| {
        Some(Named {
            list,
            from_pod: true,
        })
    };
    if strategy != Strategy::Masters {
        return Ok(if asked.is_empty() { None } else { pod(asked) });
    }
    let allowed = dedup(policy_target.split(','));
    if let Some(bad) = asked
        .iter()
        .find(|m| !allowed.is_empty() && !allowed.contains(m))
    {
        return Err(SelectError::NotAllowed {
            policy: policy.to_string(),
            name: bad.to_string(),
            allowed: list(allowed.iter().copied()),
        });
    }
    match (asked.is_empty(), allowed.is_empty()) {
        (false, _) => Ok(pod(asked)),
        (true, false) => Ok(Some(Named {
            list: allowed,
            from_pod: false,
        })),
        (true, true) => Err(SelectError::Invalid {
            policy: policy.to_string(),
            reason: "names no NIC: set attachPolicy.target or the pod's masters".into(),
        }),
    }
}

fn dedup<'s>(names: impl Iterator<Item = &'s str>) -> Vec<&'s str> {
    let mut out: Vec<&str> = Vec::new();
    for n in names.map(str::trim) {
        if !n.is_empty() && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Orders the eligible NICs best first. `masters` keeps the order the names were
/// given in; every other order ends in the rail index, then the name, so ties are
/// broken the same way on every host and every run.
fn rank(strategy: Strategy, selection: &Selection, pool: &mut [&Candidate]) {
    if strategy != Strategy::Masters {
        pool.sort_by(|a, b| {
            rank_key(strategy, selection, a)
                .cmp(&rank_key(strategy, selection, b))
                .then_with(|| by_rail(a, b))
        });
    }
}

/// (off the requested NUMA node, GPU alignment, slower, more loaded): smaller
/// sorts first.
fn rank_key(
    strategy: Strategy,
    selection: &Selection,
    c: &Candidate,
) -> (bool, Alignment, Reverse<u32>, u32) {
    let numa = selection.numa;
    let none = Alignment::Unaligned;
    match strategy {
        Strategy::Perf => (
            false,
            none,
            Reverse(c.speed_mbps.unwrap_or(0)),
            c.allocations,
        ),
        Strategy::Balance => (false, none, Reverse(0), c.allocations),
        Strategy::Topology => (
            numa.is_some() && c.numa_node != numa,
            align_of(selection, c),
            Reverse(0),
            0,
        ),
        Strategy::None | Strategy::DevClass | Strategy::Masters => (false, none, Reverse(0), 0),
    }
}

/// Whether the choice is by GPU alignment: the topology policy, GPUs known, and
/// no explicit `numa` (which overrides them).
pub fn gpu_aligned(strategy: Strategy, selection: &Selection) -> bool {
    strategy == Strategy::Topology && selection.numa.is_none() && !selection.gpus.is_empty()
}

/// How close `c` is to the pod's GPUs.
pub fn align_of(selection: &Selection, c: &Candidate) -> Alignment {
    alignment(&selection.gpus, c.pcie_root.as_deref(), c.numa_node)
}

/// Why `c` cannot serve the pod for want of a device of its rail, if so.
fn missing_device(selection: &Selection, c: &Candidate) -> Option<String> {
    let holders = &selection
        .device_rails
        .iter()
        .find(|d| d.rail == c.interface)?
        .nics;
    if holders.contains(&c.name) {
        return None;
    }
    Some(if holders.is_empty() {
        format!("the pod holds no device of rail {}", c.interface)
    } else {
        format!(
            "the pod's devices of rail {} are on {}, not this NIC",
            c.interface,
            holders.join(", ")
        )
    })
}

fn plural_gpus(n: usize) -> String {
    if n == 1 {
        "1 GPU".into()
    } else {
        format!("{n} GPUs")
    }
}

fn by_rail(a: &Candidate, b: &Candidate) -> Ordering {
    (a.interface, &a.name).cmp(&(b.interface, &b.name))
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 NIC".into()
    } else {
        format!("{n} NICs")
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
