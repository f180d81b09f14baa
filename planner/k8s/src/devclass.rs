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
//!
//! Objects are listed untyped and decoded one by one ([`decide_listed`]): the
//! apiserver stores what its schema lets through (integer formats are not
//! enforced, and an object may predate a schema bound), and one object that does
//! not fit the Rust type must be refused alone, not fail the whole listing and
//! stall every class.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::api::DynamicObject;
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

/// The objects of an untyped listing that decode as DeviceClasses, and (name,
/// reason) of those that do not.
pub fn decode(objects: &[Arc<DynamicObject>]) -> (Vec<Arc<DeviceClass>>, Vec<(String, String)>) {
    let mut read = Vec::new();
    let mut unreadable = Vec::new();
    for obj in objects {
        let name = obj.name_any();
        match obj.as_ref().clone().try_parse::<DeviceClass>() {
            Ok(class) => read.push(Arc::new(class)),
            Err(e) => unreadable.push((
                name.clone(),
                format!("DeviceClass {name}: cannot be read as a DeviceClass (was it stored before the schema bounded it?): {e}"),
            )),
        }
    }
    (read, unreadable)
}

/// [`decide`] over an untyped listing: an object that does not decode is refused
/// like an invalid one (its last stored version stays), the others are decided.
pub fn decide_listed(
    objects: &[Arc<DynamicObject>],
    stored: &[KeyValue],
) -> Result<DeviceClassSync, K8sError> {
    let (read, unreadable) = decode(objects);
    decide_with(&read, unreadable, stored)
}

/// The writes that make etcd match `objects` (a complete listing), given the keys
/// under `/railyard/v1/deviceclasses/`.
pub fn decide(
    objects: &[Arc<DeviceClass>],
    stored: &[KeyValue],
) -> Result<DeviceClassSync, K8sError> {
    decide_with(objects, Vec::new(), stored)
}

/// `unreadable`: (name, reason) of listed objects that could not be decoded; they
/// exist, so their keys are neither written nor deleted.
fn decide_with(
    objects: &[Arc<DeviceClass>],
    unreadable: Vec<(String, String)>,
    stored: &[KeyValue],
) -> Result<DeviceClassSync, K8sError> {
    let by_key: BTreeMap<&str, &KeyValue> = stored.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    let mut out = DeviceClassSync::default();
    let mut live: BTreeSet<String> = unreadable
        .iter()
        .map(|(name, _)| keys::device_class(name))
        .collect();
    out.refused = unreadable;
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
