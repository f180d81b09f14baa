//! The committed CRDs match the Rust types, and their CEL rules compile, fit the
//! apiserver's cost budget and accept/refuse what they should.
//!
//! No kube-apiserver can run on these machines, so the rules are evaluated with
//! kube's client-side CEL validator (kube-cel) over the generated schema: the same
//! rule text the apiserver would compile. A rule that does not compile, or one
//! whose estimated cost is too high, would otherwise only surface as a failed
//! `kubectl apply` of the CRD in a real cluster.

use std::path::PathBuf;

use kube::core::cel::{analyze_rule, compile_schema, ScopeContext, Validator, WarningKind};
use kube::CustomResourceExt;
use railyard_k8s::crd::{self, DeviceClass, MultiNicNetwork};
use railyard_k8s::crdgen;
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../../../docs/examples/network.yaml");

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/crds")
}

#[test]
fn committed_crds_match_the_rust_types() {
    let drift = crdgen::check(&crd_dir()).expect("render");
    assert!(
        drift.is_empty(),
        "{}\nregenerate with: cargo run -p railyard-k8s --bin railyard-crdgen -- deploy/kubernetes/crds",
        drift.join("\n")
    );
}

#[test]
fn crdgen_check_reports_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    crdgen::write(dir.path()).unwrap();
    assert!(crdgen::check(dir.path()).unwrap().is_empty());
    let file = dir.path().join("multinicnetworks.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("hostsPlanned", "hostsPlaned");
    std::fs::write(&file, text).unwrap();
    std::fs::remove_file(dir.path().join("cidrs.yaml")).unwrap();
    let drift = crdgen::check(dir.path()).unwrap();
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert!(
        drift
            .iter()
            .any(|d| d.contains("multinicnetworks.yaml: differs")),
        "{drift:?}"
    );
}

fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a schema"),
    )
    .unwrap()
}

/// Every `x-kubernetes-validations` rule in a schema, depth first.
fn rules(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(rs)) = m.get("x-kubernetes-validations") {
                out.extend(
                    rs.iter()
                        .filter_map(|r| r["rule"].as_str().map(str::to_string)),
                );
            }
            m.values().for_each(|c| rules(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| rules(c, out)),
        _ => {}
    }
}

#[test]
fn every_cel_rule_compiles_and_fits_the_cost_budget() {
    let mut total = 0;
    for (file, crd) in crd::all() {
        let schema = schema_of(&crd);
        let compiled = compile_schema(&schema);
        assert!(
            !compiled.has_errors(),
            "{file}: {:?}",
            compiled.compilation_errors()
        );
        let mut all = Vec::new();
        rules(&schema, &mut all);
        for rule in &all {
            let warnings = analyze_rule(rule, &compiled, ScopeContext::CrdValidation);
            // Only the cost verdict is asserted: kube-cel's scope check does not know
            // comprehension variables (`c` in `self.all(c, ...)`) and flags them.
            let serious: Vec<_> = warnings
                .iter()
                .filter(|w| {
                    matches!(
                        w.kind,
                        WarningKind::CostExceeded | WarningKind::MissingBounds
                    )
                })
                .collect();
            assert!(serious.is_empty(), "{file}: {rule}: {serious:?}");
        }
        total += all.len();
    }
    assert_eq!(
        total, 6,
        "the documented rules: metadata.name, subnet, masterNets, two plugin modes, devClass target"
    );
}

/// The CRD as committed (generated and post-processed), by file name.
fn committed(file: &str) -> Value {
    let (_, crd) = crd::all()
        .into_iter()
        .find(|(f, _)| *f == file)
        .unwrap_or_else(|| panic!("no CRD {file}"));
    schema_of(&crd)
}

fn validate(object: &Value) -> Result<(), String> {
    let schema = committed("multinicnetworks.yaml");
    Validator::new()
        .validate(&schema, object, None)
        .map_err(|e| format!("{e:?}"))
}

fn sample() -> Value {
    serde_yaml::from_str(SAMPLE).unwrap()
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = sample();
    edit(&mut v);
    v
}

#[test]
fn the_multi_nic_cni_sample_passes_the_rules() {
    validate(&sample()).unwrap();
    validate(&with(|v| {
        v["spec"]["subnet"] = json!("192.168.0.0/16, fd00:10::/64")
    }))
    .unwrap();
    validate(&with(|v| {
        v["spec"]["attachPolicy"] = json!({"strategy": "devClass", "target": "fast"})
    }))
    .unwrap();
    validate(&with(|v| {
        v["spec"]["masterNets"] = json!(["10.0.0.0/24", "10.0.1.0/24"])
    }))
    .unwrap();
    validate(&with(|v| {
        v["spec"]["plugin"] = json!({"type": "macvlan", "args": {"mode": "bridge"}})
    }))
    .unwrap();
    validate(&with(|v| {
        v["spec"]["plugin"] = json!({"type": "host-device"})
    }))
    .unwrap();
}

#[test]
fn the_rules_refuse_what_the_schema_can_check() {
    let refused = [
        (
            "subnet not a CIDR",
            with(|v| v["spec"]["subnet"] = json!("192.168.0.0")),
        ),
        (
            "three subnets",
            with(|v| v["spec"]["subnet"] = json!("10.0.0.0/8,10.1.0.0/16,fd00::/64")),
        ),
        (
            "devClass without target",
            with(|v| v["spec"]["attachPolicy"] = json!({"strategy": "devClass"})),
        ),
        (
            "ipvlan mode",
            with(|v| v["spec"]["plugin"]["args"]["mode"] = json!("l4")),
        ),
        (
            "macvlan mode",
            with(|v| v["spec"]["plugin"] = json!({"type": "macvlan", "args": {"mode": "l3"}})),
        ),
        (
            "masterNets",
            with(|v| v["spec"]["masterNets"] = json!(["eth1"])),
        ),
    ];
    for (what, object) in refused {
        assert!(validate(&object).is_err(), "{what} should be refused");
    }
}

#[test]
fn schema_bounds_and_enums_are_in_place() {
    let schema = schema_of(&MultiNicNetwork::crd());
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(
        spec["ipam"]["type"], "string",
        "multi-nic-cni's JSON-in-a-string ipam"
    );
    assert_eq!(
        spec["namespaces"]["items"]["pattern"],
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    );
    assert_eq!(spec["namespaces"]["items"]["maxLength"], 63);
    assert!(spec["attachPolicy"]["properties"]["strategy"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("costOpt")));
    assert!(spec["plugin"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("sriov")));
    let required: Vec<&str> = schema["properties"]["spec"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, vec!["subnet"]);
}

#[test]
fn multinicnetwork_is_cluster_scoped_with_status_and_columns() {
    let crd = MultiNicNetwork::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("multinicnetworks.railyard.dev")
    );
    assert_eq!(crd.spec.scope, "Cluster");
    let v = &crd.spec.versions[0];
    assert!(v
        .subresources
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .is_some());
    let columns: Vec<(&str, &str)> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Subnet", ".spec.subnet"),
            ("Planned", ".status.hostsPlanned"),
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn device_class_needs_a_rule() {
    let schema = schema_of(&DeviceClass::crd());
    assert_eq!(
        schema["properties"]["spec"]["properties"]["rules"]["minItems"],
        1
    );
    assert_eq!(DeviceClass::crd().spec.scope, "Cluster");
}

/// Every integer schema below `v`, with its path.
fn integers(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            if m.get("type") == Some(&json!("integer")) {
                out.push((path.to_string(), v.clone()));
            }
            for (k, c) in m {
                integers(c, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| integers(c, &format!("{path}[{i}]"), out)),
        _ => {}
    }
}

/// The apiserver checks `minimum`/`maximum` but not integer formats: an unbounded
/// integer field takes any number, and a value too large for the Rust type would
/// stall the watch that lists it. (kube-cel evaluates only the CEL rules, so the
/// bounds are checked here as schema text; a real apiserver test can send 2^32.)
#[test]
fn every_integer_field_is_bounded_within_its_rust_type() {
    let mut seen = 0;
    for (file, crd) in crd::all() {
        let mut found = Vec::new();
        integers(&schema_of(&crd), "", &mut found);
        for (path, schema) in found {
            let (min, max) = (schema["minimum"].as_f64(), schema["maximum"].as_f64());
            let (Some(min), Some(max)) = (min, max) else {
                panic!("{file}{path}: unbounded integer {schema}");
            };
            assert!(
                min >= -crd::MAX_SAFE_INTEGER && max <= crd::MAX_SAFE_INTEGER && min <= max,
                "{file}{path}: {schema}"
            );
            if let Some(format) = schema["format"].as_str() {
                let (fmin, fmax) = crd::format_range(Some(format));
                assert!(min >= fmin && max <= fmax, "{file}{path}: {schema}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 19, "integer fields found: {seen}");
    let speed = &committed("deviceclasses.yaml")["properties"]["spec"]["properties"]["rules"]
        ["items"]["properties"]["minSpeedMbps"];
    assert_eq!(
        (speed["minimum"].as_f64(), speed["maximum"].as_f64()),
        (Some(1.0), Some(4_294_967_295.0)),
        "the route-daemon reads a u32"
    );
}

#[test]
fn conditions_are_a_map_keyed_by_type() {
    let schema = committed("multinicnetworks.yaml");
    let conditions = &schema["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    let required = conditions["items"]["required"].as_array().unwrap();
    assert!(
        required.contains(&json!("type")),
        "a map key must be required"
    );
}

/// The apiserver accepts any DNS subdomain as the name of a cluster-scoped object;
/// the network name must be a DNS label (it is an etcd key segment and the CNI
/// config's name), so the root rule refuses dots and long names at `kubectl apply`.
#[test]
fn a_network_name_with_a_dot_or_over_63_characters_is_refused() {
    let named = |name: &str| with(|v| v["metadata"]["name"] = json!(name));
    validate(&named("rail-fast")).unwrap();
    validate(&named(&"a".repeat(63))).unwrap();
    let err = validate(&named("rail.fast")).unwrap_err();
    assert!(err.contains("metadata.name must be a DNS label"), "{err}");
    assert!(validate(&named(&"a".repeat(64))).is_err());
}
