//! The success result: one canonical form, written and read in every version.
//!
//! Plugins build and inspect [`CniResult`] only; the version shows up solely
//! at the edges ([`CniResult::to_value`], [`CniResult::from_value`]). That is
//! what lets the meta plugin take a 0.4.0 prevResult, call a 1.0.0 delegate
//! and answer a 1.1.0 runtime without any version-specific code of its own.
//!
//! Reading is lenient (unknown keys ignored, `null` lists treated as empty,
//! 1.1.0 attributes accepted in any version because libcni ≥ 1.2 emits them
//! at 1.0.0 too); writing is strict (only the fields the version defines).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::cni::{decode, CniVersion};
use crate::Error;

/// The version-independent result of an ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Empty for IPAM plugins, which must not know about interfaces.
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// 1.1.0+
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// 1.1.0+
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// 1.1.0+
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
    /// railyard's own, not the spec's: the rail a host NIC is on. Only
    /// railyard-ipam sets it, when railyard-cni asks for NICs
    /// (`ipam.reportNics`); that result never reaches a runtime, and no
    /// other plugin writes the key, so every other result leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rail: Option<u32>,
    /// railyard's own, on a pod interface: which rule chose its NIC for a
    /// pod with GPUs (`gpu-pcie-root`, `gpu-numa`, `gpu-unaligned`). Runtimes
    /// ignore keys they do not know; `railyard` and the logs show it.
    #[serde(
        default,
        rename = "railyardChoice",
        skip_serializing_if = "Option::is_none"
    )]
    pub choice: Option<String>,
    /// railyard's own, on a host NIC of railyard-ipam's `reportNics` answer:
    /// the MAC the pod's interface on it must have (the pod's `mac_address`
    /// annotation, read by the daemon). Never in a runtime's result.
    #[serde(
        default,
        rename = "railyardMac",
        skip_serializing_if = "Option::is_none"
    )]
    pub pod_mac: Option<String>,
}

/// One address. There is no IP-version field: it is implied by the address,
/// and 0.x's explicit `"version"` is derived when writing those versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "IpConfigIn")]
pub struct IpConfig {
    /// Address with prefix length, host bits kept ("10.1.0.5/16").
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; absent in IPAM results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1.0+
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// 1.1.0+
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// 1.1.0+
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// 1.1.0+
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// 1.1.0+
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
    /// railyard's own, like [`Interface::rail`]: the NIC (its index in
    /// `interfaces`) a route without a gateway belongs to, which nothing
    /// else in the route says (`spec.ipam.gateway: none`). Only
    /// railyard-ipam's `reportNics` answer sets it, and railyard-cni takes it
    /// out when it splits that answer, so it never reaches a runtime.
    #[serde(
        default,
        rename = "railyardNic",
        skip_serializing_if = "Option::is_none"
    )]
    pub nic: Option<usize>,
}

impl Route {
    /// A plain route as every version can express it.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
            nic: None,
        }
    }

    fn without_1_1_fields(&self) -> Route {
        Route {
            nic: self.nic,
            ..Route::new(self.dst, self.gw)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub search: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self == &Dns::default()
    }
}

/// Go plugins write `null` for empty slices in some paths; treat it as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The wire shape of an IP entry in any version; `version` is checked
/// against the address so a corrupted 0.x result is caught, not guessed.
#[derive(Deserialize)]
struct IpConfigIn {
    #[serde(default)]
    version: Option<String>,
    address: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
}

impl TryFrom<IpConfigIn> for IpConfig {
    type Error = String;

    fn try_from(raw: IpConfigIn) -> Result<IpConfig, String> {
        if let Some(v) = &raw.version {
            if v != ip_version(&raw.address) {
                return Err(format!(
                    "\"version\": {v:?} does not match address {}",
                    raw.address
                ));
            }
        }
        Ok(IpConfig {
            address: raw.address,
            gateway: raw.gateway,
            interface: raw.interface,
        })
    }
}

fn ip_version(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultIn {
    #[serde(default, deserialize_with = "null_as_default")]
    interfaces: Vec<Interface>,
    #[serde(default, deserialize_with = "null_as_default")]
    ips: Vec<IpConfig>,
    #[serde(default, deserialize_with = "null_as_default")]
    routes: Vec<Route>,
    #[serde(default, deserialize_with = "null_as_default")]
    dns: Dns,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultOut<'a> {
    cni_version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Dns::is_empty")]
    dns: &'a Dns,
}

#[derive(Serialize)]
struct IpOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(flatten)]
    ip: &'a IpConfig,
}

impl CniResult {
    /// The result as `version` defines it: `"version"` on IPs before 1.0.0,
    /// 1.1.0-only attributes dropped before 1.1.0 (as libcni's converters do).
    pub fn to_value(&self, version: CniVersion) -> Value {
        let new_fields = version.has_1_1_fields();
        let out = ResultOut {
            cni_version: version.as_str(),
            interfaces: self
                .interfaces
                .iter()
                .map(|i| match new_fields {
                    true => i.clone(),
                    false => Interface {
                        mtu: None,
                        socket_path: None,
                        pci_id: None,
                        ..i.clone()
                    },
                })
                .collect(),
            ips: self
                .ips
                .iter()
                .map(|ip| IpOut {
                    version: version
                        .has_ip_version_field()
                        .then(|| ip_version(&ip.address)),
                    ip,
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| match new_fields {
                    true => r.clone(),
                    false => r.without_1_1_fields(),
                })
                .collect(),
            dns: &self.dns,
        };
        // Only strings, integers and string-keyed maps: cannot fail.
        serde_json::to_value(out).unwrap_or(Value::Null)
    }

    /// Reads a result of any supported version. Its own `cniVersion` wins;
    /// `fallback` covers prevResults that omit it. `what` names the source
    /// ("prevResult", "result of plugin \"host-local\"") in error messages.
    pub fn from_value(
        value: &Value,
        what: &str,
        fallback: CniVersion,
    ) -> Result<(CniVersion, CniResult), Error> {
        let Value::Object(map) = value else {
            return Err(Error::decode(
                what,
                format!("expected a JSON object, got {}", decode::kind(value)),
            ));
        };
        let version = match map.get("cniVersion") {
            None | Some(Value::Null) => fallback,
            Some(Value::String(s)) => {
                CniVersion::parse(s).ok_or_else(|| Error::IncompatibleVersion {
                    field: format!("{what}.cniVersion"),
                    version: s.clone(),
                })?
            }
            Some(other) => {
                return Err(Error::decode(
                    what,
                    format!("field `cniVersion`: expected a string, got {other}"),
                ))
            }
        };
        let parsed: ResultIn = decode::typed(what, "", value)?;
        Ok((
            version,
            CniResult {
                interfaces: parsed.interfaces,
                ips: parsed.ips,
                routes: parsed.routes,
                dns: parsed.dns,
            },
        ))
    }

    /// [`CniResult::from_value`] for raw bytes (a delegate's stdout).
    pub fn from_slice(
        bytes: &[u8],
        what: &str,
        fallback: CniVersion,
    ) -> Result<(CniVersion, CniResult), Error> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| Error::decode(what, e))?;
        CniResult::from_value(&value, what, fallback)
    }
}
