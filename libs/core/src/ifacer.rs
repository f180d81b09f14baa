//! `spec.ifacer`: the rail interfaces a network asks every host's route-daemon
//! to make, as Spiderpool's ifacer makes them for a SpiderMultusConfig: a VLAN
//! sub-interface `<nic>.<vlanID>` on every rail NIC, and bonds of named slaves.
//!
//! In railyard's L3 model a rail NIC is the link that holds the host's address
//! in one of `spec.masterNets`, so an ifacer link only becomes the rail once
//! that address is on it: the daemon moves it there (see
//! `docs/design/data-paths.md`, "Rail interfaces"). That is why `ifacer`
//! needs `masterNets`: they say which addresses are rail addresses.
//!
//! Like the rest of the spec, the fields are kept raw (an integer or a string
//! for the mode, a `k=v;k=v` string for the options) so that validation, not
//! deserialization, reports a bad value with its field path.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::ifname::IfName;

/// `spec.ifacer` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IfacerSpec {
    /// Every rail NIC gets a VLAN sub-interface `<nic>.<vlanID>` (1 to 4094).
    #[serde(default, rename = "vlanID", skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<i64>,
    /// One per rail that is a bond.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bonds: Vec<BondSpec>,
}

/// One entry of `spec.ifacer.bonds` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BondSpec {
    /// The bond's interface name.
    #[serde(default)]
    pub name: String,
    /// Its slaves: at least two, each in one bond only.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// A kernel mode name or Spiderpool's integer (0 to 6); active-backup when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BondModeField>,
    /// Spiderpool's `k=v;k=v` form; `miimon`, `updelay` and `downdelay`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub options: String,
}

/// The mode as written: Spiderpool's integer or the kernel's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BondModeField {
    Number(i64),
    Text(String),
}

impl fmt::Display for BondModeField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BondModeField::Number(n) => write!(f, "{n}"),
            BondModeField::Text(t) => f.write_str(t),
        }
    }
}

/// The bonding driver's modes, numbered as the kernel (and Spiderpool) number
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BondMode {
    BalanceRr = 0,
    #[default]
    ActiveBackup = 1,
    BalanceXor = 2,
    Broadcast = 3,
    Ieee8023ad = 4,
    BalanceTlb = 5,
    BalanceAlb = 6,
}

impl BondMode {
    pub const ALL: [BondMode; 7] = [
        BondMode::BalanceRr,
        BondMode::ActiveBackup,
        BondMode::BalanceXor,
        BondMode::Broadcast,
        BondMode::Ieee8023ad,
        BondMode::BalanceTlb,
        BondMode::BalanceAlb,
    ];

    /// The kernel's name (`ip -d link` prints it).
    pub fn name(self) -> &'static str {
        match self {
            BondMode::BalanceRr => "balance-rr",
            BondMode::ActiveBackup => "active-backup",
            BondMode::BalanceXor => "balance-xor",
            BondMode::Broadcast => "broadcast",
            BondMode::Ieee8023ad => "802.3ad",
            BondMode::BalanceTlb => "balance-tlb",
            BondMode::BalanceAlb => "balance-alb",
        }
    }

    /// The number the kernel's IFLA_BOND_MODE carries.
    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn from_number(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|m| i64::from(m.number()) == n)
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl fmt::Display for BondMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The bond options railyard sets, in milliseconds. Only these: the others of
/// the bonding driver (`primary`, `arp_interval`, ...) would each need their own
/// netlink attribute and test, and an option silently ignored is a bond that
/// does not fail over the way its operator believes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BondOptions {
    pub miimon: Option<u32>,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
}

/// The option keys [`BondOptions`] knows.
pub const BOND_OPTION_KEYS: [&str; 3] = ["miimon", "updelay", "downdelay"];

/// A validated bond.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bond {
    pub name: IfName,
    /// In the order written.
    pub interfaces: Vec<IfName>,
    pub mode: BondMode,
    pub options: BondOptions,
}

/// A validated `spec.ifacer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ifacer {
    pub vlan_id: Option<u16>,
    pub bonds: Vec<Bond>,
}

/// The largest VLAN id (4095 is reserved by 802.1Q).
pub const MAX_VLAN_ID: i64 = 4094;

impl IfacerSpec {
    /// Checks every field; `has_master_nets` says whether `spec.masterNets` is
    /// non-empty (without it nothing tells a rail address from any other, and
    /// the daemon could move the host's management address).
    pub fn validate(&self, has_master_nets: bool) -> Result<Ifacer> {
        if !has_master_nets {
            return Err(CoreError::invalid(
                "spec.masterNets",
                "",
                "is required with spec.ifacer: its CIDRs say which host addresses are rail \
                 addresses, the ones the route-daemon moves onto the VLAN or bond it makes",
            ));
        }
        let vlan_id = match self.vlan_id {
            None => None,
            Some(id) => Some(
                u16::try_from(id)
                    .ok()
                    .filter(|v| (1..=MAX_VLAN_ID).contains(&i64::from(*v)))
                    .ok_or_else(|| {
                        CoreError::invalid(
                            "spec.ifacer.vlanID",
                            id,
                            format!("must be between 1 and {MAX_VLAN_ID}"),
                        )
                    })?,
            ),
        };
        // Every name a bond uses (its own and its slaves'), with where it was
        // first used: a slave in two bonds, or a bond enslaved to another,
        // cannot be made.
        let mut used: BTreeMap<IfName, String> = BTreeMap::new();
        let mut bonds = Vec::with_capacity(self.bonds.len());
        for (i, b) in self.bonds.iter().enumerate() {
            let at = format!("spec.ifacer.bonds[{i}]");
            let name = if_name(&format!("{at}.name"), &b.name)?;
            claim(&mut used, name, &format!("{at}.name"))?;
            if b.interfaces.len() < 2 {
                return Err(CoreError::invalid(
                    format!("{at}.interfaces"),
                    format!("{:?}", b.interfaces),
                    "needs at least 2 slaves (a bond of one fails over to nothing)",
                ));
            }
            let mut interfaces = Vec::with_capacity(b.interfaces.len());
            for (k, s) in b.interfaces.iter().enumerate() {
                let field = format!("{at}.interfaces[{k}]");
                let slave = if_name(&field, s)?;
                claim(&mut used, slave, &field)?;
                interfaces.push(slave);
            }
            let mode = match &b.mode {
                None => BondMode::default(),
                Some(m) => {
                    let parsed = match m {
                        BondModeField::Number(n) => BondMode::from_number(*n),
                        BondModeField::Text(t) => BondMode::from_name(t.trim()).or_else(|| {
                            t.trim().parse::<i64>().ok().and_then(BondMode::from_number)
                        }),
                    };
                    parsed.ok_or_else(|| {
                        CoreError::invalid(
                            format!("{at}.mode"),
                            m,
                            format!(
                                "must be one of {} or 0 to 6",
                                BondMode::ALL.map(BondMode::name).join(", ")
                            ),
                        )
                    })?
                }
            };
            let options = parse_options(&format!("{at}.options"), &b.options)?;
            bonds.push(Bond {
                name,
                interfaces,
                mode,
                options,
            });
        }
        Ok(Ifacer { vlan_id, bonds })
    }
}

fn if_name(field: &str, value: &str) -> Result<IfName> {
    IfName::new(value).map_err(|e| match e {
        CoreError::InvalidName { reason, .. } => {
            CoreError::invalid(field, value, format!("is not an interface name: {reason}"))
        }
        other => other,
    })
}

fn claim(used: &mut BTreeMap<IfName, String>, name: IfName, field: &str) -> Result<()> {
    if let Some(first) = used.get(&name) {
        return Err(CoreError::invalid(
            field,
            name,
            format!("is already used by {first}: an interface can be in one bond only"),
        ));
    }
    used.insert(name, field.to_owned());
    Ok(())
}

/// Spiderpool's `k=v;k=v` (spaces around either allowed, empty parts ignored).
fn parse_options(field: &str, raw: &str) -> Result<BondOptions> {
    let mut out = BondOptions::default();
    for part in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(CoreError::invalid(
                field,
                raw,
                format!("{part:?} is not key=value (the form is \"miimon=100;updelay=200\")"),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let slot = match key {
            "miimon" => &mut out.miimon,
            "updelay" => &mut out.updelay,
            "downdelay" => &mut out.downdelay,
            _ => {
                return Err(CoreError::invalid(
                    format!("{field}.{key}"),
                    value,
                    format!(
                        "is not a bond option railyard sets (known: {})",
                        BOND_OPTION_KEYS.join(", ")
                    ),
                ))
            }
        };
        let ms: u32 = value.parse().map_err(|_| {
            CoreError::invalid(
                format!("{field}.{key}"),
                value,
                "must be a whole number of milliseconds",
            )
        })?;
        *slot = Some(ms);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> IfacerSpec {
        serde_yaml::from_str(yaml).expect("yaml")
    }

    fn err(yaml: &str) -> String {
        spec(yaml)
            .validate(true)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn the_documented_example_validates() {
        let i = spec(
            "vlanID: 100\nbonds:\n- name: rail0\n  interfaces: [bond0a, bond0b]\n  mode: active-backup\n  options: \"miimon=100\"\n",
        )
        .validate(true)
        .expect("valid");
        assert_eq!(i.vlan_id, Some(100));
        assert_eq!(i.bonds.len(), 1);
        let b = &i.bonds[0];
        assert_eq!(b.name.as_str(), "rail0");
        assert_eq!(b.mode, BondMode::ActiveBackup);
        assert_eq!(b.options.miimon, Some(100));
        assert_eq!(b.interfaces.len(), 2);
    }

    #[test]
    fn modes_are_names_or_spiderpools_integers_with_active_backup_by_default() {
        for (mode, want) in [
            ("0", BondMode::BalanceRr),
            ("4", BondMode::Ieee8023ad),
            ("\"802.3ad\"", BondMode::Ieee8023ad),
            ("balance-alb", BondMode::BalanceAlb),
            ("\"6\"", BondMode::BalanceAlb),
        ] {
            let i = spec(&format!(
                "bonds:\n- name: b0\n  interfaces: [x, y]\n  mode: {mode}\n"
            ))
            .validate(true)
            .expect("valid");
            assert_eq!(i.bonds[0].mode, want, "{mode}");
        }
        let i = spec("bonds:\n- name: b0\n  interfaces: [x, y]\n")
            .validate(true)
            .expect("valid");
        assert_eq!(i.bonds[0].mode, BondMode::ActiveBackup);
        let e = err("bonds:\n- name: b0\n  interfaces: [x, y]\n  mode: 7\n");
        assert!(e.starts_with("spec.ifacer.bonds[0].mode: \"7\""), "{e}");
        let e = err("bonds:\n- name: b0\n  interfaces: [x, y]\n  mode: lacp\n");
        assert!(e.contains("bonds[0].mode") && e.contains("802.3ad"), "{e}");
    }

    #[test]
    fn vlan_ids_outside_1_to_4094_are_refused() {
        for bad in [0, 4095, -1, 70000] {
            let e = err(&format!("vlanID: {bad}"));
            assert!(
                e.starts_with(&format!("spec.ifacer.vlanID: \"{bad}\"")),
                "{e}"
            );
        }
        for good in [1, 4094] {
            assert_eq!(
                spec(&format!("vlanID: {good}"))
                    .validate(true)
                    .expect("valid")
                    .vlan_id,
                Some(good)
            );
        }
    }

    #[test]
    fn slaves_are_names_at_least_two_each_in_one_bond() {
        let e = err("bonds:\n- name: b0\n  interfaces: [x]\n");
        assert!(e.starts_with("spec.ifacer.bonds[0].interfaces:"), "{e}");
        let e = err("bonds:\n- name: b0\n  interfaces: [x, y]\n- name: b1\n  interfaces: [z, y]\n");
        assert!(
            e.starts_with("spec.ifacer.bonds[1].interfaces[1]: \"y\"")
                && e.contains("spec.ifacer.bonds[0].interfaces[1]"),
            "{e}"
        );
        let e = err("bonds:\n- name: b0\n  interfaces: [x, b0]\n");
        assert!(e.starts_with("spec.ifacer.bonds[0].interfaces[1]"), "{e}");
        let e = err("bonds:\n- name: b0\n  interfaces: [\"a/b\", y]\n");
        assert!(
            e.starts_with("spec.ifacer.bonds[0].interfaces[0]: \"a/b\""),
            "{e}"
        );
        let e = err("bonds:\n- name: a-name-of-16-chr\n  interfaces: [x, y]\n");
        assert!(e.starts_with("spec.ifacer.bonds[0].name"), "{e}");
        let e = err("bonds:\n- name: b0\n  interfaces: [x, y]\n- name: b0\n  interfaces: [z, w]\n");
        assert!(e.starts_with("spec.ifacer.bonds[1].name"), "{e}");
    }

    #[test]
    fn options_take_miimon_updelay_downdelay_and_name_any_other_key() {
        let i = spec(
            "bonds:\n- name: b0\n  interfaces: [x, y]\n  options: \" miimon=100; updelay = 200;downdelay=300; \"\n",
        )
        .validate(true)
        .expect("valid");
        assert_eq!(
            i.bonds[0].options,
            BondOptions {
                miimon: Some(100),
                updelay: Some(200),
                downdelay: Some(300)
            }
        );
        let e = err(
            "bonds:\n- name: b0\n  interfaces: [x, y]\n  options: \"primary=x; arp_interval=1\"\n",
        );
        assert!(
            e.starts_with("spec.ifacer.bonds[0].options.primary: \"x\""),
            "{e}"
        );
        let e = err("bonds:\n- name: b0\n  interfaces: [x, y]\n  options: \"miimon=fast\"\n");
        assert!(e.starts_with("spec.ifacer.bonds[0].options.miimon"), "{e}");
        let e = err("bonds:\n- name: b0\n  interfaces: [x, y]\n  options: \"miimon\"\n");
        assert!(e.starts_with("spec.ifacer.bonds[0].options:"), "{e}");
    }

    #[test]
    fn master_nets_are_required() {
        let e = spec("vlanID: 5")
            .validate(false)
            .expect_err("refused")
            .to_string();
        assert!(e.starts_with("spec.masterNets"), "{e}");
    }

    #[test]
    fn round_trips_through_json_and_yaml() {
        let s = spec(
            "vlanID: 7\nbonds:\n- name: rail0\n  interfaces: [a, b]\n  mode: 4\n  options: miimon=100\n- name: rail1\n  interfaces: [c, d]\n  mode: balance-rr\n",
        );
        let json = serde_json::to_string(&s).expect("json");
        assert!(json.contains("\"vlanID\":7"), "{json}");
        assert_eq!(serde_json::from_str::<IfacerSpec>(&json).expect("back"), s);
        let yaml = serde_yaml::to_string(&s).expect("yaml");
        assert_eq!(serde_yaml::from_str::<IfacerSpec>(&yaml).expect("back"), s);
    }

    const NETWORK: &str = "apiVersion: railyard.dev/v1
kind: MultiNicNetwork
metadata:
  name: rails
spec:
  subnet: 192.168.0.0/16
  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'
  masterNets: [10.0.0.0/16, 10.1.0.0/16]
  ifacer:
    vlanID: 100
    bonds:
    - name: rail0
      interfaces: [bond0a, bond0b]
      mode: 1
      options: miimon=100
";

    #[test]
    fn network_validation_checks_ifacer_and_the_spec_round_trips() {
        let m: crate::NetworkManifest = serde_yaml::from_str(NETWORK).expect("yaml");
        let net = m.validate().expect("valid");
        assert_eq!(net.spec.ifacer.as_ref().and_then(|i| i.vlan_id), Some(100));
        // The plan meta stores the spec as JSON; the daemon reads it back.
        let json = serde_json::to_string(&m.spec).expect("json");
        let back: crate::NetworkSpec = serde_json::from_str(&json).expect("back");
        assert_eq!(back, m.spec);

        let mut no_masters = m.clone();
        no_masters.spec.master_nets.clear();
        let e = no_masters.validate().expect_err("refused").to_string();
        assert!(e.starts_with("spec.masterNets"), "{e}");

        let mut bad = m.clone();
        if let Some(i) = bad.spec.ifacer.as_mut() {
            i.bonds[0].interfaces[1] = "bond0a".into();
        }
        let e = bad.validate().expect_err("refused").to_string();
        assert!(
            e.starts_with("spec.ifacer.bonds[0].interfaces[1]: \"bond0a\""),
            "{e}"
        );

        let mut none = m;
        none.spec.ifacer = None;
        none.spec.master_nets.clear();
        none.validate().expect("no ifacer, no masterNets needed");
        let json = serde_json::to_string(&none.spec).expect("json");
        assert!(!json.contains("ifacer"), "{json}");
    }
}
