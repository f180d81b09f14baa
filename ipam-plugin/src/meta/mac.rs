//! The pod's chosen MAC addresses: the CNI `mac` capability
//! (`runtimeConfig.mac`, which Multus fills from a network selection element's
//! `mac`) for a pod with one interface, and `args.cni.macs` (rail index to
//! MAC, Multus `cni-args`) for a MAC per rail.
//!
//! One MAC cannot serve several interfaces on one L2 (and rails may share a
//! switch), so `runtimeConfig.mac` with more than one rail is refused rather
//! than given to the first. Only delegates that make a link with its own MAC
//! take one: macvlan (and the in-process macvlan) and sriov (it sets the VF's
//! MAC); ipvlan shares its master's, host-device and ptp choose their own.

use std::collections::BTreeMap;

use serde_json::Value;

use super::layout::NicPlan;
use crate::cni::{decode, NetConf};
use crate::Error;

/// Delegates that take `runtimeConfig.mac`.
pub const TAKES_MAC: [&str; 3] = ["macvlan", "sriov", "ib-sriov"];

/// What the pod asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Macs {
    /// `runtimeConfig.mac`: the pod's only interface.
    pub single: Option<String>,
    /// `args.cni.macs`: per rail.
    pub per_rail: BTreeMap<u32, String>,
}

impl Macs {
    /// Reads and checks both sources; refuses them for a delegate that takes
    /// no MAC. Runs before anything is allocated.
    pub fn parse(conf: &NetConf, delegate_type: &str) -> Result<Macs, Error> {
        let mut out = Macs::default();
        let runtime = conf.runtime_config.as_ref().and_then(|rc| rc.get("mac"));
        if let Some(v) = runtime.filter(|v| !v.is_null() && v.as_str() != Some("")) {
            let text: String = decode::typed("network config", "runtimeConfig.mac", v)?;
            out.single = Some(normalize("runtimeConfig.mac", &text)?);
        }
        let listed = conf
            .args
            .as_ref()
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("macs"));
        if let Some(v) = listed.filter(|v| !v.is_null()) {
            let map: BTreeMap<String, String> =
                decode::typed("network config", "args.cni.macs", v)?;
            for (rail, mac) in map {
                let field = format!("args.cni.macs.{rail}");
                let index: u32 = rail.parse().map_err(|_| {
                    Error::invalid_config(&field, "is keyed by a rail index (\"0\", \"1\", ...)")
                })?;
                out.per_rail.insert(index, normalize(&field, &mac)?);
            }
        }
        if let Some((a, b)) = duplicate(&out.per_rail) {
            return Err(Error::invalid_config(
                format!("args.cni.macs.{b}"),
                format!("repeats rail {a}'s MAC: each interface needs its own"),
            ));
        }
        let asked = out.single.is_some() || !out.per_rail.is_empty();
        if asked && !TAKES_MAC.contains(&delegate_type) {
            let field = if out.single.is_some() {
                "runtimeConfig.mac"
            } else {
                "args.cni.macs"
            };
            return Err(Error::invalid_config(
                field,
                format!(
                    "the {delegate_type} delegate cannot take a MAC (only {} make a link \
                     with its own)",
                    TAKES_MAC.join(", ")
                ),
            ));
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.single.is_none() && self.per_rail.is_empty()
    }

    /// The MAC of each planned interface, once IPAM said which rails the pod
    /// gets: refused when `runtimeConfig.mac` would serve several, or a rail
    /// of `args.cni.macs` is not the pod's.
    pub fn assign(&self, plans: &[NicPlan]) -> Result<Vec<Option<String>>, Error> {
        if let Some(mac) = &self.single {
            if plans.len() != 1 {
                let nics: Vec<&str> = plans.iter().map(|p| p.nic.as_str()).collect();
                return Err(Error::invalid_config(
                    "runtimeConfig.mac",
                    format!(
                        "= {mac:?} names one MAC, but the pod gets {} rails ({}); give one \
                         per rail in args.cni.macs, or select one NIC (args.cni.nics: 1)",
                        plans.len(),
                        nics.join(", ")
                    ),
                ));
            }
            return Ok(vec![Some(mac.clone())]);
        }
        let rails: Vec<Option<u32>> = plans.iter().map(|p| p.rail).collect();
        if let Some(rail) = self.per_rail.keys().find(|r| !rails.contains(&Some(**r))) {
            let got: Vec<String> = rails.iter().flatten().map(u32::to_string).collect();
            return Err(Error::invalid_config(
                format!("args.cni.macs.{rail}"),
                format!(
                    "the pod gets no interface on rail {rail} (it gets rails {})",
                    got.join(", ")
                ),
            ));
        }
        Ok(rails
            .iter()
            .map(|r| r.and_then(|r| self.per_rail.get(&r).cloned()))
            .collect())
    }
}

/// Writes the member's MAC where its delegate reads it.
pub fn apply(config: &mut serde_json::Map<String, Value>, mac: Option<String>) {
    if let Some(mac) = mac {
        config.insert("runtimeConfig".into(), serde_json::json!({"mac": mac}));
    }
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`), lowercase; a unicast, non-zero MAC.
fn normalize(field: &str, text: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::invalid_config(field, format!("= {text:?}: {why}"));
    let octets: Vec<&str> = text.trim().split([':', '-']).collect();
    if octets.len() != 6
        || octets
            .iter()
            .any(|o| o.len() != 2 || !o.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(bad(
            "is not a MAC address (six hex pairs, like 02:00:c0:a8:40:05)",
        ));
    }
    let bytes: Vec<u8> = octets
        .iter()
        .map(|o| u8::from_str_radix(o, 16).unwrap_or_default())
        .collect();
    if bytes[0] & 1 == 1 {
        return Err(bad(
            "is a multicast address; an interface needs a unicast one",
        ));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err(bad("is all zeros"));
    }
    Ok(octets.join(":").to_ascii_lowercase())
}

fn duplicate(per_rail: &BTreeMap<u32, String>) -> Option<(u32, u32)> {
    let entries: Vec<(&u32, &String)> = per_rail.iter().collect();
    entries.iter().enumerate().find_map(|(i, (ra, ma))| {
        entries[i + 1..]
            .iter()
            .find(|(_, mb)| mb == ma)
            .map(|(rb, _)| (**ra, **rb))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_normalized_and_checked() {
        assert_eq!(
            normalize("f", "02-00-C0-A8-40-05").unwrap(),
            "02:00:c0:a8:40:05"
        );
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:00:c0:a8:40",
            "zz:00:00:00:00:01",
        ] {
            let e = normalize("runtimeConfig.mac", bad).unwrap_err();
            assert_eq!(e.code(), 7, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    fn plan(nic: &str, rail: u32) -> NicPlan {
        NicPlan {
            nic: nic.into(),
            rail: Some(rail),
            ips: Vec::new(),
            routes: Vec::new(),
        }
    }

    #[test]
    fn one_mac_serves_one_interface_and_per_rail_macs_their_rails() {
        let single = Macs {
            single: Some("02:00:00:00:00:01".into()),
            ..Macs::default()
        };
        assert_eq!(
            single.assign(&[plan("eth1", 1)]).unwrap(),
            [Some("02:00:00:00:00:01".to_owned())]
        );
        let e = single
            .assign(&[plan("eth0", 0), plan("eth1", 1)])
            .unwrap_err();
        assert!(e.to_string().contains("2 rails (eth0, eth1)"), "{e}");
        let per_rail = Macs {
            per_rail: BTreeMap::from([(1, "02:00:00:00:00:11".to_owned())]),
            ..Macs::default()
        };
        assert_eq!(
            per_rail
                .assign(&[plan("eth0", 0), plan("eth1", 1)])
                .unwrap(),
            [None, Some("02:00:00:00:00:11".to_owned())]
        );
        let e = per_rail.assign(&[plan("eth0", 0)]).unwrap_err();
        assert!(e.to_string().contains("args.cni.macs.1"), "{e}");
    }
}
