//! External IPAM (`multiNICIPAM: false`): a single-NIC IPAM plugin the user
//! names (host-local, Whereabouts) allocates the pod's addresses, once per
//! selected NIC, while railyard still plans the per-host blocks, programs
//! the routes to them and picks the NICs.
//!
//! The user's config lives in `spec.ipam.external` (and in the NAD's
//! `ipam.external`) beside railyard's planning keys. For each NIC the pod
//! gets, railyard-cni writes that NIC's host block into it ([`fill`]): the
//! plugin is *told* the block, so every address it hands out is inside a
//! block the daemons route. That is why only plugins whose range railyard
//! knows how to set are accepted, and why the keys that set a range are
//! refused in the user's config: a range of the user's own would put pods
//! outside the routed blocks.
//!
//! Everything here is pure: the planner validates the spec with [`check`],
//! railyard-cni validates its config with the same function and builds each
//! NIC's config with [`fill`].

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::ipam::ChosenBlock;

/// The key holding the external IPAM config, in `spec.ipam` and in the
/// railyard-cni config's `ipam`.
pub const KEY: &str = "external";

/// The IPAM plugins railyard can tell a block to.
pub const TYPES: [&str; 2] = [HOST_LOCAL, WHEREABOUTS];
pub const HOST_LOCAL: &str = "host-local";
pub const WHEREABOUTS: &str = "whereabouts";

/// railyard's own IPAM types: they allocate from the daemon, never "externally".
pub const OWN_TYPES: [&str; 2] = ["railyard-ipam", "multi-nic-ipam"];

/// Keys railyard-cni sets in each NIC's config, per plugin: the range (the
/// NIC's host block), its gateway, the excluded addresses, and the routes
/// (the rail's routes: the same route on every rail would clash).
pub fn filled_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        HOST_LOCAL => &[
            "ranges",
            "subnet",
            "rangeStart",
            "rangeEnd",
            "gateway",
            "routes",
        ],
        WHEREABOUTS => &[
            "range",
            "range_start",
            "range_end",
            "ipRanges",
            "exclude",
            "gateway",
            "routes",
        ],
        _ => &[],
    }
}

/// A problem with an external IPAM config: the field (below `prefix`), its
/// value as written, and why. Each caller turns it into its own error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub value: String,
    pub reason: String,
}

/// Checks an external IPAM config; `prefix` is where it sits
/// (`spec.ipam.external`, `ipam.external`) and prefixes every field named.
/// Returns the config as an object.
pub fn check<'a>(prefix: &str, value: &'a Value) -> Result<&'a Map<String, Value>, Problem> {
    let problem = |field: String, value: String, reason: String| Problem {
        field,
        value,
        reason,
    };
    let Some(conf) = value.as_object() else {
        return Err(problem(
            prefix.to_owned(),
            value.to_string(),
            "must be an object: the IPAM plugin's config, e.g. {\"type\": \"host-local\"}".into(),
        ));
    };
    let field = |k: &str| format!("{prefix}.{k}");
    let kind = match conf.get("type") {
        None => {
            return Err(problem(
                field("type"),
                String::new(),
                format!("is required: the IPAM plugin ({})", TYPES.join(" or ")),
            ))
        }
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(problem(
                field("type"),
                other.to_string(),
                "must be a string naming the IPAM plugin".into(),
            ))
        }
    };
    if OWN_TYPES.contains(&kind) {
        return Err(problem(
            field("type"),
            kind.to_owned(),
            format!(
                "is railyard's own IPAM, not an external one; drop {prefix} (and set \
                 multiNICIPAM: true) to allocate with railyard"
            ),
        ));
    }
    if !TYPES.contains(&kind) {
        return Err(problem(
            field("type"),
            kind.to_owned(),
            format!(
                "is not an IPAM railyard can tell each NIC's host block to (one of {}); \
                 an IPAM whose range railyard cannot set would hand out addresses no \
                 route leads to",
                TYPES.join(", ")
            ),
        ));
    }
    for key in ["name", "cniVersion"] {
        if let Some(v) = conf.get(key) {
            return Err(problem(
                field(key),
                show(v),
                "is set by railyard-cni for each NIC".into(),
            ));
        }
    }
    if let Some(key) = filled_keys(kind).iter().find(|k| conf.contains_key(**k)) {
        return Err(problem(
            field(key),
            show(&conf[*key]),
            "is set by railyard-cni for each NIC: the NIC's host block (with its gateway, \
             the network's excludes and the rail's routes); exclude addresses with \
             spec.ipam.excludeCIDRs, add routes with spec.routes"
                .into(),
        ));
    }
    if kind == HOST_LOCAL {
        if let Some(v) = conf.get("dataDir") {
            if !v.as_str().is_some_and(|d| d.starts_with('/')) {
                return Err(problem(
                    field("dataDir"),
                    show(v),
                    "must be an absolute path".into(),
                ));
            }
        }
    }
    Ok(conf)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The plugin's type of a config [`check`] accepted.
pub fn kind(conf: &Map<String, Value>) -> &str {
    conf.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// One NIC's IPAM section: the user's `conf` with the NIC's host blocks
/// (one per family) written in as the plugin's range, each with its gateway,
/// and the block's excluded addresses left out.
///
/// - host-local: `ranges`, one range set per block; a block with excludes
///   becomes several ranges of one set (`rangeStart`/`rangeEnd` around each
///   exclude). host-local skips the gateway itself.
/// - Whereabouts: `range` (one block) or `ipRanges` (dual stack), each with
///   `exclude`: the gateway and the block's excludes.
pub fn fill(conf: &Map<String, Value>, blocks: &[ChosenBlock]) -> Map<String, Value> {
    let mut out = conf.clone();
    match kind(conf) {
        HOST_LOCAL => {
            let sets: Vec<Value> = blocks
                .iter()
                .map(|b| {
                    let range = |run: Option<(IpAddr, IpAddr)>| {
                        let mut r = Map::new();
                        r.insert("subnet".into(), b.cidr.to_string().into());
                        if let Some(gw) = b.gateway {
                            r.insert("gateway".into(), gw.to_string().into());
                        }
                        if let Some((start, end)) = run {
                            r.insert("rangeStart".into(), start.to_string().into());
                            r.insert("rangeEnd".into(), end.to_string().into());
                        }
                        Value::Object(r)
                    };
                    let ranges: Vec<Value> = if b.excludes.is_empty() {
                        vec![range(None)]
                    } else {
                        free_runs(b).into_iter().map(|r| range(Some(r))).collect()
                    };
                    Value::Array(ranges)
                })
                .collect();
            out.insert("ranges".into(), Value::Array(sets));
        }
        WHEREABOUTS => {
            let range = |b: &ChosenBlock| {
                let mut exclude: Vec<String> = b
                    .gateway
                    .map(|gw| IpNet::from(gw).to_string())
                    .into_iter()
                    .collect();
                exclude.extend(b.excludes.iter().map(ToString::to_string));
                (b.cidr.to_string(), exclude)
            };
            match blocks {
                [one] => {
                    let (cidr, exclude) = range(one);
                    out.insert("range".into(), cidr.into());
                    out.insert("exclude".into(), json!(exclude));
                    if let Some(gw) = one.gateway {
                        out.insert("gateway".into(), gw.to_string().into());
                    }
                }
                many => {
                    let ranges: Vec<Value> = many
                        .iter()
                        .map(|b| {
                            let (cidr, exclude) = range(b);
                            json!({"range": cidr, "exclude": exclude})
                        })
                        .collect();
                    out.insert("ipRanges".into(), Value::Array(ranges));
                }
            }
        }
        _ => {}
    }
    out
}

/// The runs of addresses of `b` a pod may get: from the first address after
/// the network address to the last before the broadcast (IPv4) or the last
/// address (IPv6), minus the excludes. host-local takes a range per run.
fn free_runs(b: &ChosenBlock) -> Vec<(IpAddr, IpAddr)> {
    let v4 = b.cidr.addr().is_ipv4();
    let first = to_u128(b.cidr.network()) + 1;
    let last = to_u128(b.cidr.broadcast()) - u128::from(v4);
    let mut holes: Vec<(u128, u128)> = b
        .excludes
        .iter()
        .map(|e| (to_u128(e.network()), to_u128(e.broadcast())))
        .collect();
    holes.sort_unstable();
    let mut runs = Vec::new();
    let mut next = first;
    for (lo, hi) in holes {
        if lo > next && next <= last {
            runs.push((next, (lo - 1).min(last)));
        }
        next = next.max(hi.saturating_add(1));
    }
    if next <= last {
        runs.push((next, last));
    }
    runs.into_iter()
        .map(|(s, e)| (from_u128(s, v4), from_u128(e, v4)))
        .collect()
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::from(u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes())
    } else {
        IpAddr::from(n.to_be_bytes())
    }
}

/// The blocks' excludes: the network's exclude CIDRs that overlap `block`.
pub fn excludes_in(block: &IpNet, excludes: &[IpNet]) -> Vec<IpNet> {
    excludes
        .iter()
        .filter(|e| crate::spec::overlaps(block, e))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cidr: &str, gw: &str, excludes: &[&str]) -> ChosenBlock {
        ChosenBlock {
            cidr: cidr.parse().unwrap(),
            gateway: Some(gw.parse().unwrap()),
            excludes: excludes.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    fn problem(v: Value) -> Problem {
        check("spec.ipam.external", &v).unwrap_err()
    }

    #[test]
    fn check_names_the_field_and_value() {
        assert!(check("p", &json!({"type": "host-local", "dataDir": "/var/lib/x"})).is_ok());
        assert!(check("p", &json!({"type": "whereabouts", "kubernetes": {}})).is_ok());
        let cases = [
            (json!("host-local"), "spec.ipam.external", "\"host-local\""),
            (json!({}), "spec.ipam.external.type", ""),
            (json!({"type": 3}), "spec.ipam.external.type", "3"),
            (
                json!({"type": "railyard-ipam"}),
                "spec.ipam.external.type",
                "railyard-ipam",
            ),
            (json!({"type": "dhcp"}), "spec.ipam.external.type", "dhcp"),
            (
                json!({"type": "host-local", "subnet": "10.0.0.0/8"}),
                "spec.ipam.external.subnet",
                "10.0.0.0/8",
            ),
            (
                json!({"type": "whereabouts", "range": "10.0.0.0/8"}),
                "spec.ipam.external.range",
                "10.0.0.0/8",
            ),
            (
                json!({"type": "host-local", "name": "x"}),
                "spec.ipam.external.name",
                "x",
            ),
            (
                json!({"type": "host-local", "dataDir": "var"}),
                "spec.ipam.external.dataDir",
                "var",
            ),
        ];
        for (v, field, value) in cases {
            let p = problem(v.clone());
            assert_eq!((p.field.as_str(), p.value.as_str()), (field, value), "{v}");
        }
    }

    #[test]
    fn host_local_gets_the_block_and_ranges_around_excludes() {
        let conf = check("p", &json!({"type": "host-local", "dataDir": "/d"}))
            .unwrap()
            .clone();
        let plain = fill(&conf, &[block("192.168.1.0/24", "192.168.1.1", &[])]);
        assert_eq!(
            Value::Object(plain),
            json!({"type": "host-local", "dataDir": "/d",
                   "ranges": [[{"subnet": "192.168.1.0/24", "gateway": "192.168.1.1"}]]})
        );
        let holed = fill(
            &conf,
            &[
                block(
                    "192.168.1.0/24",
                    "192.168.1.1",
                    &["192.168.1.16/28", "192.168.1.0/30"],
                ),
                block("fd00::/120", "fd00::1", &[]),
            ],
        );
        let set = &holed["ranges"][0];
        let runs: Vec<(String, String)> = set
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["rangeStart"].as_str().unwrap().to_owned(),
                    r["rangeEnd"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            runs,
            [
                ("192.168.1.4".into(), "192.168.1.15".into()),
                ("192.168.1.32".into(), "192.168.1.254".into())
            ]
        );
        assert_eq!(
            holed["ranges"][1],
            json!([{"subnet": "fd00::/120", "gateway": "fd00::1"}])
        );
    }

    #[test]
    fn whereabouts_gets_a_range_excluding_the_gateway() {
        let conf = json!({"type": "whereabouts"}).as_object().unwrap().clone();
        let one = fill(
            &conf,
            &[block("192.168.1.0/24", "192.168.1.1", &["192.168.1.8/29"])],
        );
        assert_eq!(one["range"], "192.168.1.0/24");
        assert_eq!(one["gateway"], "192.168.1.1");
        assert_eq!(one["exclude"], json!(["192.168.1.1/32", "192.168.1.8/29"]));
        let dual = fill(
            &conf,
            &[
                block("192.168.1.0/24", "192.168.1.1", &[]),
                block("fd00::/120", "fd00::1", &[]),
            ],
        );
        assert_eq!(
            dual["ipRanges"],
            json!([{"range": "192.168.1.0/24", "exclude": ["192.168.1.1/32"]},
                   {"range": "fd00::/120", "exclude": ["fd00::1/128"]}])
        );
    }
}
