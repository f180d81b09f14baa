//! Which interfaces are rail candidates. The default keeps out what is never a
//! rail: loopback, the management NIC (the one holding a default route), and the
//! interfaces railyard or the pod network create (veth peers, CNI bridges,
//! railyard's own `ry-` devices). Operators narrow or widen it with globs.

use std::collections::BTreeSet;
use std::fmt;

use glob::Pattern;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::LinkRecord;

/// The filter as written in the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterConfig {
    /// When not empty, only names matching one of these globs are candidates.
    pub include: Vec<String>,
    /// Names matching one of these globs never are, whatever else says.
    pub exclude: Vec<String>,
    /// Name prefixes of interfaces that pods or railyard create.
    pub skip_prefixes: Vec<String>,
    /// Link kinds (`ip -d link` "kind") that are never rails.
    pub skip_kinds: Vec<String>,
    /// Whether a NIC holding a default route (v4 or v6) is left out.
    pub skip_default_route: bool,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            skip_prefixes: ["veth", "cni", "ry-"].map(String::from).to_vec(),
            skip_kinds: vec!["bridge".to_owned()],
            skip_default_route: true,
        }
    }
}

/// A compiled [`FilterConfig`].
#[derive(Debug, Clone)]
pub struct NicFilter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    skip_prefixes: Vec<String>,
    skip_kinds: Vec<String>,
    skip_default_route: bool,
}

/// Why an interface is not a candidate, for the debug log that answers "why is
/// my NIC not used".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    Loopback,
    DefaultRoute,
    Prefix(String),
    Kind(String),
    NotIncluded,
    Excluded(String),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Loopback => write!(f, "loopback"),
            Skip::DefaultRoute => write!(f, "holds a default route"),
            Skip::Prefix(p) => write!(f, "name starts with {p:?}"),
            Skip::Kind(k) => write!(f, "link kind {k}"),
            Skip::NotIncluded => write!(f, "matches no include pattern"),
            Skip::Excluded(p) => write!(f, "matches exclude pattern {p:?}"),
        }
    }
}

impl NicFilter {
    pub fn new(config: &FilterConfig) -> Result<Self> {
        let compile = |pats: &[String]| -> Result<Vec<Pattern>> {
            pats.iter()
                .map(|p| {
                    Pattern::new(p).map_err(|e| Error::Pattern {
                        pattern: p.clone(),
                        reason: e.to_string(),
                    })
                })
                .collect()
        };
        Ok(NicFilter {
            include: compile(&config.include)?,
            exclude: compile(&config.exclude)?,
            skip_prefixes: config.skip_prefixes.clone(),
            skip_kinds: config.skip_kinds.clone(),
            skip_default_route: config.skip_default_route,
        })
    }

    /// `Ok` when `link` is a candidate. An include pattern does not override the
    /// automatic skips: `eth*` should not pull in the management `eth0`. Turn a
    /// skip off in the configuration instead.
    pub fn check(
        &self,
        link: &LinkRecord,
        default_route_links: &BTreeSet<u32>,
    ) -> Result<(), Skip> {
        if link.loopback {
            return Err(Skip::Loopback);
        }
        if let Some(p) = self.exclude.iter().find(|p| p.matches(&link.name)) {
            return Err(Skip::Excluded(p.as_str().to_owned()));
        }
        if !self.include.is_empty() && !self.include.iter().any(|p| p.matches(&link.name)) {
            return Err(Skip::NotIncluded);
        }
        if let Some(p) = self
            .skip_prefixes
            .iter()
            .find(|p| link.name.starts_with(p.as_str()))
        {
            return Err(Skip::Prefix(p.clone()));
        }
        if let Some(k) = link.kind.as_ref().filter(|k| self.skip_kinds.contains(k)) {
            return Err(Skip::Kind(k.clone()));
        }
        if self.skip_default_route && default_route_links.contains(&link.index) {
            return Err(Skip::DefaultRoute);
        }
        Ok(())
    }
}

impl Default for NicFilter {
    fn default() -> Self {
        NicFilter {
            include: Vec::new(),
            exclude: Vec::new(),
            skip_prefixes: FilterConfig::default().skip_prefixes,
            skip_kinds: FilterConfig::default().skip_kinds,
            skip_default_route: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, kind: Option<&str>) -> LinkRecord {
        LinkRecord {
            index,
            name: name.to_owned(),
            kind: kind.map(str::to_owned),
            loopback: name == "lo",
            ..LinkRecord::default()
        }
    }

    #[test]
    fn default_filter_skips_what_is_never_a_rail() {
        let f = NicFilter::default();
        let defaults = BTreeSet::from([2]);
        assert_eq!(
            f.check(&link(1, "lo", None), &defaults),
            Err(Skip::Loopback)
        );
        assert_eq!(
            f.check(&link(2, "eth0", None), &defaults),
            Err(Skip::DefaultRoute)
        );
        assert_eq!(f.check(&link(3, "eth1", None), &defaults), Ok(()));
        assert_eq!(
            f.check(&link(4, "veth1234", Some("veth")), &defaults),
            Err(Skip::Prefix("veth".into()))
        );
        assert_eq!(
            f.check(&link(5, "ry-host", None), &defaults),
            Err(Skip::Prefix("ry-".into()))
        );
        assert_eq!(
            f.check(&link(6, "br-rail", Some("bridge")), &defaults),
            Err(Skip::Kind("bridge".into()))
        );
        // A veth under another name is a fine rail (netns test clusters use them).
        assert_eq!(f.check(&link(7, "rail0", Some("veth")), &defaults), Ok(()));
    }

    #[test]
    fn include_and_exclude_globs() {
        let f = NicFilter::new(&FilterConfig {
            include: vec!["ens*".into(), "eth[1-3]".into()],
            exclude: vec!["ens9".into()],
            ..FilterConfig::default()
        })
        .expect("valid patterns");
        let none = BTreeSet::new();
        assert_eq!(f.check(&link(1, "ens1f0", None), &none), Ok(()));
        assert_eq!(f.check(&link(2, "eth2", None), &none), Ok(()));
        assert_eq!(
            f.check(&link(3, "eth4", None), &none),
            Err(Skip::NotIncluded)
        );
        assert_eq!(
            f.check(&link(4, "ens9", None), &none),
            Err(Skip::Excluded("ens9".into()))
        );
    }

    #[test]
    fn skips_can_be_turned_off() {
        let f = NicFilter::new(&FilterConfig {
            skip_default_route: false,
            skip_prefixes: Vec::new(),
            ..FilterConfig::default()
        })
        .expect("valid");
        let defaults = BTreeSet::from([2]);
        assert_eq!(f.check(&link(2, "eth0", None), &defaults), Ok(()));
        assert_eq!(f.check(&link(3, "veth0", None), &defaults), Ok(()));
    }

    #[test]
    fn bad_pattern_is_a_readable_error() {
        let err = NicFilter::new(&FilterConfig {
            include: vec!["eth[".into()],
            ..FilterConfig::default()
        })
        .expect_err("invalid");
        assert!(err.to_string().contains("eth["), "{err}");
    }
}
