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
    /// of `args.cni.macs` is not the pod's. A MAC the daemon gives a plan
    /// (the pod's `mac_address` annotation) is used too; refused when the
    /// pod's own arguments say another, or `delegate_type` takes none.
    pub fn assign(
        &self,
        plans: &[NicPlan],
        delegate_type: &str,
    ) -> Result<Vec<Option<String>>, Error> {
        let own = self.own(plans)?;
        plans
            .iter()
            .zip(own)
            .map(|(plan, own)| match (&plan.mac, own) {
                (None, own) => Ok(own),
                (Some(_), _) if !TAKES_MAC.contains(&delegate_type) => Err(Error::invalid_config(
                    "the pod's mac_address annotation",
                    format!(
                        "the {delegate_type} delegate cannot take a MAC (only {} make a link \
                         with its own)",
                        TAKES_MAC.join(", ")
                    ),
                )),
                (Some(a), Some(o)) if *a != o => Err(Error::invalid_config(
                    "the pod's mac_address annotation",
                    format!(
                        "= {a:?} for {} disagrees with {o:?} from the pod's CNI arguments",
                        plan.nic
                    ),
                )),
                (Some(a), _) => Ok(Some(a.clone())),
            })
            .collect()
    }

    /// [`Self::assign`] for the pod's own arguments only.
    fn own(&self, plans: &[NicPlan]) -> Result<Vec<Option<String>>, Error> {
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

/// `aa:bb:cc:dd:ee:ff` (or with `-`), lowercase; a unicast, non-zero MAC
/// (`railyard_core::mac`, which the daemon uses for annotations too).
fn normalize(field: &str, text: &str) -> Result<String, Error> {
    railyard_core::mac::normalize(text)
        .map_err(|why| Error::invalid_config(field, format!("= {text:?}: {why}")))
}

fn duplicate(per_rail: &BTreeMap<u32, String>) -> Option<(u32, u32)> {
    railyard_core::mac::duplicate(per_rail)
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
            mac: None,
        }
    }

    #[test]
    fn one_mac_serves_one_interface_and_per_rail_macs_their_rails() {
        let single = Macs {
            single: Some("02:00:00:00:00:01".into()),
            ..Macs::default()
        };
        assert_eq!(
            single.assign(&[plan("eth1", 1)], "macvlan").unwrap(),
            [Some("02:00:00:00:00:01".to_owned())]
        );
        let e = single
            .assign(&[plan("eth0", 0), plan("eth1", 1)], "macvlan")
            .unwrap_err();
        assert!(e.to_string().contains("2 rails (eth0, eth1)"), "{e}");
        let per_rail = Macs {
            per_rail: BTreeMap::from([(1, "02:00:00:00:00:11".to_owned())]),
            ..Macs::default()
        };
        assert_eq!(
            per_rail
                .assign(&[plan("eth0", 0), plan("eth1", 1)], "macvlan")
                .unwrap(),
            [None, Some("02:00:00:00:00:11".to_owned())]
        );
        let e = per_rail.assign(&[plan("eth0", 0)], "macvlan").unwrap_err();
        assert!(e.to_string().contains("args.cni.macs.1"), "{e}");
    }

    #[test]
    fn the_daemons_annotated_macs_are_used_unless_they_conflict() {
        let mut annotated = plan("eth1", 1);
        annotated.mac = Some("02:00:00:00:00:21".into());
        let plans = [plan("eth0", 0), annotated];
        assert_eq!(
            Macs::default().assign(&plans, "macvlan").unwrap(),
            [None, Some("02:00:00:00:00:21".to_owned())]
        );
        let e = Macs::default().assign(&plans, "ipvlan").unwrap_err();
        assert!(
            e.to_string().contains("mac_address") && e.to_string().contains("ipvlan"),
            "{e}"
        );
        let other = Macs {
            per_rail: BTreeMap::from([(1, "02:00:00:00:00:22".to_owned())]),
            ..Macs::default()
        };
        let e = other.assign(&plans, "macvlan").unwrap_err();
        assert!(e.to_string().contains("disagrees"), "{e}");
        let same = Macs {
            per_rail: BTreeMap::from([(1, "02:00:00:00:00:21".to_owned())]),
            ..Macs::default()
        };
        assert!(same.assign(&plans, "macvlan").is_ok());
    }
}
