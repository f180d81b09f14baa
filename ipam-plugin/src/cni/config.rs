//! The network configuration a runtime writes to the plugin's stdin.
//!
//! Only the fields the protocol itself needs are typed; `ipam`, `args` and
//! `runtimeConfig` stay raw JSON objects and everything else lands in
//! `extra`, because each plugin on top (railyard-ipam, the meta plugin)
//! owns its own schema and the spec forbids choking on fields we don't know.
//!
//! Decoding is done field by field instead of through one derived struct so
//! that every error names the field: a missing or semantically invalid
//! field is code 7 (invalid network config), a field of the wrong JSON type
//! or undecodable bytes are code 6 (failed to decode), an unsupported
//! `cniVersion` is code 1.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cni::{decode, CniResult, CniVersion};
use crate::Error;

/// One entry of the GC verb's list of attachments to keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The key GC's keep-list arrives under (spec 1.1.0).
pub const VALID_ATTACHMENTS: &str = "cni.dev/valid-attachments";
/// The key an early 1.1.0 draft used; libcni still sends both, so a runtime
/// built on an older libcni may send only this one.
pub const LEGACY_ATTACHMENTS: &str = "cni.dev/attachments";

/// A parsed plugin configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    pub name: String,
    /// The plugin binary name (`type`).
    pub plugin_type: String,
    pub ipam: Option<Map<String, Value>>,
    /// Kept raw: a plugin that only needs DEL must not fail on a prevResult
    /// it never reads. Decode with [`NetConf::prev_result`].
    pub prev_result: Option<Value>,
    pub runtime_config: Option<Map<String, Value>>,
    pub args: Option<Map<String, Value>>,
    pub valid_attachments: Option<Vec<GcAttachment>>,
    /// Every other top-level key, untouched.
    pub extra: Map<String, Value>,
}

impl NetConf {
    pub fn parse(bytes: &[u8]) -> Result<NetConf, Error> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| Error::decode("network config", e))?;
        let Value::Object(mut map) = value else {
            return Err(Error::decode(
                "network config",
                format!("expected a JSON object, got {}", decode::kind(&value)),
            ));
        };
        let version_raw = required_string(&mut map, "cniVersion")?;
        let cni_version =
            CniVersion::parse(&version_raw).ok_or_else(|| Error::IncompatibleVersion {
                field: "cniVersion".into(),
                version: version_raw,
            })?;
        let name = required_string(&mut map, "name")?;
        validate_name(&name)?;
        let plugin_type = required_string(&mut map, "type")?;
        validate_type(&plugin_type)?;
        let ipam = optional_object(&mut map, "ipam")?;
        let prev_result = optional_object(&mut map, "prevResult")?.map(Value::Object);
        let runtime_config = optional_object(&mut map, "runtimeConfig")?;
        let args = optional_object(&mut map, "args")?;
        let valid = optional::<Vec<GcAttachment>>(&mut map, VALID_ATTACHMENTS)?;
        let legacy = optional::<Vec<GcAttachment>>(&mut map, LEGACY_ATTACHMENTS)?;
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            ipam,
            prev_result,
            runtime_config,
            args,
            valid_attachments: valid.or(legacy),
            extra: map,
        })
    }

    /// The previous plugin's result in canonical form, if the runtime sent one.
    pub fn prev_result(&self) -> Result<Option<CniResult>, Error> {
        self.prev_result
            .as_ref()
            .map(|v| CniResult::from_value(v, "prevResult", self.cni_version).map(|(_, r)| r))
            .transpose()
    }

    /// `args.cni`: where Multus puts a network selection's `cni-args`.
    pub fn cni_args(&self) -> Option<&Map<String, Value>> {
        self.args.as_ref()?.get("cni")?.as_object()
    }

    /// Decodes the `ipam` section into a plugin's own schema, with errors that
    /// name the path inside it (`ipam.rails[1]: ...`).
    pub fn ipam_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let Some(ipam) = &self.ipam else {
            return Err(Error::invalid_config("ipam", "is missing"));
        };
        decode::typed("network config", "ipam", &Value::Object(ipam.clone()))
    }

    /// Decodes one of the unknown top-level keys (a plugin's own field).
    pub fn extra_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.extra.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decode::typed("network config", key, v).map(Some),
        }
    }

    /// The config as JSON again. Key order is not preserved; the protocol
    /// does not depend on it.
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// The config as a JSON object, the form [`crate::delegate::Delegate`]
    /// takes, so a plugin can adjust it (`type`, `ipam`) before delegating.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = self.extra.clone();
        let mut put = |k: &str, v: Value| {
            map.insert(k.to_owned(), v);
        };
        put("cniVersion", self.cni_version.as_str().into());
        put("name", self.name.clone().into());
        put("type", self.plugin_type.clone().into());
        let objects = [
            ("ipam", &self.ipam),
            ("runtimeConfig", &self.runtime_config),
            ("args", &self.args),
        ];
        for (key, value) in objects {
            if let Some(v) = value {
                put(key, Value::Object(v.clone()));
            }
        }
        if let Some(prev) = &self.prev_result {
            put("prevResult", prev.clone());
        }
        if let Some(list) = &self.valid_attachments {
            put(
                VALID_ATTACHMENTS,
                serde_json::to_value(list).unwrap_or(Value::Null),
            );
        }
        map
    }
}

fn required_string(map: &mut Map<String, Value>, key: &str) -> Result<String, Error> {
    match map.remove(key) {
        None | Some(Value::Null) => Err(Error::invalid_config(key, "is missing")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(key, "a string", &other)),
    }
}

/// `null` reads as absent, as Go's `omitempty` round trips produce it.
fn optional_object(
    map: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<Map<String, Value>>, Error> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(wrong_type(key, "an object", &other)),
    }
}

fn optional<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, Error> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => decode::typed("network config", key, &v).map(Some),
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> Error {
    Error::decode(
        "network config",
        format!(
            "field `{key}`: expected {expected}, got {} {}",
            decode::kind(got),
            decode::show(got)
        ),
    )
}

/// The spec's network name rule. Names end up in file paths and keys, so a
/// name outside it is refused up front rather than escaped later.
fn validate_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Ok(());
    }
    Err(Error::invalid_config(
        "name",
        format!("= {name:?}: must start with an alphanumeric character followed by alphanumerics, '_', '.' or '-'"),
    ))
}

/// `type` is a file name looked up in CNI_PATH: a path separator would let a
/// config execute an arbitrary binary.
fn validate_type(plugin_type: &str) -> Result<(), Error> {
    if plugin_type.is_empty()
        || plugin_type == "."
        || plugin_type == ".."
        || plugin_type.contains(['/', '\\', '\0'])
    {
        return Err(Error::invalid_config(
            "type",
            format!("= {plugin_type:?}: must be a plain file name"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;
    use serde_json::json;

    fn parse(v: Value) -> Result<NetConf, Error> {
        NetConf::parse(v.to_string().as_bytes())
    }

    #[test]
    fn parses_typed_and_keeps_unknown_fields() {
        let conf = parse(json!({
            "cniVersion": "1.1.0",
            "name": "rail-net",
            "type": "railyard-ipam",
            "ipam": {"type": "railyard-ipam", "network": "rdma"},
            "runtimeConfig": {"ips": ["10.0.0.5/24"]},
            "args": {"cni": {"rails": [0, 2]}},
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "net1"}],
            "master": "eth1",
            "mtu": 9000
        }))
        .unwrap();
        assert_eq!(conf.cni_version, CniVersion::V1_1_0);
        assert_eq!(conf.name, "rail-net");
        assert_eq!(conf.plugin_type, "railyard-ipam");
        assert_eq!(conf.ipam.as_ref().unwrap()["network"], "rdma");
        assert_eq!(conf.cni_args().unwrap()["rails"], json!([0, 2]));
        assert_eq!(
            conf.valid_attachments,
            Some(vec![GcAttachment {
                container_id: "c1".into(),
                ifname: "net1".into()
            }])
        );
        assert_eq!(conf.extra.len(), 2);
        assert_eq!(conf.extra_as::<u32>("mtu").unwrap(), Some(9000));
        let back = NetConf::parse(conf.to_value().to_string().as_bytes()).unwrap();
        assert_eq!(back, conf);
    }

    #[test]
    fn legacy_attachment_key_is_accepted() {
        let conf = parse(json!({"cniVersion": "1.1.0", "name": "n", "type": "t",
            "cni.dev/attachments": [{"containerID": "c", "ifname": "eth0"}]}))
        .unwrap();
        assert_eq!(conf.valid_attachments.unwrap().len(), 1);
    }

    #[test]
    fn not_json_is_code_6() {
        for bytes in [&b"not json"[..], b"", b"{\"cniVersion\": ", b"\xff\xfe"] {
            let err = NetConf::parse(bytes).unwrap_err();
            assert_eq!(err.code(), codes::DECODE_FAILURE, "{err}");
        }
        let err = parse(json!(["a"])).unwrap_err();
        assert_eq!(err.code(), codes::DECODE_FAILURE);
        assert!(err.to_string().contains("got an array"), "{err}");
    }

    #[test]
    fn missing_fields_are_code_7_and_named() {
        let base = json!({"cniVersion": "1.0.0", "name": "n", "type": "t"});
        for field in ["cniVersion", "name", "type"] {
            let mut v = base.clone();
            v.as_object_mut().unwrap().remove(field);
            let err = parse(v).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG, "{err}");
            assert!(
                err.to_string().contains(&format!("`{field}` is missing")),
                "{err}"
            );
        }
    }

    #[test]
    fn wrong_types_are_code_6_and_name_field_and_value() {
        let cases = [
            ("cniVersion", json!(1.0), "got a number 1.0"),
            ("name", json!(42), "got a number 42"),
            ("type", json!(["x"]), "got an array [\"x\"]"),
            ("ipam", json!("host-local"), "got a string \"host-local\""),
            ("prevResult", json!(3), "got a number 3"),
            ("args", json!(true), "got a boolean true"),
        ];
        for (field, value, needle) in cases {
            let mut v = json!({"cniVersion": "1.0.0", "name": "n", "type": "t"});
            v[field] = value;
            let err = parse(v).unwrap_err();
            assert_eq!(err.code(), codes::DECODE_FAILURE, "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("`{field}`")) && msg.contains(needle),
                "{msg}"
            );
        }
        let err = parse(json!({"cniVersion": "1.1.0", "name": "n", "type": "t",
            "cni.dev/valid-attachments": [{"containerID": 7, "ifname": "eth0"}]}))
        .unwrap_err();
        assert_eq!(err.code(), codes::DECODE_FAILURE);
        assert!(
            err.to_string()
                .contains("`cni.dev/valid-attachments[0].containerID`"),
            "{err}"
        );
    }

    #[test]
    fn invalid_values_are_code_7_and_unsupported_version_code_1() {
        let err =
            parse(json!({"cniVersion": "1.0.0", "name": "bad name", "type": "t"})).unwrap_err();
        assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG);
        assert!(err.to_string().contains("\"bad name\""), "{err}");
        let err =
            parse(json!({"cniVersion": "1.0.0", "name": "n", "type": "../bin/sh"})).unwrap_err();
        assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG);
        let err = parse(json!({"cniVersion": "0.2.0", "name": "n", "type": "t"})).unwrap_err();
        assert_eq!(err.code(), codes::INCOMPATIBLE_VERSION);
        assert!(err.to_string().contains("\"0.2.0\""), "{err}");
    }

    #[test]
    fn ipam_as_names_the_inner_path() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Ipam {
            rails: Vec<u8>,
        }
        let conf = parse(json!({"cniVersion": "1.0.0", "name": "n", "type": "t",
            "ipam": {"rails": [0, "one"]}}))
        .unwrap();
        let err = conf.ipam_as::<Ipam>().unwrap_err();
        assert!(err.to_string().contains("`ipam.rails[1]`"), "{err}");
        let none = parse(json!({"cniVersion": "1.0.0", "name": "n", "type": "t"})).unwrap();
        assert_eq!(
            none.ipam_as::<Ipam>().unwrap_err().code(),
            codes::INVALID_NETWORK_CONFIG
        );
    }
}
