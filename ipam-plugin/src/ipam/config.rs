//! What `railyard-ipam` reads from a network config: its `ipam` section,
//! the pod's selection (`args.cni`) and, standalone, the enclosing plugin's
//! `master`.
//!
//! The `ipam` section is ours alone, so an unknown key in it is refused
//! (code 2): a typo such as `sockt` would otherwise silently fall back to
//! the default socket and fail somewhere far less obvious. `args.cni`, in
//! contrast, is shared with every plugin of the chain, so keys we don't know
//! are ignored there, as the CNI conventions ask.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use railyard_core::ipam::{Selection, DEFAULT_SOCKET};

use serde::Deserialize;
use serde_json::Value;

use crate::client::DEFAULT_TIMEOUT;
use crate::cni::{decode, NetConf};
use crate::Error;

/// Keys the `ipam` section may carry.
const IPAM_KEYS: [&str; 5] = ["type", "socket", "network", "timeoutSeconds", "reportNics"];

/// The longest request budget accepted; beyond it the runtime's own
/// timeout fires first and the setting only hides a stuck daemon.
const MAX_TIMEOUT_SECONDS: u64 = 600;

/// The `ipam` section, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    pub socket: PathBuf,
    /// The daemon's name for the network; the netconf `name` unless set.
    pub network: String,
    pub timeout: Duration,
    /// Set by railyard-cni: list the host NICs as `interfaces` and point
    /// each IP at its NIC, so the meta plugin knows which master gets which
    /// address. Off for runtimes, which expect no interfaces from IPAM.
    pub report_nics: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    socket: Option<String>,
    network: Option<String>,
    timeout_seconds: Option<u64>,
    report_nics: Option<bool>,
}

impl IpamConfig {
    pub fn parse(conf: &NetConf) -> Result<IpamConfig, Error> {
        let Some(section) = &conf.ipam else {
            return Err(Error::invalid_config("ipam", "is missing"));
        };
        if let Some((key, value)) = section
            .iter()
            .find(|(k, _)| !IPAM_KEYS.contains(&k.as_str()))
        {
            return Err(Error::UnsupportedField {
                field: format!("ipam.{key}"),
                value: decode::show(value),
                reason: format!("railyard-ipam knows only {}", IPAM_KEYS.join(", ")),
            });
        }
        let raw: Raw = conf.ipam_as()?;
        let socket = match raw.socket {
            None => PathBuf::from(DEFAULT_SOCKET),
            Some(s) if s.starts_with('/') => PathBuf::from(s),
            // Relative to what? The runtime's working directory is not ours to guess.
            Some(s) => {
                return Err(Error::invalid_config(
                    "ipam.socket",
                    format!("= {s:?}: must be an absolute path"),
                ))
            }
        };
        let network = match raw.network {
            None => conf.name.clone(),
            Some(n) if !n.trim().is_empty() => n,
            Some(n) => {
                return Err(Error::invalid_config(
                    "ipam.network",
                    format!("= {n:?}: must not be empty"),
                ))
            }
        };
        let timeout = match raw.timeout_seconds {
            None => DEFAULT_TIMEOUT,
            Some(s @ 1..=MAX_TIMEOUT_SECONDS) => Duration::from_secs(s),
            Some(s) => {
                return Err(Error::invalid_config(
                    "ipam.timeoutSeconds",
                    format!("= {s}: must be between 1 and {MAX_TIMEOUT_SECONDS}"),
                ))
            }
        };
        Ok(IpamConfig {
            socket,
            network,
            timeout,
            report_nics: raw.report_nics.unwrap_or(false),
        })
    }
}

#[derive(Default, Deserialize)]
struct RawSelection {
    nics: Option<u32>,
    masters: Option<Vec<String>>,
    class: Option<String>,
    numa: Option<i32>,
    ips: Option<Vec<String>>,
    /// A workload pool of the network (`spec.ipam.pools`).
    pool: Option<String>,
    /// Kube-OVN's `ip_pool`: addresses, one free one taken per rail and family.
    #[serde(rename = "ipPool", alias = "ip_pool")]
    ip_pool: Option<Vec<String>>,
}

/// The pod's wishes from `args.cni` (Multus `cni-args`), and its static
/// addresses from the CNI `ips` capability (`runtimeConfig.ips`, which Multus
/// fills from a network selection element's `ips`) or `args.cni.ips`.
pub fn selection(conf: &NetConf) -> Result<Selection, Error> {
    let cni = conf.args.as_ref().and_then(|args| args.get("cni"));
    let raw: RawSelection = match cni {
        None | Some(Value::Null) => RawSelection::default(),
        Some(v) => decode::typed("network config", "args.cni", v)?,
    };
    let mut ips = static_ips("args.cni.ips", raw.ips.as_deref().unwrap_or_default())?;
    let runtime = conf.runtime_config.as_ref().and_then(|rc| rc.get("ips"));
    if let Some(v) = runtime.filter(|v| !v.is_null()) {
        let listed: Vec<String> = decode::typed("network config", "runtimeConfig.ips", v)?;
        for ip in static_ips("runtimeConfig.ips", &listed)? {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    if raw.nics == Some(0) {
        return Err(Error::invalid_config(
            "args.cni.nics",
            "= 0: a pod attached to a network needs at least one NIC",
        ));
    }
    let masters = raw.masters.unwrap_or_default();
    if let Some(i) = masters.iter().position(|m| m.trim().is_empty()) {
        return Err(Error::invalid_config(
            format!("args.cni.masters[{i}]"),
            "must be a NIC name, not empty",
        ));
    }
    if let Some(p) = raw.pool.as_deref().filter(|p| p.trim().is_empty()) {
        return Err(Error::invalid_config(
            "args.cni.pool",
            format!("= {p:?}: must name a pool of the network"),
        ));
    }
    let pool_ips = static_ips(
        "args.cni.ipPool",
        raw.ip_pool.as_deref().unwrap_or_default(),
    )?;
    let placed: Placed = match conf.extra.get(DEVICES_KEY) {
        None | Some(Value::Null) => Placed::default(),
        Some(v) => decode::typed("network config", DEVICES_KEY, v)?,
    };
    Ok(Selection {
        nics: raw.nics,
        masters,
        class: raw.class.filter(|c| !c.is_empty()),
        numa: raw.numa,
        ips,
        gpus: placed.gpus,
        device_rails: placed.device_rails,
        pool: raw.pool,
        pool_ips,
        // Only the daemon fills these, from the pod's annotations.
        ..Selection::default()
    })
}

/// The key railyard-cni adds with what the kubelet gave the pod (see
/// `meta::devices`): never written by users, only narrowing if it were.
pub const DEVICES_KEY: &str = "railyardDevices";

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Placed {
    #[serde(default)]
    gpus: Vec<railyard_core::align::GpuPlace>,
    #[serde(default)]
    device_rails: Vec<railyard_core::ipam::DeviceRail>,
}

/// Addresses as the `ips` capability writes them: `10.1.2.3/24` (the prefix
/// is the user's idea of the subnet; the pod gets its block's) or `10.1.2.3`.
/// At most one per family and rail is possible; the daemon checks the rest.
fn static_ips(field: &str, raw: &[String]) -> Result<Vec<IpAddr>, Error> {
    raw.iter()
        .enumerate()
        .map(|(i, s)| {
            let text = s.trim();
            let addr = text.split_once('/').map_or(text, |(a, _)| a);
            let net_ok = text.parse::<ipnet::IpNet>().is_ok() || !text.contains('/');
            addr.parse::<IpAddr>()
                .ok()
                .filter(|_| net_ok)
                .ok_or_else(|| {
                    Error::invalid_config(
                        format!("{field}[{i}]"),
                        format!("= {s:?}: is not an IP address (like 10.1.2.3 or 10.1.2.3/24)"),
                    )
                })
        })
        .collect()
}

/// Standalone mode: the enclosing plugin's (macvlan's, ipvlan's) `master`,
/// the one NIC this attachment can use.
pub fn standalone_master(conf: &NetConf) -> Result<Option<String>, Error> {
    Ok(conf.extra_as::<String>("master")?.filter(|m| !m.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;
    use serde_json::json;

    fn conf(v: Value) -> NetConf {
        NetConf::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn defaults_come_from_the_netconf() {
        let c = conf(
            json!({"cniVersion": "1.0.0", "name": "rdma", "type": "macvlan",
            "master": "eth1", "ipam": {"type": "railyard-ipam"}}),
        );
        let ipam = IpamConfig::parse(&c).unwrap();
        assert_eq!(ipam.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(ipam.network, "rdma");
        assert_eq!(ipam.timeout, DEFAULT_TIMEOUT);
        assert!(!ipam.report_nics);
        assert_eq!(standalone_master(&c).unwrap().as_deref(), Some("eth1"));
        assert_eq!(selection(&c).unwrap(), Selection::default());
    }

    #[test]
    fn unknown_ipam_key_is_code_2_with_key_and_value() {
        let c = conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
            "ipam": {"type": "railyard-ipam", "sockt": "/tmp/x.sock"}}));
        let err = IpamConfig::parse(&c).unwrap_err();
        assert_eq!(err.code(), codes::UNSUPPORTED_FIELD);
        let msg = err.to_string();
        assert!(
            msg.contains("`ipam.sockt`") && msg.contains("\"/tmp/x.sock\""),
            "{msg}"
        );
    }

    #[test]
    fn invalid_values_are_code_7_and_wrong_types_code_6() {
        let cases = [
            (
                json!({"socket": "run/ipam.sock"}),
                codes::INVALID_NETWORK_CONFIG,
            ),
            (json!({"network": ""}), codes::INVALID_NETWORK_CONFIG),
            (json!({"timeoutSeconds": 0}), codes::INVALID_NETWORK_CONFIG),
            (json!({"socket": 5}), codes::DECODE_FAILURE),
            (json!({"reportNics": "yes"}), codes::DECODE_FAILURE),
        ];
        for (ipam, code) in cases {
            let mut section = ipam.clone();
            section["type"] = "railyard-ipam".into();
            let c = conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "t", "ipam": section}));
            let err = IpamConfig::parse(&c).unwrap_err();
            assert_eq!(err.code(), code, "{ipam}: {err}");
        }
    }

    #[test]
    fn selection_reads_multus_cni_args_and_ignores_other_keys() {
        let c = conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
            "args": {"cni": {"nics": 2, "masters": ["eth1", "eth3"], "class": "",
                             "numa": 1, "other": true}}}));
        assert_eq!(
            selection(&c).unwrap(),
            Selection {
                nics: Some(2),
                masters: vec!["eth1".into(), "eth3".into()],
                class: None,
                numa: Some(1),
                ips: Vec::new(),
                ..Selection::default()
            }
        );
        let bad = conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
            "args": {"cni": {"nics": "two"}}}));
        let err = selection(&bad).unwrap_err();
        assert_eq!(err.code(), codes::DECODE_FAILURE);
        assert!(
            err.to_string().contains("`args.cni.nics` = \"two\""),
            "{err}"
        );
        let zero = conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
            "args": {"cni": {"nics": 0}}}));
        assert_eq!(
            selection(&zero).unwrap_err().code(),
            codes::INVALID_NETWORK_CONFIG
        );
    }

    #[test]
    fn pools_are_read_from_cni_args_and_bad_ones_named() {
        let c = conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
            "args": {"cni": {"pool": "db", "ip_pool": ["10.0.0.5", "10.0.1.5/24"]}}}));
        let sel = selection(&c).unwrap();
        assert_eq!(sel.pool.as_deref(), Some("db"));
        assert_eq!(
            sel.pool_ips,
            [
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "10.0.1.5".parse().unwrap()
            ]
        );
        for (args, needle) in [
            (json!({"pool": " "}), "args.cni.pool"),
            (json!({"ipPool": ["10.0.0.x"]}), "args.cni.ipPool[0]"),
        ] {
            let c = conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
                "args": {"cni": args}}));
            let err = selection(&c).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG, "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }
}
