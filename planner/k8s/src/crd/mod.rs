//! The custom resources: railyard's own (generated into deploy/kubernetes/crds by
//! `railyard-crdgen`) and the Multus NetworkAttachmentDefinition railyard writes.

pub mod allocations;
pub mod device_class;
pub mod nad;
pub mod network;
pub mod views;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Map, Value};

pub use allocations::{IpAllocation, IpAllocationSpec};
pub use device_class::{DeviceClass, DeviceClassSpec, DeviceMatchSpec};
pub use nad::{NetworkAttachmentDefinition, NetworkAttachmentDefinitionSpec};
pub use network::{
    AttachPolicySpec, CapacityStatus, MultiNicNetwork, MultiNicNetworkSpec, MultiNicNetworkStatus,
    PluginSpec, UnplannedHost,
};
pub use views::{Cidr, CidrSpec, HostInterface, HostInterfaceSpec};

/// The largest integer a `float64` holds exactly (2^53 - 1): the bound of every
/// 64-bit field. The apiserver compares `minimum`/`maximum` as `float64`, so a
/// bound of `i64::MAX` would let 2^63 (equal to it as a `float64`) through.
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Every CRD railyard owns, each with the file name it is committed under.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("multinicnetworks.yaml", MultiNicNetwork::crd()),
        ("hostinterfaces.yaml", HostInterface::crd()),
        ("ipallocations.yaml", IpAllocation::crd()),
        ("cidrs.yaml", Cidr::crd()),
        ("deviceclasses.yaml", DeviceClass::crd()),
    ]
    .into_iter()
    .map(|(file, crd)| (file, bound_integers(crd)))
    .collect()
}

/// Gives every integer field of the schema a `minimum` and a `maximum` it lacks,
/// from its format (`int32`, `uint32`, `int64`, ...).
///
/// Why: the apiserver does not enforce integer formats. Without a bound, a value
/// too large for the Rust type is stored, fails to deserialize, and stalls every
/// watch that lists it. Fields with a meaning of their own (a speed, a count) set
/// tighter bounds in their type; this catches the rest, including fields of types
/// from k8s-openapi (`Condition.observedGeneration`).
pub fn bound_integers(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

fn walk(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("type").and_then(Value::as_str) == Some("integer") {
                bound(m);
            }
            m.values_mut().for_each(walk);
        }
        Value::Array(a) => a.iter_mut().for_each(walk),
        _ => {}
    }
}

/// The range of an integer format; 64-bit ones are cut to ±(2^53 - 1).
pub fn format_range(format: Option<&str>) -> (f64, f64) {
    match format {
        Some("int8") => (f64::from(i8::MIN), f64::from(i8::MAX)),
        Some("int16") => (f64::from(i16::MIN), f64::from(i16::MAX)),
        Some("int32") => (f64::from(i32::MIN), f64::from(i32::MAX)),
        Some("uint8") => (0.0, f64::from(u8::MAX)),
        Some("uint16") => (0.0, f64::from(u16::MAX)),
        Some("uint32") => (0.0, f64::from(u32::MAX)),
        Some("uint64" | "uint") => (0.0, MAX_SAFE_INTEGER),
        _ => (-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    }
}

fn bound(m: &mut Map<String, Value>) {
    let (min, max) = format_range(m.get("format").and_then(Value::as_str));
    m.entry("minimum").or_insert_with(|| Value::from(min));
    m.entry("maximum").or_insert_with(|| Value::from(max));
}
