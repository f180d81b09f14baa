//! Typed decoding of JSON with errors that name the field and show the value.
//!
//! serde alone says "invalid IP address syntax"; an operator reading the
//! kubelet log needs "field `ips[0].address` = \"10.0.0.300/24\"". So every
//! typed decode in the crate goes through here: serde_path_to_error supplies
//! the path, and the value is looked up at that path in the input.

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::Error;

/// Longest rendering of an offending value kept in a message.
const SHOWN_MAX: usize = 64;

/// Decodes `value` as `T`. `what` names the document ("network config",
/// "prevResult") and `field` the place of `value` inside it ("" for the root).
pub(crate) fn typed<T: DeserializeOwned>(
    what: &str,
    field: &str,
    value: &Value,
) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let at = match inner.as_str() {
            "." => field.to_owned(),
            p if field.is_empty() || p.starts_with('[') => format!("{field}{p}"),
            p => format!("{field}.{p}"),
        };
        let shown = value_at(value, e.path()).map(show).unwrap_or_default();
        let reason = match (at.is_empty(), shown.is_empty()) {
            (true, _) => e.inner().to_string(),
            (false, true) => format!("field `{at}`: {}", e.inner()),
            (false, false) => format!("field `{at}` = {shown}: {}", e.inner()),
        };
        Error::decode(what, reason)
    })
}

fn value_at<'v>(root: &'v Value, path: &serde_path_to_error::Path) -> Option<&'v Value> {
    path.iter().try_fold(root, |v, segment| match segment {
        Segment::Seq { index } => v.get(*index),
        Segment::Map { key } => v.get(key),
        Segment::Enum { .. } | Segment::Unknown => None,
    })
}

/// A value as compact JSON, cut to one readable line.
pub(crate) fn show(value: &Value) -> String {
    let mut shown = value.to_string();
    if shown.len() > SHOWN_MAX {
        let cut = (0..=SHOWN_MAX)
            .rev()
            .find(|i| shown.is_char_boundary(*i))
            .unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    shown
}

/// "a string", "an array", ... for messages about wrong JSON types.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::IpAddr;

    #[test]
    fn names_path_and_value() {
        let v = json!({"a": [{"ip": "10.0.0.300"}]});
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            ip: IpAddr,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            a: Vec<Inner>,
        }
        let err = typed::<Outer>("doc", "root", &v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to decode doc: field `root.a[0].ip` = \"10.0.0.300\": invalid IP address syntax"
        );
        let err = typed::<Vec<Inner>>("doc", "list", &json!([{"ip": 1}])).unwrap_err();
        assert!(err.to_string().contains("field `list[0].ip` = 1:"), "{err}");
    }

    #[test]
    fn show_truncates_on_char_boundary() {
        let long = Value::from("é".repeat(100));
        let s = show(&long);
        assert!(s.ends_with('…') && s.len() <= SHOWN_MAX + '…'.len_utf8());
    }
}
