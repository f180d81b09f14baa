//! What a host has: its NICs as the route-daemon discovers them (or as an operator
//! writes them for an unmanaged host).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::ifname::IfName;
use crate::names::validate_host_name;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nic {
    pub name: String,
    /// Addresses with their prefix length (`10.0.1.5/24`): the prefix tells which
    /// rail subnet the NIC sits on.
    #[serde(default, deserialize_with = "addresses")]
    pub addresses: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Link speed in Mbit/s as sysfs reports it; unknown for virtual NICs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    /// The PCIe root complex the NIC hangs off (`pci0000:3a`), from its canonical
    /// sysfs path: what GPU alignment and DRA's `pcieRoot` attribute compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Operational state; a NIC that is down still keeps its rail and blocks.
    #[serde(default = "yes")]
    pub up: bool,
}

/// ipnet's own error ("invalid IP address syntax") does not say which value; ours does.
fn addresses<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            s.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "addresses: {s:?} is not an address with its prefix length (like 10.0.1.5/24)"
                ))
            })
        })
        .collect()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInventory {
    pub name: String,
    #[serde(default, alias = "interfaces")]
    pub nics: Vec<Nic>,
}

impl HostInventory {
    /// Rejects what would corrupt a key or make rail membership ambiguous.
    pub fn validate(&self, field: &str) -> Result<()> {
        validate_host_name(&format!("{field}.name"), &self.name)?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, nic) in self.nics.iter().enumerate() {
            if let Err(CoreError::InvalidName { reason, .. }) = IfName::new(&nic.name) {
                return Err(CoreError::invalid(
                    format!("{field}.nics[{i}].name"),
                    &nic.name,
                    format!("is not an interface name: {reason}"),
                ));
            }
            if !seen.insert(nic.name.as_str()) {
                return Err(CoreError::invalid(
                    format!("{field}.nics[{i}].name"),
                    &nic.name,
                    "appears twice on this host",
                ));
            }
        }
        Ok(())
    }
}

/// A host inventory file, the one shape every reader accepts (the CLI's
/// `railyard plan --inventory` and the route-daemon's `--static-inventory`):
///
/// - a list of hosts: `[{name: a, nics: [...]}, ...]`;
/// - the list under `hosts`: `{hosts: [...]}` (other top-level keys are ignored);
/// - one host: `{name: a, nics: [...]}`.
///
/// A host is a [`HostInventory`] (`nics` may be spelled `interfaces`). Format
/// agnostic: the callers read YAML (which covers JSON) with `serde_yaml`.
/// Serializes as `{hosts: [...]}`.
///
/// Deliberately not an untagged enum: serde would then report only "matched no
/// variant" and hide which host and field was wrong. The shape is told from the
/// value as it is read, so a format's errors keep their line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryFile {
    pub hosts: Vec<HostInventory>,
}

impl<'de> Deserialize<'de> for InventoryFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(InventoryVisitor)
    }
}

struct InventoryVisitor;

impl<'de> serde::de::Visitor<'de> for InventoryVisitor {
    type Value = InventoryFile;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a host inventory: a list of hosts, {hosts: [...]}, or one host {name, nics}")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<InventoryFile, A::Error> {
        let mut hosts = Vec::new();
        while let Some(h) = seq.next_element::<HostInventory>()? {
            hosts.push(h);
        }
        Ok(InventoryFile { hosts })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<InventoryFile, A::Error> {
        use serde::de::Error;
        // `hosts` makes it the wrapped list; otherwise it is one host, read
        // field by field as `HostInventory` would be.
        let mut hosts: Option<Vec<HostInventory>> = None;
        let mut name: Option<String> = None;
        let mut nics: Option<Vec<Nic>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "hosts" if hosts.is_some() => return Err(A::Error::duplicate_field("hosts")),
                "hosts" => hosts = Some(map.next_value()?),
                "name" if name.is_some() => return Err(A::Error::duplicate_field("name")),
                "name" => name = Some(map.next_value()?),
                "nics" | "interfaces" if nics.is_some() => {
                    return Err(A::Error::duplicate_field("nics"))
                }
                "nics" | "interfaces" => nics = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        match (hosts, name) {
            (Some(hosts), _) => Ok(InventoryFile { hosts }),
            (None, Some(name)) => Ok(InventoryFile {
                hosts: vec![HostInventory {
                    name,
                    nics: nics.unwrap_or_default(),
                }],
            }),
            (None, None) => Err(A::Error::custom(
                "a host inventory needs `hosts` (a list of hosts) or, for one host, `name`",
            )),
        }
    }
}

impl InventoryFile {
    /// The hosts, checked, with duplicate host names refused (two registrations
    /// under one name would silently share one host index).
    pub fn into_hosts(self) -> Result<Vec<HostInventory>> {
        let hosts = self.hosts;
        let mut seen = std::collections::BTreeSet::new();
        for (i, h) in hosts.iter().enumerate() {
            h.validate(&format!("hosts[{i}]"))?;
            if !seen.insert(h.name.as_str()) {
                return Err(CoreError::invalid(
                    format!("hosts[{i}].name"),
                    &h.name,
                    "appears twice in the inventory",
                ));
            }
        }
        Ok(hosts)
    }

    /// `host`'s entry, the file checked as by [`Self::into_hosts`]; the error
    /// lists the hosts the file has.
    pub fn into_host(self, host: &str) -> std::result::Result<HostInventory, String> {
        let hosts = self.into_hosts().map_err(|e| e.to_string())?;
        let listed = hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        hosts
            .into_iter()
            .find(|h| h.name == host)
            .ok_or_else(|| format!("has no entry for host {host:?} (it lists: {listed})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> std::result::Result<InventoryFile, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    fn names(file: &InventoryFile) -> Vec<&str> {
        file.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn three_shapes_in_yaml_and_json() {
        let list = yaml("- name: a\n  nics: [{name: eth1}]\n- name: b\n").expect("list");
        assert_eq!(names(&list), ["a", "b"]);
        let wrapped = yaml("hosts:\n- name: a\n- name: b\n").expect("wrapped");
        assert_eq!(names(&wrapped), ["a", "b"]);
        let one = yaml(
            "name: a\nnics:\n- name: ens1\n  addresses: [10.0.1.5/24, 'fd00::5/64']\n  up: false\n",
        )
        .expect("one host");
        assert_eq!(names(&one), ["a"]);
        assert_eq!(one.hosts[0].nics[0].addresses.len(), 2);
        assert!(!one.hosts[0].nics[0].up);

        let json = |t: &str| serde_json::from_str::<InventoryFile>(t).map_err(|e| e.to_string());
        let list = json(r#"[{"name":"a","nics":[{"name":"eth1"}]},{"name":"b","interfaces":[{"name":"eth2"}]}]"#)
            .expect("json list");
        assert_eq!(list.hosts[1].nics[0].name, "eth2", "`interfaces` is `nics`");
        assert_eq!(
            names(&json(r#"{"hosts":[{"name":"a","nics":[]}]}"#).expect("json hosts")),
            ["a"]
        );
        assert_eq!(
            names(&json(r#"{"name":"a","interfaces":[]}"#).expect("json host")),
            ["a"]
        );
    }

    #[test]
    fn hosts_wins_and_unknown_keys_are_ignored() {
        let f =
            yaml("kind: inventory\nname: ignored\nhosts: [{name: a, extra: 1}]\n").expect("parses");
        assert_eq!(names(&f), ["a"]);
        let f = yaml("name: a\ncomment: hi\n").expect("one host");
        assert_eq!(names(&f), ["a"]);
        assert_eq!(
            serde_json::to_value(&f).expect("serializes"),
            serde_json::json!({"hosts": [{"name": "a", "nics": []}]})
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = yaml("42").expect_err("a number");
        assert!(err.contains("a host inventory"), "{err}");
        let err = yaml("nics: []\n").expect_err("no name");
        assert!(err.contains("`name`"), "{err}");
        let err = yaml("name: a\nnics: []\ninterfaces: []\n").expect_err("both spellings");
        assert!(err.contains("duplicate field `nics`"), "{err}");
        let err =
            yaml("- name: a\n- name: b\n  nics:\n  - name: eth1\n    addresses: [10.0.1.5]\n")
                .expect_err("no prefix length");
        assert!(
            err.contains("\"10.0.1.5\"") && err.contains("[1].nics[0]") && err.contains("line 4"),
            "{err}"
        );
    }

    #[test]
    fn into_host_checks_the_file_and_finds_the_entry() {
        let f = yaml("[{name: a}, {name: b, nics: [{name: eth2}]}]").expect("list");
        assert_eq!(f.clone().into_host("b").expect("b").nics[0].name, "eth2");
        let err = f.into_host("z").expect_err("absent");
        assert!(err.contains("\"z\"") && err.contains("a, b"), "{err}");
        let dup = yaml("name: a\nnics:\n- name: x\n- name: x\n").expect("parses");
        assert!(dup.into_host("a").expect_err("dup").contains("twice"));
        let twice = yaml("[{name: a}, {name: a}]").expect("parses");
        assert!(twice
            .into_hosts()
            .expect_err("dup host")
            .to_string()
            .contains("twice"));
    }
}
