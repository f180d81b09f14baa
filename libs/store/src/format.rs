//! The format version of the JSON values railyard stores (plans, registrations,
//! statuses, tombstones, allocations, DeviceClasses, network specs).
//!
//! A value carries its version in a top-level `formatVersion` field. Every
//! value written before versions existed has none, and this build still
//! writes none: both mean version 1, so what this build writes is
//! byte-for-byte what the previous release wrote and reads. A value of a
//! version above [`FORMAT_VERSION`] was written by a newer railyard whose
//! meaning this build cannot know, so [`KeyValue::decode_json`] refuses it
//! with [`StoreError::NewerFormat`], naming the key and both versions; a
//! caller leaves such a key alone. The rule, and how an upgrade or a
//! downgrade proceeds, are in `docs/etcd-keys.md` ("Format versions").
//!
//! [`KeyValue::decode_json`]: crate::KeyValue::decode_json

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::StoreError;

/// The field that carries a value's version.
pub const FORMAT_FIELD: &str = "formatVersion";
/// The highest version this build reads (and the one it writes, implicitly).
pub const FORMAT_VERSION: u32 = 1;

/// The version of the value stored under `key`: 1 without the field, the
/// field's value otherwise. A version above [`FORMAT_VERSION`], or a field
/// that is not a positive integer, is an error naming the key and the value
/// found. Values that are not JSON objects have no version (1); whether they
/// decode is the caller's decoder's business.
pub fn format_version(key: &str, value: &[u8]) -> Result<u32, StoreError> {
    // Most values have no version field: skip the second parse for them.
    let needle = b"\"formatVersion\"";
    if !value.windows(needle.len()).any(|w| w == needle) {
        return Ok(1);
    }
    let found = match serde_json::from_slice::<Probe>(value) {
        Ok(Probe(Some(v))) => v,
        // Not an object, or the name only appears nested: no version.
        Ok(Probe(None)) | Err(_) => return Ok(1),
    };
    let version = found
        .as_u64()
        .filter(|v| *v >= 1)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| StoreError::Decode {
            key: key.to_owned(),
            message: format!("{FORMAT_FIELD} {found} is not a format version (1, 2, ...)"),
        })?;
    if version > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            key: key.to_owned(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(version)
}

/// The top-level `formatVersion` of a JSON object, reading nothing else into
/// memory.
struct Probe(Option<serde_json::Value>);

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Probe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probe, A::Error> {
                let mut found = None;
                while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if k == FORMAT_FIELD {
                        found = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Probe(found))
            }
        }
        // Anything but an object is an error here, which the caller reads as
        // "no version".
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_field_is_version_one() {
        assert_eq!(format_version("/k", br#"{"name":"a"}"#).unwrap(), 1);
        assert_eq!(format_version("/k", b"[1,2]").unwrap(), 1);
        assert_eq!(format_version("/k", b"not json").unwrap(), 1);
        assert_eq!(format_version("/k", b"").unwrap(), 1);
        // Only the top level counts.
        let nested = br#"{"spec":{"formatVersion":7}}"#;
        assert_eq!(format_version("/k", nested).unwrap(), 1);
        assert_eq!(format_version("/k", br#"["formatVersion"]"#).unwrap(), 1);
    }

    #[test]
    fn versions_up_to_the_supported_one_are_read() {
        let v1 = br#"{"formatVersion":1,"name":"a"}"#;
        assert_eq!(format_version("/k", v1).unwrap(), 1);
    }

    #[test]
    fn a_newer_version_is_refused_naming_key_and_versions() {
        let err = format_version("/railyard/v1/hosts/a", br#"{"name":"a","formatVersion":2}"#)
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::NewerFormat {
                key: "/railyard/v1/hosts/a".into(),
                found: 2,
                supported: FORMAT_VERSION,
            }
        );
        let text = err.to_string();
        for part in ["/railyard/v1/hosts/a", "format version 2", "up to 1"] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn a_field_that_is_not_a_version_is_refused_naming_its_value() {
        for (bad, shown) in [
            (r#""2""#, r#""2""#),
            ("0", "0"),
            ("-1", "-1"),
            ("1.5", "1.5"),
            ("null", "null"),
            ("4294967296", "4294967296"),
            (r#"{"v":1}"#, r#"{"v":1}"#),
        ] {
            let value = format!(r#"{{"formatVersion":{bad}}}"#);
            let err = format_version("/k", value.as_bytes()).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, StoreError::Decode { .. }), "{bad}: {text}");
            assert!(
                text.contains("formatVersion") && text.contains(shown) && text.contains("\"/k\""),
                "{text}"
            );
        }
    }
}
