//! The CNI spec versions we speak and how to pick one with a peer.
//!
//! A closed enum rather than a semver string: every version-dependent branch
//! (ip `version` field, 1.1.0 route attributes, which commands exist) is then a
//! comparison the compiler checks, and an unknown version is rejected once, at
//! the edge, with code 1.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A CNI spec version this crate can read and write.
///
/// 0.1.0 and 0.2.0 (the `ip4`/`ip6` result shape) are deliberately absent:
/// no runtime still sends them and the reference plugins support 0.3.0+.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    /// Oldest first, the order `supportedVersions` is reported in.
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Exact match only: the spec's versions are full semver strings and a
    /// runtime sending "1.0" is misconfigured, not approximately right.
    pub fn parse(s: &str) -> Option<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// 0.3.x and 0.4.0 tag each IP with `"version": "4"|"6"`; 1.0.0 dropped it.
    pub fn has_ip_version_field(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// Route mtu/advmss/priority/table/scope and interface
    /// mtu/socketPath/pciID exist only from 1.1.0 on.
    pub fn has_1_1_fields(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// "0.3.0, 0.3.1, ..." for error messages.
    pub fn supported_list() -> String {
        CniVersion::ALL.map(CniVersion::as_str).join(", ")
    }

    /// The highest version both sides speak that does not exceed `wanted`.
    ///
    /// Never above `wanted`: the caller's config and prevResult are written
    /// for `wanted`, and down-converting is lossless enough while inventing
    /// newer fields is not possible. Unknown strings in `offered` (0.1.0,
    /// 0.2.0, future versions) are skipped rather than failing the call.
    pub fn negotiate<S: AsRef<str>>(wanted: CniVersion, offered: &[S]) -> Option<CniVersion> {
        offered
            .iter()
            .filter_map(|s| CniVersion::parse(s.as_ref()))
            .filter(|v| *v <= wanted)
            .max()
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `CNI_COMMAND=VERSION` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub cni_version: String,
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// Our own answer, echoing the runtime's version when we speak it so the
    /// reply is in the dialect it asked for.
    pub fn ours(requested: Option<CniVersion>) -> Self {
        VersionInfo {
            cni_version: requested.unwrap_or(CniVersion::LATEST).as_str().to_owned(),
            supported_versions: CniVersion::ALL.map(|v| v.as_str().to_owned()).to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_exact_and_ordered() {
        assert_eq!(CniVersion::parse("1.0.0"), Some(CniVersion::V1_0_0));
        assert_eq!(CniVersion::parse("1.0"), None);
        assert_eq!(CniVersion::parse("0.2.0"), None);
        assert_eq!(CniVersion::parse(" 1.1.0"), None);
        assert!(CniVersion::V0_3_1 < CniVersion::V0_4_0);
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()), Some(v));
        }
    }

    #[test]
    fn negotiate_picks_highest_common_not_above_wanted() {
        let reference = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];
        assert_eq!(
            CniVersion::negotiate(CniVersion::V1_1_0, &reference),
            Some(CniVersion::V1_0_0)
        );
        assert_eq!(
            CniVersion::negotiate(CniVersion::V0_4_0, &reference),
            Some(CniVersion::V0_4_0)
        );
        assert_eq!(
            CniVersion::negotiate(CniVersion::V0_3_0, &["1.0.0", "9.9.9"]),
            None
        );
        assert_eq!(CniVersion::negotiate::<&str>(CniVersion::V1_1_0, &[]), None);
    }

    #[test]
    fn version_info_lists_everything_and_echoes_request() {
        let info = VersionInfo::ours(Some(CniVersion::V0_4_0));
        let json = serde_json::to_value(&info).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "cniVersion": "0.4.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            })
        );
        assert_eq!(VersionInfo::ours(None).cni_version, "1.1.0");
    }
}
