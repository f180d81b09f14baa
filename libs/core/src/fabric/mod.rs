//! Routed rails (`docs/design/routed-rails.md`): a network's rails are an L2
//! subnet shared by every host (`l2`, the default and everything railyard did
//! before), or a routed fabric where NIC *j* of every host sits on a link of
//! its own to leaf *j* and the host announces its blocks to that leaf over BGP
//! (`routed`).
//!
//! This module is the spec field and its validation; the decisions a routed
//! host makes from the plan are in [`links`] (the leaf gateway and the routes
//! through it), [`sessions`](mod@sessions) (what BGP announces and accepts on each link) and
//! [`source`] (the per-NIC source routing tables).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::spec::NetworkSpec;

pub mod links;
pub mod sessions;
pub mod source;

pub use links::{
    host_routes, inventory_addresses, leaf_gateway, own_leaf_routes, route_via_leaves,
    routed_links, LinkProblem, RoutedLink,
};
pub use sessions::{
    bird_safe, router_id, sessions, AcceptRange, RoutedNetwork, Session, SessionConflict,
};
pub use source::{
    is_source_table, source_routes, source_tables, SourceRule, SOURCE_TABLES, SOURCE_TABLE_FIRST,
};

/// Every host's AS when `spec.fabric.bgp.asn` is not given: the first private
/// 16-bit AS, which Calico's nodes use too.
pub const DEFAULT_HOST_ASN: u32 = 64_512;
/// Hold time in seconds when not given: a host that dies without withdrawing
/// loses its blocks at the leaf within it (BIRD's own default is 240 s).
pub const DEFAULT_HOLD_TIME: u16 = 9;
/// AS_TRANS (RFC 6793): a placeholder for 4-byte AS numbers, never a real AS.
const AS_TRANS: i64 = 23_456;

/// The keys `spec.fabric` may carry.
pub const FABRIC_KEYS: [&str; 2] = ["mode", "bgp"];
/// The keys `spec.fabric.bgp` may carry.
pub const BGP_KEYS: [&str; 3] = ["asn", "peerAsn", "holdTime"];

/// `spec.fabric` as written. Values are kept loose (strings, i64) so that
/// validation, not deserialization, names a bad one; unknown keys are kept
/// only to be refused by name, as `spec.ipam`'s are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FabricSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpSpec>,
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// `spec.fabric.bgp` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_asn: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<i64>,
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// A network's rails, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Fabric {
    /// One shared L2 subnet per rail: peers' blocks via their NIC addresses.
    #[default]
    L2,
    /// A link per host and rail to that rail's leaf: peers' blocks via the
    /// own leaf, the host's blocks announced to it over BGP.
    Routed(Bgp),
}

/// The BGP side of a routed fabric. One set per network: every host speaks
/// eBGP as `asn` to leaves of `peer_asn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bgp {
    pub asn: u32,
    pub peer_asn: u32,
    /// Seconds; the keepalive is a third of it.
    pub hold_time: u16,
}

impl Fabric {
    pub fn is_routed(&self) -> bool {
        matches!(self, Fabric::Routed(_))
    }
}

impl NetworkSpec {
    /// `spec.fabric`, checked. Absent (or `mode: l2` with nothing else) is
    /// [`Fabric::L2`], so every spec written before routed rails keeps
    /// exactly its meaning.
    pub fn fabric(&self) -> Result<Fabric> {
        let Some(spec) = &self.fabric else {
            return Ok(Fabric::L2);
        };
        if let Some((key, value)) = spec.unknown.iter().next() {
            return Err(CoreError::invalid(
                format!("spec.fabric.{key}"),
                value,
                format!("is not a fabric key (known: {})", FABRIC_KEYS.join(", ")),
            ));
        }
        let routed = match spec.mode.as_deref() {
            None | Some("") | Some("l2") => false,
            Some("routed") => true,
            Some(other) => {
                return Err(CoreError::invalid(
                    "spec.fabric.mode",
                    other,
                    "must be l2 (one shared subnet per rail, the default) or routed (a link per host to each rail's leaf)",
                ))
            }
        };
        if !routed {
            if let Some(bgp) = &spec.bgp {
                return Err(CoreError::invalid(
                    "spec.fabric.bgp",
                    serde_json::to_string(bgp).unwrap_or_default(),
                    "is only used with spec.fabric.mode routed; an l2 rail announces nothing",
                ));
            }
            return Ok(Fabric::L2);
        }
        if self.master_nets.is_empty() {
            return Err(CoreError::invalid(
                "spec.masterNets",
                "",
                "is required with spec.fabric.mode routed: each entry is the range every host's link to that rail's leaf lies in (on a routed fabric each host's NIC is on a subnet of its own, so the subnet cannot name the rail)",
            ));
        }
        let bgp = spec.bgp.clone().unwrap_or_default();
        Ok(Fabric::Routed(bgp.validate()?))
    }
}

impl BgpSpec {
    fn validate(&self) -> Result<Bgp> {
        if let Some((key, value)) = self.unknown.iter().next() {
            return Err(CoreError::invalid(
                format!("spec.fabric.bgp.{key}"),
                value,
                format!("is not a bgp key (known: {})", BGP_KEYS.join(", ")),
            ));
        }
        let asn = match self.asn {
            None => DEFAULT_HOST_ASN,
            Some(v) => as_number("spec.fabric.bgp.asn", v)?,
        };
        let peer_asn = match self.peer_asn {
            None => {
                return Err(CoreError::invalid(
                    "spec.fabric.bgp.peerAsn",
                    "",
                    "is required with spec.fabric.mode routed: the leaves' AS number",
                ))
            }
            Some(v) => as_number("spec.fabric.bgp.peerAsn", v)?,
        };
        if asn == peer_asn {
            return Err(CoreError::invalid(
                "spec.fabric.bgp.peerAsn",
                peer_asn,
                format!(
                    "equals spec.fabric.bgp.asn ({asn}): hosts speak eBGP to their leaves; over iBGP a leaf would not pass one host's blocks to another without route reflection"
                ),
            ));
        }
        let hold_time = match self.hold_time {
            None => DEFAULT_HOLD_TIME,
            Some(v) => u16::try_from(v).ok().filter(|h| *h >= 3).ok_or_else(|| {
                CoreError::invalid(
                    "spec.fabric.bgp.holdTime",
                    v,
                    "must be between 3 and 65535 seconds (BGP allows 0, no keepalives, which would keep a dead host's blocks at its leaf for ever)",
                )
            })?,
        };
        Ok(Bgp {
            asn,
            peer_asn,
            hold_time,
        })
    }
}

fn as_number(field: &str, v: i64) -> Result<u32> {
    if v == AS_TRANS {
        return Err(CoreError::invalid(
            field,
            v,
            "is AS_TRANS (RFC 6793), a placeholder, not an AS",
        ));
    }
    u32::try_from(v)
        .ok()
        .filter(|a| *a != 0)
        .ok_or_else(|| CoreError::invalid(field, v, "must be an AS number, 1 to 4294967295"))
}
