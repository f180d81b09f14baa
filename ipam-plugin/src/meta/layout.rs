//! Pure steps of the meta plugin's ADD: split the IPAM answer per NIC,
//! write each NIC's delegate config, merge the delegates' results.
//!
//! Kept free of IO so the fiddly parts (route attribution, index
//! renumbering) are tested without processes or namespaces.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::cni::{CniResult, CniVersion, Dns, IpConfig, Route};
use crate::Error;

/// One NIC and what the pod gets on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicPlan {
    pub nic: String,
    /// The NIC's rail, as the IPAM reported it (`None` from an IPAM
    /// plugin that does not say).
    pub rail: Option<u32>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    /// The MAC the daemon says the pod's interface must have (its
    /// `mac_address` annotation).
    pub mac: Option<String>,
}

/// Splits railyard-ipam's `reportNics` result (host NICs as `interfaces`,
/// IPs pointing at them) into one plan per NIC, in the IPAM's order.
///
/// CNI routes name no interface, so each route goes to the NIC whose
/// gateway it uses (the daemon's contract), or failing that the one NIC
/// whose subnet holds the gateway; a route without a gateway (a network
/// with `gateway: none`) to the NIC railyard-ipam names in its private
/// `railyardNic`. A route that fits no NIC or several is an error rather
/// than a guess.
pub fn split_by_nic(result: &CniResult, ipam: &str) -> Result<Vec<NicPlan>, Error> {
    let what = format!("result of IPAM plugin {ipam:?}");
    if result.interfaces.is_empty() {
        return Err(Error::decode(
            &what,
            "it names no NICs (`interfaces`); railyard-cni needs railyard-ipam, \
             which lists them when asked with ipam.reportNics",
        ));
    }
    let mut plans: Vec<NicPlan> = result
        .interfaces
        .iter()
        .map(|i| NicPlan {
            nic: i.name.clone(),
            rail: i.rail,
            ips: Vec::new(),
            routes: Vec::new(),
            mac: i.pod_mac.clone(),
        })
        .collect();
    for (n, ip) in result.ips.iter().enumerate() {
        let plan = ip.interface.and_then(|i| plans.get_mut(i)).ok_or_else(|| {
            Error::decode(
                &what,
                format!("`ips[{n}]` ({}) points at no listed NIC", ip.address),
            )
        })?;
        plan.ips.push(IpConfig {
            interface: None,
            ..ip.clone()
        });
    }
    if let Some(empty) = plans.iter().find(|p| p.ips.is_empty()) {
        return Err(Error::decode(
            &what,
            format!("NIC {:?} has no address", empty.nic),
        ));
    }
    for (n, route) in result.routes.iter().enumerate() {
        let owner = match (route.gw, route.nic) {
            (Some(gw), _) => route_owner(&plans, gw),
            (None, Some(i)) => (i < plans.len()).then_some(i),
            (None, None) => None,
        }
        .ok_or_else(|| {
            Error::decode(
                &what,
                format!(
                    "`routes[{n}]` ({} via {:?}) cannot be attributed to exactly one NIC",
                    route.dst, route.gw
                ),
            )
        })?;
        plans[owner].routes.push(Route {
            nic: None,
            ..route.clone()
        });
    }
    Ok(plans)
}

fn route_owner(plans: &[NicPlan], gw: IpAddr) -> Option<usize> {
    let unique = |hits: Vec<usize>| (hits.len() == 1).then(|| hits[0]);
    let by_gateway = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| p.ips.iter().any(|ip| ip.gateway == Some(gw)))
        .map(|(i, _)| i)
        .collect();
    unique(by_gateway).or_else(|| {
        let on_link = plans
            .iter()
            .enumerate()
            .filter(|(_, p)| p.ips.iter().any(|ip| ip.address.contains(&gw)))
            .map(|(i, _)| i)
            .collect();
        unique(on_link)
    })
}

/// The delegate's config for one NIC: the user's `delegate` section, the
/// network's name and version, the NIC under `nic_field`, and the NIC's
/// addresses and routes as `static` IPAM (which every reference plugin
/// accepts and which keeps no state of its own).
pub fn delegate_config(
    delegate: &Map<String, Value>,
    name: &str,
    version: CniVersion,
    nic_field: Option<&str>,
    plan: &NicPlan,
) -> Map<String, Value> {
    let mut conf = delegate.clone();
    conf.insert("cniVersion".into(), version.as_str().into());
    conf.insert("name".into(), name.into());
    if let Some(field) = nic_field {
        conf.insert(field.into(), plan.nic.clone().into());
    }
    let addresses: Vec<Value> = plan
        .ips
        .iter()
        .map(|ip| match ip.gateway {
            Some(gw) => json!({"address": ip.address.to_string(), "gateway": gw.to_string()}),
            None => json!({"address": ip.address.to_string()}),
        })
        .collect();
    let routes: Vec<Value> = plan
        .routes
        .iter()
        .map(|r| match r.gw {
            Some(gw) => json!({"dst": r.dst.to_string(), "gw": gw.to_string()}),
            None => json!({"dst": r.dst.to_string()}),
        })
        .collect();
    conf.insert(
        "ipam".into(),
        json!({"type": "static", "addresses": addresses, "routes": routes}),
    );
    conf
}

/// One result out of the delegates' results, in NIC order: interfaces
/// concatenated, each IP's `interface` shifted by the interfaces before
/// it, routes concatenated, and the IPAM's DNS (delegates add none).
pub fn merge(results: &[CniResult], dns: &Dns) -> CniResult {
    let mut merged = CniResult {
        dns: dns.clone(),
        ..CniResult::default()
    };
    for result in results {
        let offset = merged.interfaces.len();
        merged.interfaces.extend(result.interfaces.iter().cloned());
        merged.ips.extend(result.ips.iter().map(|ip| IpConfig {
            interface: ip.interface.map(|i| i + offset),
            ..ip.clone()
        }));
        merged.routes.extend(result.routes.iter().cloned());
        if merged.dns.is_empty() {
            merged.dns = result.dns.clone();
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::Interface;
    use crate::error::codes;

    fn ip(addr: &str, gw: &str, interface: Option<usize>) -> IpConfig {
        IpConfig {
            address: addr.parse().unwrap(),
            gateway: Some(gw.parse().unwrap()),
            interface,
        }
    }

    fn route(dst: &str, gw: &str) -> Route {
        Route::new(dst.parse().unwrap(), Some(gw.parse().unwrap()))
    }

    fn nic(name: &str) -> Interface {
        Interface {
            name: name.into(),
            ..Interface::default()
        }
    }

    fn two_rails() -> CniResult {
        CniResult {
            interfaces: vec![nic("eth1"), nic("eth2")],
            ips: vec![
                ip("192.168.3.10/24", "192.168.3.1", Some(0)),
                ip("192.168.67.10/24", "192.168.67.1", Some(1)),
                ip("fd00:1::10/64", "fd00:1::1", Some(1)),
            ],
            routes: vec![
                route("192.168.64.0/18", "192.168.67.1"),
                route("192.168.0.0/18", "192.168.3.1"),
                route("fd00::/48", "fd00:1::1"),
            ],
            dns: Dns::default(),
        }
    }

    #[test]
    fn splits_ips_and_routes_per_nic() {
        let plans = split_by_nic(&two_rails(), "railyard-ipam").unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].nic, "eth1");
        assert_eq!(
            plans[0].ips,
            vec![ip("192.168.3.10/24", "192.168.3.1", None)]
        );
        assert_eq!(
            plans[0].routes,
            vec![route("192.168.0.0/18", "192.168.3.1")]
        );
        assert_eq!(plans[1].ips.len(), 2);
        assert_eq!(plans[1].routes.len(), 2);
    }

    #[test]
    fn on_link_gateway_attributes_a_route_when_no_nic_uses_it() {
        let mut r = two_rails();
        r.routes = vec![route("10.0.0.0/8", "192.168.67.254")];
        let plans = split_by_nic(&r, "i").unwrap();
        assert_eq!(plans[1].routes.len(), 1);
    }

    #[test]
    fn device_routes_go_to_the_nic_railyard_ipam_names() {
        let mut r = two_rails();
        for ip in &mut r.ips {
            ip.gateway = None;
        }
        r.routes = vec![
            Route {
                nic: Some(1),
                ..Route::new("192.168.64.0/18".parse().unwrap(), None)
            },
            Route {
                nic: Some(0),
                ..Route::new("192.168.0.0/18".parse().unwrap(), None)
            },
        ];
        let plans = split_by_nic(&r, "railyard-ipam").unwrap();
        assert_eq!(
            plans[0].routes,
            vec![Route::new("192.168.0.0/18".parse().unwrap(), None)]
        );
        assert_eq!(
            plans[1].routes,
            vec![Route::new("192.168.64.0/18".parse().unwrap(), None)]
        );
        let conf = delegate_config(&Map::new(), "n", CniVersion::V1_0_0, None, &plans[0]);
        assert_eq!(
            conf["ipam"],
            json!({"type": "static", "addresses": [{"address": "192.168.3.10/24"}],
                   "routes": [{"dst": "192.168.0.0/18"}]})
        );
        // A NIC index that is not listed is not a guess either.
        r.routes[0].nic = Some(2);
        let err = split_by_nic(&r, "railyard-ipam").unwrap_err();
        assert_eq!(err.code(), codes::DECODE_FAILURE, "{err}");
    }

    #[test]
    fn unattributable_answers_are_code_6() {
        let mut no_nics = two_rails();
        no_nics.interfaces.clear();
        let mut dangling = two_rails();
        dangling.ips[0].interface = Some(7);
        let mut stray_route = two_rails();
        stray_route.routes.push(route("10.0.0.0/8", "10.9.9.9"));
        let mut no_gw = two_rails();
        no_gw
            .routes
            .push(Route::new("10.0.0.0/8".parse().unwrap(), None));
        let mut empty_nic = two_rails();
        empty_nic.interfaces.push(nic("eth3"));
        for bad in [no_nics, dangling, stray_route, no_gw, empty_nic] {
            let err = split_by_nic(&bad, "host-local").unwrap_err();
            assert_eq!(err.code(), codes::DECODE_FAILURE, "{err}");
        }
    }

    #[test]
    fn delegate_config_is_static_ipam_with_the_nic() {
        let plans = split_by_nic(&two_rails(), "i").unwrap();
        let delegate = json!({"type": "macvlan", "mode": "bridge"});
        let Value::Object(delegate) = delegate else {
            unreachable!()
        };
        let conf = delegate_config(
            &delegate,
            "rdma",
            CniVersion::V1_1_0,
            Some("master"),
            &plans[0],
        );
        assert_eq!(
            Value::Object(conf),
            json!({
                "type": "macvlan", "mode": "bridge", "cniVersion": "1.1.0", "name": "rdma",
                "master": "eth1",
                "ipam": {"type": "static",
                    "addresses": [{"address": "192.168.3.10/24", "gateway": "192.168.3.1"}],
                    "routes": [{"dst": "192.168.0.0/18", "gw": "192.168.3.1"}]}
            })
        );
        let ptp = delegate_config(&delegate, "rdma", CniVersion::V1_0_0, None, &plans[0]);
        assert!(!ptp.contains_key("master"));
    }

    #[test]
    fn merge_renumbers_interface_indexes() {
        let macvlan = |name: &str, addr: &str| CniResult {
            interfaces: vec![nic(name)],
            ips: vec![ip(addr, "192.168.3.1", Some(0))],
            ..CniResult::default()
        };
        let ptp = CniResult {
            interfaces: vec![nic("veth1234"), nic("net1-1")],
            ips: vec![ip("192.168.67.10/24", "192.168.67.1", Some(1))],
            routes: vec![route("192.168.64.0/18", "192.168.67.1")],
            dns: Dns::default(),
        };
        let merged = merge(
            &[macvlan("net1-0", "192.168.3.10/24"), ptp],
            &Dns::default(),
        );
        let names: Vec<&str> = merged.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["net1-0", "veth1234", "net1-1"]);
        let indexes: Vec<Option<usize>> = merged.ips.iter().map(|i| i.interface).collect();
        assert_eq!(indexes, [Some(0), Some(2)]);
        assert_eq!(merged.routes.len(), 1);
    }
}
