//! Kube-OVN-style pod annotations, turned into the ADD's selection.
//!
//! Read per network, so one pod can ask differently on each attachment:
//!
//! | annotation (on the pod) | becomes |
//! |---|---|
//! | `<network>.<ns>.kubernetes.io/ip_address: 192.168.65.7,fd00::7` | `Selection.ips` (each in its rail's block) |
//! | `<network>.<ns>.kubernetes.io/ip_pool: a,b;c,d` | `Selection.pool_ips` (first free per rail and family) |
//! | `<network>.<ns>.kubernetes.io/mac_address: 02:..` or `0=02:..,1=02:..` | `Selection.annotated_mac(s)` (the only interface's, or per rail) |
//! | `<network>.railyard.dev/pool: db` (pod, else its namespace) | `Selection.pool` |
//!
//! `<ns>` is the NetworkAttachmentDefinition's namespace, as Kube-OVN's
//! provider name writes it; any is accepted, but two that disagree are an
//! error. What the pod's own CNI arguments already say wins only when it says
//! the same: a disagreement is refused naming the annotation, so a pod never
//! starts with addresses it did not ask for.
//!
//! Pure: the daemon fetches [`PodFacts`] through its
//! [`PodSource`](crate::sweep::PodSource) and calls [`apply`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use railyard_core::ipam::Selection;

use crate::sweep::PodFacts;

/// Kube-OVN's per-network keys, after `<network>.<namespace>.`.
const IP_ADDRESS: &str = "kubernetes.io/ip_address";
const IP_POOL: &str = "kubernetes.io/ip_pool";
const MAC_ADDRESS: &str = "kubernetes.io/mac_address";
/// railyard's per-network pool key, after `<network>.`.
const POOL: &str = "railyard.dev/pool";

/// What the annotations asked for, and from which keys (for error messages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub keys: Vec<String>,
}

impl Applied {
    /// " (from annotation k1, k2)" when any annotation was used.
    pub fn suffix(&self) -> String {
        if self.keys.is_empty() {
            String::new()
        } else {
            format!(" (from annotation {})", self.keys.join(", "))
        }
    }
}

/// Fills `selection` from the pod's annotations for `network`. Errors name
/// the annotation and its value.
pub fn apply(
    network: &str,
    facts: &PodFacts,
    selection: &mut Selection,
) -> Result<Applied, String> {
    let mut applied = Applied::default();
    if let Some((key, value)) = kube_ovn(network, &facts.annotations, IP_ADDRESS)? {
        let ips = addresses(&key, &value)?;
        if !selection.ips.is_empty() && !same_set(&selection.ips, &ips) {
            return Err(format!(
                "annotation {key}={value:?} disagrees with the pod's ips ({}) from its CNI arguments",
                list(&selection.ips)
            ));
        }
        selection.ips = ips;
        applied.keys.push(key);
    }
    if let Some((key, value)) = kube_ovn(network, &facts.annotations, IP_POOL)? {
        let ips = addresses(&key, &value)?;
        if !selection.pool_ips.is_empty() && !same_set(&selection.pool_ips, &ips) {
            return Err(format!(
                "annotation {key}={value:?} disagrees with the pod's ipPool ({}) from its CNI arguments",
                list(&selection.pool_ips)
            ));
        }
        selection.pool_ips = ips;
        applied.keys.push(key);
    }
    if let Some((key, value)) = kube_ovn(network, &facts.annotations, MAC_ADDRESS)? {
        macs(&key, &value, selection)?;
        applied.keys.push(key);
    }
    let pool_key = format!("{network}.{POOL}");
    let pool = facts
        .annotations
        .get(&pool_key)
        .map(|v| (format!("pod annotation {pool_key}"), v))
        .or_else(|| {
            facts
                .namespace_annotations
                .get(&pool_key)
                .map(|v| (format!("namespace annotation {pool_key}"), v))
        });
    if let Some((key, value)) = pool {
        let value = value.trim();
        if value.is_empty() {
            return Err(format!(
                "{key} is empty; it names a pool of network {network}"
            ));
        }
        match &selection.pool {
            Some(p) if p != value => {
                return Err(format!(
                    "{key}={value:?} disagrees with the pod's pool {p:?} from its CNI arguments"
                ))
            }
            _ => selection.pool = Some(value.to_string()),
        }
        applied.keys.push(key);
    }
    if selection.pool.is_some() && !selection.pool_ips.is_empty() {
        return Err(format!(
            "the pod asks for pool {:?} and for an ip_pool list; choose one{}",
            selection.pool.as_deref().unwrap_or_default(),
            applied.suffix()
        ));
    }
    Ok(applied)
}

/// The value of `<network>.<any namespace>.<suffix>`, if present; two keys
/// of different namespaces with different values are an error.
fn kube_ovn(
    network: &str,
    annotations: &BTreeMap<String, String>,
    suffix: &str,
) -> Result<Option<(String, String)>, String> {
    let prefix = format!("{network}.");
    let mut found: Option<(String, String)> = None;
    for (k, v) in annotations {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        let Some(ns) = rest.strip_suffix(suffix).and_then(|r| r.strip_suffix('.')) else {
            continue;
        };
        if ns.is_empty() || ns.contains('.') {
            continue;
        }
        match &found {
            Some((k0, v0)) if v0 != v => {
                return Err(format!(
                    "annotations {k0}={v0:?} and {k}={v:?} disagree; keep one"
                ))
            }
            Some(_) => {}
            None => found = Some((k.clone(), v.clone())),
        }
    }
    Ok(found)
}

/// `02:aa:..` (the pod's only interface) or `0=02:aa:..,1=02:ab:..` (per
/// rail), each a unicast MAC, none repeated.
fn macs(key: &str, value: &str, selection: &mut Selection) -> Result<(), String> {
    let bad = |part: &str, why: String| format!("annotation {key}={value:?}: {part:?} {why}");
    if !value.contains('=') {
        let mac = railyard_core::mac::normalize(value).map_err(|why| bad(value, why))?;
        selection.annotated_mac = Some(mac);
        return Ok(());
    }
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (rail, mac) = part
            .split_once('=')
            .ok_or_else(|| bad(part, "is not <rail>=<mac>".into()))?;
        let rail: u32 = rail
            .trim()
            .parse()
            .map_err(|_| bad(part, "does not start with a rail index".into()))?;
        let mac = railyard_core::mac::normalize(mac).map_err(|why| bad(part, why))?;
        if selection.annotated_macs.insert(rail, mac).is_some() {
            return Err(bad(part, format!("names rail {rail} twice")));
        }
    }
    if let Some((a, b)) = railyard_core::mac::duplicate(&selection.annotated_macs) {
        return Err(format!(
            "annotation {key}={value:?} gives rails {a} and {b} one MAC: each interface needs its own"
        ));
    }
    Ok(())
}

/// Addresses separated by commas or semicolons (Kube-OVN separates the
/// families of one pod with `,` and the pods of an `ip_pool` with `;`).
fn addresses(key: &str, value: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in value
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let addr = part.split_once('/').map_or(part, |(a, _)| a);
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("annotation {key}={value:?}: {part:?} is not an IP address"))?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    if out.is_empty() {
        return Err(format!("annotation {key} is empty"));
    }
    Ok(out)
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn list(a: &[IpAddr]) -> String {
    a.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pod: &[(&str, &str)], ns: &[(&str, &str)]) -> PodFacts {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        PodFacts {
            annotations: map(pod),
            namespace_annotations: map(ns),
            ..PodFacts::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn kube_ovn_addresses_and_pools_become_the_selection() {
        let f = facts(
            &[
                (
                    "rdma.default.kubernetes.io/ip_address",
                    "192.168.65.7, fd00::7/64",
                ),
                ("other.default.kubernetes.io/ip_address", "10.9.9.9"),
                ("ovn.kubernetes.io/ip_address", "10.16.0.3"),
            ],
            &[("rdma.railyard.dev/pool", "db")],
        );
        let mut sel = Selection::default();
        let applied = apply("rdma", &f, &mut sel).unwrap();
        assert_eq!(sel.ips, [ip("192.168.65.7"), ip("fd00::7")]);
        assert_eq!(sel.pool.as_deref(), Some("db"));
        assert_eq!(applied.keys.len(), 2);
        // The pod's own key wins over its namespace's.
        let f = facts(
            &[("rdma.railyard.dev/pool", "web")],
            &[("rdma.railyard.dev/pool", "db")],
        );
        let mut sel = Selection::default();
        apply("rdma", &f, &mut sel).unwrap();
        assert_eq!(sel.pool.as_deref(), Some("web"));
        // ip_pool: pods separated by `;`, families by `,`.
        let f = facts(
            &[(
                "rdma.ns1.kubernetes.io/ip_pool",
                "192.168.1.5,fd00::5;192.168.1.6,fd00::6",
            )],
            &[],
        );
        let mut sel = Selection::default();
        apply("rdma", &f, &mut sel).unwrap();
        assert_eq!(sel.pool_ips.len(), 4);
    }

    #[test]
    fn bad_or_conflicting_annotations_are_refused_naming_them() {
        let cases: Vec<(PodFacts, Selection, &str)> = vec![
            (
                facts(
                    &[("rdma.default.kubernetes.io/ip_address", "192.168.65.x")],
                    &[],
                ),
                Selection::default(),
                "rdma.default.kubernetes.io/ip_address",
            ),
            (
                facts(&[("rdma.default.kubernetes.io/ip_address", " , ")], &[]),
                Selection::default(),
                "is empty",
            ),
            (
                facts(
                    &[
                        ("rdma.a.kubernetes.io/ip_address", "192.168.65.7"),
                        ("rdma.b.kubernetes.io/ip_address", "192.168.65.8"),
                    ],
                    &[],
                ),
                Selection::default(),
                "disagree",
            ),
            (
                facts(
                    &[("rdma.default.kubernetes.io/ip_address", "192.168.65.7")],
                    &[],
                ),
                Selection {
                    ips: vec![ip("192.168.65.9")],
                    ..Selection::default()
                },
                "disagrees with the pod's ips (192.168.65.9)",
            ),
            (
                facts(&[], &[("rdma.railyard.dev/pool", "db")]),
                Selection {
                    pool: Some("web".into()),
                    ..Selection::default()
                },
                "namespace annotation rdma.railyard.dev/pool",
            ),
            (
                facts(
                    &[
                        ("rdma.railyard.dev/pool", "db"),
                        ("rdma.x.kubernetes.io/ip_pool", "192.168.1.5"),
                    ],
                    &[],
                ),
                Selection::default(),
                "choose one",
            ),
        ];
        for (f, mut sel, needle) in cases {
            let err = apply("rdma", &f, &mut sel).expect_err(needle);
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn mac_annotations_are_one_mac_or_one_per_rail() {
        let key = "rdma.default.kubernetes.io/mac_address";
        let mut sel = Selection::default();
        apply("rdma", &facts(&[(key, "02-AA-00-00-00-10")], &[]), &mut sel).unwrap();
        assert_eq!(sel.annotated_mac.as_deref(), Some("02:aa:00:00:00:10"));
        let mut sel = Selection::default();
        apply(
            "rdma",
            &facts(&[(key, "0=02:aa:00:00:00:10, 3=02:aa:00:00:00:13")], &[]),
            &mut sel,
        )
        .unwrap();
        assert_eq!(sel.annotated_macs.len(), 2);
        assert_eq!(sel.annotated_macs[&3], "02:aa:00:00:00:13");
        for (value, needle) in [
            ("03:00:00:00:00:01", "multicast"),
            (
                "0=02:aa:00:00:00:10,1=02:aa:00:00:00:10",
                "rails 0 and 1 one MAC",
            ),
            ("x=02:aa:00:00:00:10", "rail index"),
            ("0=02:aa:00:00:00:10,0=02:aa:00:00:00:11", "twice"),
        ] {
            let err = apply(
                "rdma",
                &facts(&[(key, value)], &[]),
                &mut Selection::default(),
            )
            .expect_err(value);
            assert!(
                err.contains(key) && err.contains(needle),
                "{err:?} lacks {needle:?}"
            );
        }
    }

    #[test]
    fn the_same_answer_twice_is_no_conflict() {
        let f = facts(
            &[("rdma.default.kubernetes.io/ip_address", "192.168.65.7")],
            &[],
        );
        let mut sel = Selection {
            ips: vec![ip("192.168.65.7")],
            ..Selection::default()
        };
        apply("rdma", &f, &mut sel).unwrap();
        assert_eq!(sel.ips, [ip("192.168.65.7")]);
    }
}
