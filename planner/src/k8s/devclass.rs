//! DeviceClass objects → `/railyard/v1/deviceclasses/<name>`, as a pure decision
//! over the objects and the keys in etcd.
//!
//! Ownership: the value is the JSON of `railyard_core::attach::DeviceClass` plus one
//! field, `k8sUid` (the object's UID), which the route-daemons ignore. It marks the
//! key as the controller's: only marked keys are ever deleted (the object is gone),
//! so a class written into etcd by hand or by another tool, without the field, is
//! never removed for lack of an object. A DeviceClass object does take over an
//! unmarked key of the same name, as the MultiNicNetwork does with a CLI-applied
//! spec: Kubernetes is then where that class is edited.
//!
//! An invalid object writes nothing and removes nothing: the last valid class stays
//! in etcd (the daemons keep attaching with it) until the object is fixed or
//! deleted, as with an invalid MultiNicNetwork.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use railyard_core::{attach, keys};
use railyard_store::KeyValue;
use serde::{Deserialize, Serialize};

use super::crd::DeviceClass;
use super::K8sError;

/// The value stored for a DeviceClass object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDeviceClass {
    #[serde(flatten)]
    pub class: attach::DeviceClass,
    /// Set only by the controller; see the module doc.
    #[serde(rename = "k8sUid", default, skip_serializing_if = "Option::is_none")]
    pub k8s_uid: Option<String>,
}

/// What one sync writes to etcd. Each write is conditional on the key's mod
/// revision as read (0: must not exist), so a concurrent change wins and the next
/// sync decides again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceClassSync {
    /// (key, value, expected mod revision).
    pub put: Vec<(String, Vec<u8>, i64)>,
    /// (key, expected mod revision): marked keys whose object is gone.
    pub delete: Vec<(String, i64)>,
    /// (object name, reason): objects that failed validation; nothing is written
    /// for them. The reason names the object, the field and the value.
    pub refused: Vec<(String, String)>,
}

/// The value the controller stores for `obj`; [`K8sError::Invalid`] when the
/// object fails [`DeviceClass::validated`].
pub fn stored_value(obj: &DeviceClass) -> Result<Vec<u8>, K8sError> {
    let name = obj.name_any();
    let class = obj.validated().map_err(|source| K8sError::Invalid {
        object: format!("DeviceClass {name}"),
        source,
    })?;
    let stored = StoredDeviceClass {
        class,
        k8s_uid: Some(obj.uid().unwrap_or_default()),
    };
    serde_json::to_vec(&stored).map_err(|e| K8sError::Encode(format!("DeviceClass {name}: {e}")))
}

/// True when the controller wrote this key (it carries `k8sUid`). An unreadable
/// value is not ours: never delete what we cannot tell.
pub fn written_by_controller(kv: &KeyValue) -> bool {
    kv.decode_json::<StoredDeviceClass>()
        .is_ok_and(|s| s.k8s_uid.is_some())
}

/// The writes that make etcd match `objects` (a complete listing), given the keys
/// under `/railyard/v1/deviceclasses/`.
pub fn decide(
    objects: &[Arc<DeviceClass>],
    stored: &[KeyValue],
) -> Result<DeviceClassSync, K8sError> {
    let by_key: BTreeMap<&str, &KeyValue> = stored.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    let mut out = DeviceClassSync::default();
    let mut live = BTreeSet::new();
    for obj in objects {
        let name = obj.name_any();
        let key = keys::device_class(&name);
        live.insert(key.clone());
        match stored_value(obj) {
            Err(e @ K8sError::Invalid { .. }) => out.refused.push((name, e.to_string())),
            Err(e) => return Err(e),
            Ok(value) => match by_key.get(key.as_str()) {
                Some(kv) if kv.value == value => {}
                Some(kv) => out.put.push((key, value, kv.mod_revision)),
                None => out.put.push((key, value, 0)),
            },
        }
    }
    out.delete = stored
        .iter()
        .filter(|kv| !live.contains(&kv.key) && written_by_controller(kv))
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    Ok(out)
}
