//! `spec.ipam.gateway`: which address of each host block the pods route
//! through, or none at all.
//!
//! Written in a spec as `gateway: {offset: N}` (N counted from each host
//! block's network address; negative from its end, so `-1` is the last
//! address and `-2` the last usable IPv4 one) or `gateway: none`. Unset, it
//! is offset 1, the block's first address after the network address: what
//! every release before this one used, and serialized by nobody, so plans,
//! logs and results of a network that does not set it are byte for byte
//! what they were.
//!
//! With `none` no address of a block is reserved for a gateway (a pod may
//! get offset 1) and pods get device routes (no `gw`). Only ipvlan in l3 or
//! l3s mode can work like that: the parent's L3 stack routes the pods'
//! packets whatever their next hop. Every other delegate needs a gateway
//! (macvlan and host-device have the route-daemon's gateway shim hold it,
//! ptp puts it on the host end of the veth), so `none` is refused for them.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CoreError, Result};
use crate::layout::{from_u128, to_u128};

/// The field, as errors name it.
pub const FIELD: &str = "spec.ipam.gateway";

/// The offset every release used before the gateway could be chosen.
pub const DEFAULT_OFFSET: i64 = 1;

/// The validated choice. Serialized as written in a spec: `{"offset": -2}`
/// or `"none"`; holders skip it when it is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Gateway {
    /// Counted from the block's network address; negative from its last
    /// address (`-1`).
    Offset(i64),
    /// No gateway: nothing reserved, device routes.
    None,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway::Offset(DEFAULT_OFFSET)
    }
}

impl fmt::Display for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gateway::Offset(n) => write!(f, "{{offset: {n}}}"),
            Gateway::None => f.write_str("none"),
        }
    }
}

impl Gateway {
    /// Whether this is what a spec without the field means (for
    /// `skip_serializing_if`, so unset stays byte-identical).
    pub fn is_default(&self) -> bool {
        *self == Gateway::default()
    }

    /// The gateway of `block`: its address at the offset, or `None` for
    /// [`Gateway::None`] and for an offset outside the block (which
    /// validation refuses for every host block of the network).
    pub fn address(&self, block: IpNet) -> Option<IpAddr> {
        let off = self.offset_in(block)?;
        Some(from_u128(
            to_u128(block.network()) + off,
            block.addr().is_ipv4(),
        ))
    }

    /// The gateway's offset from `block`'s network address (see
    /// [`Gateway::address`]).
    pub fn offset_in(&self, block: IpNet) -> Option<u128> {
        let Gateway::Offset(off) = *self else {
            return None;
        };
        let last = to_u128(block.broadcast()) - to_u128(block.network());
        if off >= 0 {
            let off = off.unsigned_abs().into();
            (off <= last).then_some(off)
        } else {
            last.checked_sub(u128::from(off.unsigned_abs() - 1))
        }
    }

    /// `spec.ipam.gateway` as written: absent or `null` (the default),
    /// `"none"`, or `{"offset": N}` with an integer N. Anything else is
    /// refused naming the field and the value.
    pub fn parse(raw: Option<&Value>) -> Result<Gateway> {
        let shape = "must be none or {offset: N} (N counted from each host block's start, \
                     negative from its end: -2 is the last usable IPv4 address)";
        let raw = match raw {
            None | Some(Value::Null) => return Ok(Gateway::default()),
            Some(v) => v,
        };
        match raw {
            Value::String(s) if s == "none" => Ok(Gateway::None),
            Value::Object(map) => {
                if let Some(key) = map.keys().find(|k| *k != "offset") {
                    return Err(CoreError::invalid(
                        format!("{FIELD}.{key}"),
                        &map[key],
                        "is not a gateway key (known: offset)",
                    ));
                }
                match map.get("offset") {
                    Some(Value::Number(n)) if n.as_i64().is_some() => {
                        Ok(Gateway::Offset(n.as_i64().unwrap_or(DEFAULT_OFFSET)))
                    }
                    Some(other) => Err(CoreError::invalid(
                        format!("{FIELD}.offset"),
                        other,
                        "must be an integer (negative counts from the block's end)",
                    )),
                    None => Err(CoreError::invalid(FIELD, raw, shape)),
                }
            }
            other => Err(CoreError::invalid(FIELD, other, shape)),
        }
    }

    /// Checks the choice against the network (the caller skips it when the
    /// spec does not set the field: every release accepted offset 1, even
    /// inside an exclude): an offset lands inside every
    /// host block of every family (blocks of `pod_bits` host bits), never on
    /// a block's network address or an IPv4 block's broadcast address, and
    /// in no host block inside an exclude; `none` only for ipvlan in l3 or
    /// l3s mode (`plugin` and `mode` as the spec gives them: the plugin
    /// type, empty for ipvlan's default, and the effective ipvlan mode).
    pub fn check(
        &self,
        subnets: &[IpNet],
        pod_bits: &dyn Fn(&IpNet) -> u32,
        excludes: &[IpNet],
        plugin: &str,
        mode: &str,
    ) -> Result<()> {
        let off = match *self {
            Gateway::None => return check_none(plugin, mode),
            Gateway::Offset(off) => off,
        };
        for subnet in subnets {
            let bits = pod_bits(subnet);
            let v4 = subnet.addr().is_ipv4();
            // A block of 2^128 addresses (::/0 unsplit) is one block.
            let size = 1u128.checked_shl(bits);
            let last = size.map_or(u128::MAX, |s| s - 1);
            let family = if v4 { "IPv4" } else { "IPv6" };
            let blocks = size.map_or("2^128".to_string(), |s| s.to_string());
            let o = if off >= 0 {
                let o = u128::from(off.unsigned_abs());
                (o <= last).then_some(o)
            } else {
                last.checked_sub(u128::from(off.unsigned_abs() - 1))
            };
            let Some(o) = o else {
                return Err(CoreError::invalid(
                    FIELD,
                    self,
                    format!(
                        "lies outside the {family} host blocks of {subnet}, which have {blocks} \
                         addresses each"
                    ),
                ));
            };
            if o == 0 {
                return Err(CoreError::invalid(
                    FIELD,
                    self,
                    format!("is the network address of every {family} host block of {subnet}"),
                ));
            }
            if v4 && o == last {
                return Err(CoreError::invalid(
                    FIELD,
                    self,
                    format!("is the broadcast address of every IPv4 host block of {subnet}"),
                ));
            }
            for e in excludes.iter().filter(|e| crate::spec::overlaps(e, subnet)) {
                if let Some(at) = first_gateway_in(subnet, size, o, e) {
                    return Err(CoreError::invalid(
                        FIELD,
                        self,
                        format!(
                            "is {at} in the host block {}, inside the excluded {e}: a gateway \
                             must be an address pods could otherwise get",
                            IpNet::new(at, subnet.max_prefix_len() - bits as u8)
                                .map(|n| n.trunc().to_string())
                                .unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `gateway: none` for `plugin` (empty: ipvlan, the default) in `mode`.
fn check_none(plugin: &str, mode: &str) -> Result<()> {
    let kind = if plugin.is_empty() { "ipvlan" } else { plugin };
    let why = match kind {
        "ipvlan" if matches!(mode, "l3" | "l3s") => return Ok(()),
        "ipvlan" => format!(
            "ipvlan {mode} puts the pods on the rail's L2 segment, where they need a gateway"
        ),
        "macvlan" | "host-device" => format!(
            "plugin {kind} needs one: its pods sit on the rail's L2 and reach the host through \
             the gateway shim that holds each block's gateway (docs/design/data-paths.md)"
        ),
        "ptp" => "plugin ptp needs one: it puts the gateway on the host end of each pod's veth"
            .to_string(),
        other => format!(
            "plugin {other} needs one; only ipvlan in l3 or l3s mode routes pods without a \
             gateway"
        ),
    };
    Err(CoreError::invalid(
        FIELD,
        "none",
        format!("{why}; set gateway: {{offset: N}} or leave it unset"),
    ))
}

/// The first gateway (offset `o` in each block of `size` addresses of
/// `subnet`) inside `e`, if any.
fn first_gateway_in(subnet: &IpNet, size: Option<u128>, o: u128, e: &IpNet) -> Option<IpAddr> {
    let v4 = subnet.addr().is_ipv4();
    let base = to_u128(subnet.network());
    let end = to_u128(subnet.broadcast());
    let lo = to_u128(e.network()).max(base);
    let hi = to_u128(e.broadcast()).min(end);
    if lo > hi {
        return None;
    }
    let first = base.checked_add(o)?;
    let at = match size {
        // One block (its gateway is the only one), or the first block's
        // gateway is at or after the exclude's start.
        None => first,
        Some(_) if lo <= first => first,
        // The first block whose gateway is at or after it.
        Some(size) => {
            let k = (lo - first).div_ceil(size);
            first.checked_add(k.checked_mul(size)?)?
        }
    };
    (at >= lo && at <= hi).then(|| from_u128(at, v4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_what_a_spec_writes_and_names_the_field_otherwise() {
        assert_eq!(Gateway::parse(None).unwrap(), Gateway::default());
        assert_eq!(
            Gateway::parse(Some(&json!(null))).unwrap(),
            Gateway::Offset(1)
        );
        assert_eq!(Gateway::parse(Some(&json!("none"))).unwrap(), Gateway::None);
        assert_eq!(
            Gateway::parse(Some(&json!({"offset": -2}))).unwrap(),
            Gateway::Offset(-2)
        );
        for (bad, field) in [
            (json!("auto"), "spec.ipam.gateway"),
            (json!(5), "spec.ipam.gateway"),
            (json!({}), "spec.ipam.gateway"),
            (json!({"offset": "3"}), "spec.ipam.gateway.offset"),
            (json!({"offset": 1.5}), "spec.ipam.gateway.offset"),
            (json!({"offset": 3, "ofset": 4}), "spec.ipam.gateway.ofset"),
        ] {
            let err = Gateway::parse(Some(&bad)).unwrap_err();
            assert!(
                matches!(&err, CoreError::Invalid { field: f, .. } if f == field),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn addresses_count_from_the_start_or_the_end() {
        let b = net("192.168.3.0/24");
        assert_eq!(
            Gateway::default().address(b),
            Some("192.168.3.1".parse().unwrap())
        );
        assert_eq!(
            Gateway::Offset(-2).address(b),
            Some("192.168.3.254".parse().unwrap())
        );
        assert_eq!(
            Gateway::Offset(-1).address(b),
            Some("192.168.3.255".parse().unwrap())
        );
        assert_eq!(
            Gateway::Offset(-256).address(b),
            Some("192.168.3.0".parse().unwrap())
        );
        assert_eq!(Gateway::Offset(-257).address(b), None);
        assert_eq!(Gateway::Offset(256).address(b), None);
        assert_eq!(Gateway::None.address(b), None);
        let v6 = net("fd00:0:0:5::/64");
        assert_eq!(
            Gateway::Offset(-1).address(v6),
            Some("fd00:0:0:5:ffff:ffff:ffff:ffff".parse().unwrap())
        );
        assert_eq!(Gateway::Offset(i64::MIN).address(net("10.0.0.0/24")), None);
    }

    fn check(
        g: Gateway,
        subnets: &[&str],
        bits: u32,
        excludes: &[&str],
        plugin: &str,
        mode: &str,
    ) -> Result<()> {
        let subnets: Vec<IpNet> = subnets.iter().map(|s| net(s)).collect();
        let excludes: Vec<IpNet> = excludes.iter().map(|s| net(s)).collect();
        g.check(&subnets, &|_| bits, &excludes, plugin, mode)
    }

    #[test]
    fn offsets_must_land_on_a_usable_address_of_every_block() {
        let dual = ["192.168.0.0/16", "fd00::/48"];
        for ok in [2, 254, -2, -254] {
            check(Gateway::Offset(ok), &dual, 8, &[], "macvlan", "l3").unwrap();
        }
        // IPv6 has no broadcast; -1 is refused only because of IPv4.
        check(Gateway::Offset(-1), &["fd00::/48"], 8, &[], "macvlan", "l3").unwrap();
        for (bad, says) in [
            (0, "network address"),
            (-256, "network address"),
            (-1, "broadcast"),
            (255, "broadcast"),
            (256, "outside"),
            (-257, "outside"),
            (i64::MAX, "outside"),
            (i64::MIN, "outside"),
        ] {
            let err = check(Gateway::Offset(bad), &dual, 8, &[], "macvlan", "l3").unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("spec.ipam.gateway:") && text.contains(says),
                "{bad}: {text}"
            );
            assert!(text.contains(&format!("offset: {bad}")), "{text}");
        }
        // A large IPv6 block takes any offset an i64 can say.
        check(
            Gateway::Offset(i64::MAX),
            &["fd00::/48"],
            80,
            &[],
            "ipvlan",
            "l3",
        )
        .unwrap();
        check(Gateway::Offset(-5), &["::/0"], 128, &[], "ipvlan", "l3").unwrap();
    }

    #[test]
    fn a_gateway_inside_an_exclude_is_refused_naming_the_block() {
        let subnets = ["192.168.0.0/16"];
        // The gateway of the third block (192.168.2.0/24) is 192.168.2.10.
        let err = check(
            Gateway::Offset(10),
            &subnets,
            8,
            &["192.168.2.8/29"],
            "macvlan",
            "",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("192.168.2.10")
                && err.contains("192.168.2.0/24")
                && err.contains("192.168.2.8/29"),
            "{err}"
        );
        // Excludes that miss every gateway are fine.
        check(
            Gateway::Offset(10),
            &subnets,
            8,
            &["192.168.2.0/29", "10.0.0.0/8"],
            "macvlan",
            "",
        )
        .unwrap();
        check(
            Gateway::Offset(-2),
            &subnets,
            8,
            &["192.168.0.0/17"],
            "macvlan",
            "",
        )
        .unwrap_err();
        // Asked for explicitly, offset 1 is checked like any other (a spec
        // without the field is not checked at all: `NetworkSpec::validate`).
        check(
            Gateway::Offset(1),
            &subnets,
            8,
            &["192.168.0.0/24"],
            "macvlan",
            "",
        )
        .unwrap_err();
    }

    #[test]
    fn none_only_for_ipvlan_l3_and_l3s() {
        for (plugin, mode) in [("ipvlan", "l3"), ("", "l3s"), ("ipvlan", "l3s")] {
            check(Gateway::None, &["10.0.0.0/16"], 8, &[], plugin, mode).unwrap();
        }
        for (plugin, mode, says) in [
            ("macvlan", "l3", "macvlan"),
            ("host-device", "", "host-device"),
            ("ptp", "", "ptp"),
            ("sriov", "", "sriov"),
            ("ipvlan", "l2", "ipvlan l2"),
        ] {
            let err = check(Gateway::None, &["10.0.0.0/16"], 8, &[], plugin, mode)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("spec.ipam.gateway: \"none\"") && err.contains(says),
                "{plugin}: {err}"
            );
        }
    }
}
