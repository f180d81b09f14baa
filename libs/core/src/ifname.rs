//! A Linux interface name held inline.
//!
//! Every block and every route names a NIC, and a 10,000-host plan holds 80,000
//! blocks; one host's route set is as long. A heap `String` per block (or an
//! atomic reference count per route) was the largest single cost of planning and
//! of computing routes. The kernel caps names at IFNAMSIZ - 1 = 15 bytes, so the
//! name fits in 16 bytes that copy for free.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CoreError, Result};

/// The kernel's limit on an interface name, without the terminating NUL.
pub const MAX_IFNAME: usize = 15;

#[derive(Clone, Copy)]
pub struct IfName {
    len: u8,
    bytes: [u8; MAX_IFNAME],
}

impl IfName {
    /// Accepts what the kernel's `dev_valid_name` accepts: 1 to 15 bytes, not `.`
    /// or `..`, and no `/`, `:` or whitespace.
    pub fn new(name: &str) -> Result<Self> {
        let bad = |reason: &str| CoreError::InvalidName {
            field: "interface name".to_string(),
            value: name.to_string(),
            reason: reason.to_string(),
        };
        if name.is_empty() || name.len() > MAX_IFNAME {
            return Err(bad("must be 1 to 15 bytes long"));
        }
        if name == "." || name == ".." {
            return Err(bad("must not be '.' or '..'"));
        }
        // Whitespace and control characters are all at or below b' ', or DEL.
        if name
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'/' || b == b':')
        {
            return Err(bad(
                "must not contain '/', ':', whitespace or control characters",
            ));
        }
        let mut bytes = [0; MAX_IFNAME];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(IfName {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only `new` builds an IfName, from a whole `&str`, so the prefix is UTF-8;
        // the fallback is unreachable but keeps this crate free of `unsafe`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// The empty name: a route with no output device (blackhole, unreachable) as read
/// from the kernel. `new` never returns it.
impl Default for IfName {
    fn default() -> Self {
        IfName {
            len: 0,
            bytes: [0; MAX_IFNAME],
        }
    }
}

impl Deref for IfName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for IfName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Lets maps keyed by `IfName` be looked up with a `&str`; consistent because
/// `Eq`, `Ord` and `Hash` below all go through `as_str`.
impl Borrow<str> for IfName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for IfName {
    fn eq(&self, other: &Self) -> bool {
        // The unused tail is always zero, so comparing whole arrays is exact.
        self.len == other.len && self.bytes == other.bytes
    }
}

impl Eq for IfName {}

impl PartialEq<str> for IfName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for IfName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for IfName {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<IfName> for String {
    fn eq(&self, other: &IfName) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<IfName> for str {
    fn eq(&self, other: &IfName) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<IfName> for &str {
    fn eq(&self, other: &IfName) -> bool {
        *self == other.as_str()
    }
}

impl PartialOrd for IfName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IfName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for IfName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::str::FromStr for IfName {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        IfName::new(s)
    }
}

impl TryFrom<&str> for IfName {
    type Error = CoreError;
    fn try_from(s: &str) -> Result<Self> {
        IfName::new(s)
    }
}

impl Serialize for IfName {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IfName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        IfName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kernel_names_and_round_trips() {
        for name in [
            "eth0",
            "ens1f0np0",
            "a",
            "123456789012345",
            "net1-0",
            "rail.7",
        ] {
            let n = IfName::new(name).expect(name);
            assert_eq!(n.as_str(), name);
            assert_eq!(n.to_string(), name);
            let json = serde_json::to_string(&n).expect("serialize");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<IfName>(&json).expect("parse"), n);
        }
    }

    #[test]
    fn refuses_what_the_kernel_refuses_naming_the_value() {
        for name in [
            "",
            "1234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            let e = IfName::new(name).expect_err(name).to_string();
            assert!(e.contains(&format!("{name:?}")), "{e}");
        }
        let e = serde_json::from_str::<IfName>("\"way-too-long-name0\"").expect_err("too long");
        assert!(e.to_string().contains("way-too-long-name0"), "{e}");
    }

    #[test]
    fn orders_and_hashes_like_the_string() {
        use std::collections::HashSet;
        let mut names: Vec<IfName> = ["eth10", "eth1", "eth", "ens3"]
            .iter()
            .map(|n| IfName::new(n).expect("valid"))
            .collect();
        names.sort();
        let strs: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        assert_eq!(strs, ["ens3", "eth", "eth1", "eth10"]);
        let set: HashSet<IfName> = names.iter().copied().collect();
        assert!(set.contains("eth1"));
    }
}
