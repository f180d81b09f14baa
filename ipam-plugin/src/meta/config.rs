//! The `railyard-cni` network config: an `ipam` section for railyard-ipam,
//! a `delegate` section for the interface plugin, and where state lives.
//!
//! Keys that railyard-cni itself fills in per NIC (`delegate.master`,
//! `delegate.ipam`, ...) are refused rather than silently overwritten: a
//! user who writes `"master": "eth1"` expects it to mean something, and the
//! error tells them what does (`args.cni.masters`).

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::devices::{self, DevicesConfig};
use super::naming::{self, IfNameTemplate};
use super::spares::{self, SpareTemplate};
use crate::cni::{decode, NetConf};
use crate::delegate::builtin;
use crate::Error;

/// Where per-attachment state lives unless `stateDir` says otherwise.
/// Under /var/lib, not /run: the state must outlive a node reboot, because
/// the runtime's DEL after a reboot still needs it.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/railyard";

/// The parsed meta config.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaConfig {
    /// The IPAM plugin binary (`ipam.type`).
    pub ipam_type: String,
    /// The interface plugin binary (`delegate.type`).
    pub delegate_type: String,
    /// `delegate` as written, `type` included.
    pub delegate: Map<String, Value>,
    /// The delegate key that receives the NIC name, if any.
    pub nic_field: Option<String>,
    pub state_dir: PathBuf,
    /// How the pod interfaces are named (`ifNameTemplate`).
    pub ifname_template: IfNameTemplate,
    /// Per-interface tables and rules in the pod (`podPolicyRouting`).
    pub policy_routing: bool,
    /// How railyard-cni picks each rail's spare link (`delegate.spareDevices`,
    /// taken out of `delegate`): set for host-device unless `nicField` says
    /// otherwise, which keeps the old meaning of moving the NIC itself. See
    /// [`spares`].
    pub spares: Option<SpareTemplate>,
    /// `inProcessDelegates`: a macvlan or ipvlan delegate is served inside
    /// railyard-cni ([`crate::delegate::builtin`]) instead of by its binary.
    pub in_process: bool,
    /// `devices`: the pod's VFs per rail and its GPUs, from the kubelet
    /// ([`super::devices`]). `None`: the kubelet is never asked.
    pub devices: Option<DevicesConfig>,
    /// `chain`: plugins run after each member's delegate ([`super::chain`]).
    pub chain: Vec<Map<String, Value>>,
    /// `ipam.external`: the user's single-NIC IPAM config, run once per NIC
    /// with its host block ([`super::external`]). `None`: railyard-ipam
    /// allocates.
    pub external: Option<Map<String, Value>>,
}

impl MetaConfig {
    /// Whether the delegate is served in this process (`inProcessDelegates`
    /// and a type [`builtin`] serves), so a pod's interfaces are made and
    /// deleted in one batch.
    pub fn serves_in_process(&self) -> bool {
        self.in_process && builtin::SERVED.contains(&self.delegate_type.as_str())
    }
}

/// The railyard-cni key that serves macvlan and ipvlan in process.
pub const IN_PROCESS_FIELD: &str = "inProcessDelegates";

impl MetaConfig {
    pub fn parse(conf: &NetConf) -> Result<MetaConfig, Error> {
        let ipam_type = conf
            .ipam
            .as_ref()
            .ok_or_else(|| Error::invalid_config("ipam", "is missing"))?
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::invalid_config("ipam.type", "is missing (use \"railyard-ipam\")")
            })?
            .to_owned();
        let external = super::external::parse(conf, &ipam_type)?;
        if let Some(master) = conf.extra.get("master") {
            return Err(Error::UnsupportedField {
                field: "master".into(),
                value: decode::show(master),
                reason: "railyard-cni gets its NICs from IPAM; to restrict them use \
                         args.cni.masters"
                    .into(),
            });
        }
        let mut delegate: Map<String, Value> = conf
            .extra_as("delegate")?
            .ok_or_else(|| Error::invalid_config("delegate", "is missing"))?;
        let delegate_type = match delegate.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => {
                return Err(Error::invalid_config(
                    "delegate.type",
                    "must name the interface plugin (macvlan, ipvlan, ptp, host-device, ...)",
                ))
            }
        };
        let explicit_nic_field = conf.extra_as::<String>("nicField")?;
        let devices = DevicesConfig::parse(conf, &delegate_type)?;
        // Each rail's VF comes from the kubelet: railyard-cni sets the key.
        let vf_key = devices
            .as_ref()
            .filter(|d| !d.rail_resources.is_empty())
            .and_then(|_| devices::vf_key(&delegate_type));
        if let (Some(key), Some(field)) = (vf_key, &explicit_nic_field) {
            return Err(Error::UnsupportedField {
                field: "nicField".into(),
                value: decode::show(&Value::String(field.clone())),
                reason: format!(
                    "with {}.railResources railyard-cni passes each rail's VF as `{key}`",
                    devices::FIELD
                ),
            });
        }
        // host-device moves a whole link: the rail NIC itself would take the
        // rail from the host, so a spare is picked unless nicField insists
        // (or the rail's VF is the pod's own).
        let picks_spares =
            delegate_type == "host-device" && explicit_nic_field.is_none() && vf_key.is_none();
        let nic_field = match explicit_nic_field {
            Some(f) if f.is_empty() => None,
            Some(f) => Some(f),
            None if vf_key.is_some() => None,
            None => default_nic_field(&delegate_type).map(str::to_owned),
        };
        let spares = match delegate.remove(spares::KEY) {
            None => picks_spares.then(SpareTemplate::default),
            Some(Value::String(t)) if picks_spares => Some(SpareTemplate::parse(&t)?),
            Some(other) if picks_spares => {
                return Err(Error::decode(
                    "railyard-cni config",
                    format!(
                        "field `{}`: expected a string such as \"{{nic}}s*\", got {other}",
                        spares::FIELD
                    ),
                ))
            }
            Some(other) => {
                return Err(Error::UnsupportedField {
                    field: spares::FIELD.into(),
                    value: decode::show(&other),
                    reason: "only a host-device delegate without `nicField` takes spare devices"
                        .into(),
                })
            }
        };
        let mut reserved = vec![
            (
                "ipam",
                "railyard-cni passes each NIC's address as static IPAM",
            ),
            (
                "cniVersion",
                "railyard-cni uses the config's cniVersion and negotiates down",
            ),
            ("name", "railyard-cni uses the network's name"),
        ];
        if spares.is_some() {
            for key in std::iter::once(spares::DEVICE).chain(spares::OTHER_SELECTORS) {
                reserved.push((
                    key,
                    "railyard-cni picks each rail's spare link (delegate.spareDevices) \
                     or takes the runtime's runtimeConfig.deviceID",
                ));
            }
        } else if let Some(field) = &nic_field {
            reserved.push((field.as_str(), "railyard-cni sets it to each selected NIC"));
        }
        if let Some(key) = vf_key {
            reserved.push((
                key,
                "railyard-cni sets it to the pod's VF of each rail (devices.railResources)",
            ));
            reserved.push((
                spares::PCI_BUS_ID,
                "railyard-cni sets it to the pod's VF of each rail (devices.railResources)",
            ));
        }
        if let Some((key, why)) = reserved.iter().find(|(k, _)| delegate.contains_key(*k)) {
            return Err(Error::UnsupportedField {
                field: format!("delegate.{key}"),
                value: decode::show(&delegate[*key]),
                reason: (*why).to_owned(),
            });
        }
        let state_dir = match conf.extra_as::<String>("stateDir")? {
            None => PathBuf::from(DEFAULT_STATE_DIR),
            Some(d) if d.starts_with('/') => PathBuf::from(d),
            Some(d) => {
                return Err(Error::invalid_config(
                    "stateDir",
                    format!("= {d:?}: must be an absolute path"),
                ))
            }
        };
        let ifname_template = match conf.extra_as::<String>(naming::FIELD)? {
            None => IfNameTemplate::default(),
            Some(t) => IfNameTemplate::parse(&t)?,
        };
        let policy_routing = conf
            .extra_as::<bool>(super::routing::FIELD)?
            .unwrap_or(false);
        let in_process = conf.extra_as::<bool>(IN_PROCESS_FIELD)?.unwrap_or(false);
        if in_process && builtin::SERVED.contains(&delegate_type.as_str()) {
            // Refused now, before any address is allocated.
            builtin::refuse_unserved(
                &delegate_type,
                delegate.keys().map(String::as_str),
                "delegate.",
            )?;
        }
        Ok(MetaConfig {
            ifname_template,
            policy_routing,
            ipam_type,
            delegate_type,
            delegate,
            nic_field,
            state_dir,
            spares,
            in_process,
            devices,
            chain: super::chain::parse(conf)?,
            external,
        })
    }
}

/// Which key of a known plugin names the host NIC. ptp and bridge have
/// none: they build their own link and only need the address.
pub fn default_nic_field(plugin: &str) -> Option<&'static str> {
    match plugin {
        "macvlan" | "ipvlan" => Some("master"),
        "host-device" => Some("device"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;
    use serde_json::json;

    fn parse(v: Value) -> Result<MetaConfig, Error> {
        MetaConfig::parse(&NetConf::parse(v.to_string().as_bytes())?)
    }

    fn base() -> Value {
        json!({"cniVersion": "1.0.0", "name": "rdma", "type": "railyard-cni",
            "ipam": {"type": "railyard-ipam"},
            "delegate": {"type": "macvlan", "mode": "bridge", "mtu": 9000}})
    }

    #[test]
    fn defaults_follow_the_delegate_type() {
        let meta = parse(base()).unwrap();
        assert_eq!(meta.ipam_type, "railyard-ipam");
        assert_eq!(meta.delegate_type, "macvlan");
        assert_eq!(meta.nic_field.as_deref(), Some("master"));
        assert_eq!(meta.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(meta.ifname_template.as_str(), naming::DEFAULT);
        assert!(!meta.policy_routing);
        assert_eq!(default_nic_field("ipvlan"), Some("master"));
        assert_eq!(default_nic_field("host-device"), Some("device"));
        let mut ptp = base();
        ptp["delegate"] = json!({"type": "ptp"});
        assert_eq!(parse(ptp).unwrap().nic_field, None);
        let mut custom = base();
        custom["delegate"] = json!({"type": "my-vlan"});
        custom["nicField"] = json!("parent");
        custom["stateDir"] = json!("/tmp/s");
        custom["ifNameTemplate"] = json!("{ifname}-{index}");
        custom["podPolicyRouting"] = json!(true);
        let meta = parse(custom).unwrap();
        assert!(meta.policy_routing);
        assert_eq!(meta.ifname_template.as_str(), "{ifname}-{index}");
        assert_eq!(meta.nic_field.as_deref(), Some("parent"));
        assert_eq!(meta.state_dir, PathBuf::from("/tmp/s"));
    }

    #[test]
    fn fields_railyard_sets_are_code_2() {
        for (key, value) in [
            ("master", json!("eth1")),
            ("ipam", json!({"type": "host-local"})),
            ("cniVersion", json!("0.3.1")),
        ] {
            let mut v = base();
            v["delegate"][key] = value;
            let err = parse(v).unwrap_err();
            assert_eq!(err.code(), codes::UNSUPPORTED_FIELD, "{err}");
            assert!(
                err.to_string().contains(&format!("`delegate.{key}`")),
                "{err}"
            );
        }
        let mut top = base();
        top["master"] = json!("eth1");
        let err = parse(top).unwrap_err();
        assert_eq!(err.code(), codes::UNSUPPORTED_FIELD);
        assert!(err.to_string().contains("args.cni.masters"), "{err}");
    }

    #[test]
    fn host_device_picks_spares_unless_nic_field_says_otherwise() {
        let mut v = base();
        v["delegate"] = json!({"type": "host-device"});
        let meta = parse(v.clone()).unwrap();
        assert_eq!(meta.spares, Some(SpareTemplate::default()));
        assert_eq!(meta.nic_field.as_deref(), Some("device"));
        v["delegate"]["spareDevices"] = json!("spare{rail}-*");
        let meta = parse(v.clone()).unwrap();
        assert_eq!(
            meta.spares.as_ref().map(SpareTemplate::as_str),
            Some("spare{rail}-*")
        );
        assert!(
            !meta.delegate.contains_key("spareDevices"),
            "railyard's key is not passed to host-device: {:?}",
            meta.delegate
        );
        // An explicit nicField moves the NIC itself, as before.
        let mut own = base();
        own["delegate"] = json!({"type": "host-device"});
        own["nicField"] = json!("device");
        assert_eq!(parse(own).unwrap().spares, None);
        // railyard-cni picks the link: the other ways to name one are refused.
        for key in ["device", "pciBusID", "hwaddr", "kernelpath"] {
            let mut bad = v.clone();
            bad["delegate"][key] = json!("x");
            let err = parse(bad).unwrap_err();
            assert_eq!(err.code(), codes::UNSUPPORTED_FIELD, "{key}: {err}");
            assert!(
                err.to_string().contains(&format!("`delegate.{key}`")),
                "{err}"
            );
        }
        let mut typo = v.clone();
        typo["delegate"]["spareDevices"] = json!("{nics}s*");
        let err = parse(typo).unwrap_err();
        assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG);
        assert!(err.to_string().contains("delegate.spareDevices"), "{err}");
        let mut number = v;
        number["delegate"]["spareDevices"] = json!(3);
        assert_eq!(parse(number).unwrap_err().code(), codes::DECODE_FAILURE);
        // Only host-device takes spares.
        let mut macvlan = base();
        macvlan["delegate"]["spareDevices"] = json!("{nic}s*");
        let err = parse(macvlan).unwrap_err();
        assert_eq!(err.code(), codes::UNSUPPORTED_FIELD);
        assert!(err.to_string().contains("delegate.spareDevices"), "{err}");
    }

    #[test]
    fn missing_or_invalid_sections_are_code_7() {
        for (key, value) in [
            ("delegate", Value::Null),
            ("ipam", json!({"socket": "/s"})),
            ("stateDir", json!("var/lib")),
            ("ifNameTemplate", json!("{ifname}")),
        ] {
            let mut v = base();
            v[key] = value;
            let err = parse(v).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG, "{key}: {err}");
        }
        let mut v = base();
        v["delegate"] = json!({"mode": "bridge"});
        assert_eq!(parse(v).unwrap_err().code(), codes::INVALID_NETWORK_CONFIG);
        let mut v = base();
        v["delegate"] = json!("macvlan");
        assert_eq!(parse(v).unwrap_err().code(), codes::DECODE_FAILURE);
    }
}
