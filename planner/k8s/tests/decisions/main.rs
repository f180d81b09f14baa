//! The Kubernetes controller's decisions, as pure functions: MultiNicNetwork →
//! etcd manifest, → NetworkAttachmentDefinitions, (+ planner status) → CR status;
//! plus the small choices around them (leadership, cleanup, watch mapping) and the
//! pod-side contract (Multus cni-args → `Selection`). One test binary, one module
//! per topic; the helpers below are shared.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use railyard_core::ipam::Selection;
use railyard_core::plan::UnplannedInterface;
use railyard_core::status::{Condition, NetworkStatus};
use railyard_core::ALLOW_RENUMBER;
use railyard_core::{keys, CoreError, HostInventory, Network, NetworkManifest, Nic, Unplanned};
use railyard_k8s::crd::{CidrSpec, HostInterfaceSpec};
use railyard_k8s::crd::{
    DeviceClass, DeviceClassSpec, DeviceMatchSpec, MultiNicNetwork, MultiNicNetworkStatus,
    NetworkAttachmentDefinition, NetworkAttachmentDefinitionSpec,
};
use railyard_k8s::nad::{self, NadPlan};
use railyard_k8s::status::{network_status, Observed};
use railyard_k8s::{cleanup, controller, convert, devclass, leader, views};
use railyard_store::{Compare, KeyValue, StoreError, WatchEvent, WatchUpdate};
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../../../../docs/examples/network.yaml");
const UID: &str = "5f0c2a1e-7a52-4d0c-9d3b-0e2f1c3a4b5d";

mod device_classes;
mod manifest;
mod nad_problems;
mod nads;
mod selection;
mod status;
mod view_objects;

fn sample() -> MultiNicNetwork {
    let mut net: MultiNicNetwork = serde_yaml::from_str(SAMPLE).expect("the sample parses");
    net.metadata.uid = Some(UID.into());
    net.metadata.generation = Some(3);
    net
}

/// A network from the sample with `edit` applied to its YAML value.
fn network(edit: impl FnOnce(&mut Value)) -> MultiNicNetwork {
    let mut v = serde_json::to_value(sample()).unwrap();
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

fn validated(net: &MultiNicNetwork) -> Network {
    convert::manifest(net).validate().expect("valid")
}

fn plan_of(net: &MultiNicNetwork, namespaces: &[&str]) -> Result<NadPlan, CoreError> {
    let ns: Vec<String> = namespaces.iter().map(|s| s.to_string()).collect();
    nad::plan(
        &validated(net),
        &net.metadata.annotations.clone().unwrap_or_default(),
        &ns,
    )
}

fn delegate_of(net: &MultiNicNetwork) -> Value {
    plan_of(net, &["default"]).expect("a NAD plan").config["delegate"].clone()
}

fn with_plugin(kind: &str, args: Value) -> MultiNicNetwork {
    network(|v| v["spec"]["plugin"] = json!({"cniVersion": "1.0.0", "type": kind, "args": args}))
}

fn annotated(key: &str, value: &str) -> MultiNicNetwork {
    network(|v| v["metadata"]["annotations"] = json!({key: value}))
}

fn invalid_field(err: CoreError) -> (String, String) {
    match err {
        CoreError::Invalid { field, value, .. } | CoreError::InvalidName { field, value, .. } => {
            (field, value)
        }
        other => panic!("expected a field error, got {other}"),
    }
}

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn condition<'a>(
    s: &'a MultiNicNetworkStatus,
    kind: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap_or_else(|| panic!("no {kind} condition"))
}

fn owner() -> OwnerReference {
    nad::owner_reference(&sample()).expect("a stored network has a UID")
}

fn cached_nad(ns: &str, name: &str, owner_uid: &str) -> Arc<NetworkAttachmentDefinition> {
    let mut o = owner();
    o.uid = owner_uid.into();
    Arc::new(NetworkAttachmentDefinition {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            owner_references: Some(vec![o]),
            ..ObjectMeta::default()
        },
        spec: NetworkAttachmentDefinitionSpec::default(),
    })
}

fn kv(key: &str, value: &[u8], create_revision: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.to_vec(),
        create_revision,
        mod_revision: create_revision,
        version: 1,
        lease: None,
    }
}
