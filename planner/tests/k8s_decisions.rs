//! The Kubernetes controller's decisions, as pure functions: MultiNicNetwork →
//! etcd manifest, → NetworkAttachmentDefinitions, (+ planner status) → CR status;
//! plus the small choices around them (leadership, cleanup, watch mapping) and the
//! pod-side contract (Multus cni-args → `Selection`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use railyard_core::ipam::Selection;
use railyard_core::plan::UnplannedInterface;
use railyard_core::{keys, CoreError, HostInventory, Network, NetworkManifest, Nic, Unplanned};
use railyard_planner::k8s::crd::{CidrSpec, HostInterfaceSpec};
use railyard_planner::k8s::crd::{
    DeviceClass, DeviceClassSpec, DeviceMatchSpec, MultiNicNetwork, MultiNicNetworkStatus,
    NetworkAttachmentDefinition, NetworkAttachmentDefinitionSpec,
};
use railyard_planner::k8s::nad::{self, NadPlan};
use railyard_planner::k8s::status::{network_status, Observed};
use railyard_planner::k8s::{cleanup, controller, convert, devclass, leader, views};
use railyard_planner::status::{Capacity, Condition, NetworkStatus};
use railyard_planner::world::ALLOW_RENUMBER;
use railyard_store::{Compare, KeyValue, StoreError, WatchEvent, WatchUpdate};
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../../docs/examples/network.yaml");
const UID: &str = "5f0c2a1e-7a52-4d0c-9d3b-0e2f1c3a4b5d";

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

// ---------------------------------------------------------------------------
// MultiNicNetwork → etcd manifest

#[test]
fn the_multi_nic_cni_sample_converts_to_the_manifest_railyard_apply_stores() {
    let net = sample();
    let manifest = convert::manifest(&net);
    let from_cli: NetworkManifest = serde_yaml::from_str(SAMPLE).unwrap();
    assert_eq!(
        manifest.spec, from_cli.spec,
        "CRD and CLI read the same spec"
    );
    assert_eq!(manifest.metadata.name, "multi-nic-sample");
    assert_eq!(manifest.api_version.as_deref(), Some("railyard.dev/v1"));
    assert_eq!(manifest.kind.as_deref(), Some("MultiNicNetwork"));
    let n = manifest.validate().expect("the upstream sample is valid");
    assert_eq!((n.host_block, n.interface_block), (6, 2));
}

#[test]
fn only_railyard_annotations_reach_etcd_plus_the_uid() {
    let net = network(|v| {
        v["metadata"]["annotations"] = json!({
            ALLOW_RENUMBER: "true",
            "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            "railyard.dev/nad-name": "other",
        })
    });
    let m = convert::manifest(&net);
    let want = BTreeMap::from([
        (ALLOW_RENUMBER.to_string(), "true".to_string()),
        ("railyard.dev/k8s-uid".to_string(), UID.to_string()),
    ]);
    assert_eq!(m.metadata.annotations, want);
    // Deterministic bytes: the planner compares the stored value byte for byte.
    assert_eq!(
        serde_json::to_vec(&m).unwrap(),
        serde_json::to_vec(&convert::manifest(&net)).unwrap()
    );
}

#[test]
fn an_invalid_spec_is_refused_with_field_and_value() {
    let net = network(|v| {
        v["spec"]["ipam"] =
            json!(r#"{"type": "multi-nic-ipam", "hostBlock": 30, "interfaceBlock": 2}"#)
    });
    let err = convert::manifest(&net).validate().unwrap_err();
    assert_eq!(
        invalid_field(err.clone()),
        ("spec.ipam.hostBlock".into(), "30".into())
    );
    // The controller puts the message in the Invalid condition as it is.
    let status = network_status(
        &Observed {
            generation: Some(3),
            invalid: Some(&err.to_string()),
            ..Observed::default()
        },
        None,
        &at(100),
    );
    let invalid = condition(&status, "Invalid");
    assert_eq!(
        (invalid.status.as_str(), invalid.reason.as_str()),
        ("True", "InvalidSpec")
    );
    assert!(
        invalid.message.contains("spec.ipam.hostBlock") && invalid.message.contains("30"),
        "{}",
        invalid.message
    );
    assert_eq!(condition(&status, "Ready").status, "False");
    assert_eq!(status.nad_name, None, "no NAD for an invalid spec");
}

// ---------------------------------------------------------------------------
// NetworkAttachmentDefinitions, per delegate

#[test]
fn sample_gets_railyard_cni_wrapping_ipvlan_l3() {
    let plan = plan_of(&sample(), &["default", "kube-system"]).unwrap();
    assert_eq!(plan.name, "multi-nic-sample");
    assert_eq!(
        plan.config,
        json!({
            "cniVersion": "0.3.0",
            "name": "multi-nic-sample",
            "type": "railyard-cni",
            "ipam": {"type": "railyard-ipam"},
            "delegate": {"type": "ipvlan", "mode": "l3"},
        })
    );
    assert_eq!(
        plan.namespaces,
        vec!["default"],
        "the sample lists only default"
    );
    assert!(plan.annotations.is_empty());
    let text: Value = serde_json::from_str(&plan.config_text()).unwrap();
    assert_eq!(
        text, plan.config,
        "spec.config is the same document as text"
    );
}

#[test]
fn ipvlan_mode_comes_from_args_or_vlan_mode() {
    let from_vlan_mode = network(|v| {
        v["spec"]["ipam"] = json!(r#"{"hostBlock": 6, "interfaceBlock": 2, "vlanMode": "l2"}"#);
        v["spec"]["plugin"] = json!({"type": "ipvlan"});
    });
    assert_eq!(
        delegate_of(&from_vlan_mode),
        json!({"type": "ipvlan", "mode": "l2"})
    );
    let default = network(|v| {
        v["spec"]["ipam"] = json!(r#"{"hostBlock": 6, "interfaceBlock": 2}"#);
        v["spec"]["plugin"] = json!({"type": "ipvlan", "args": {"mode": "l3s", "mtu": "9000"}});
    });
    assert_eq!(
        delegate_of(&default),
        json!({"type": "ipvlan", "mode": "l3s", "mtu": 9000})
    );
    let no_plugin = network(|v| v["spec"]["plugin"] = Value::Null);
    assert_eq!(
        delegate_of(&no_plugin),
        json!({"type": "ipvlan", "mode": "l3"})
    );
}

#[test]
fn ipvlan_mode_conflicting_with_vlan_mode_or_unknown_is_invalid() {
    let conflict = network(|v| {
        v["spec"]["ipam"] = json!(r#"{"hostBlock": 6, "interfaceBlock": 2, "vlanMode": "l3"}"#);
        v["spec"]["plugin"] = json!({"type": "ipvlan", "args": {"mode": "l2"}});
    });
    let err = plan_of(&conflict, &["default"]).unwrap_err();
    assert!(err.to_string().contains("spec.ipam.vlanMode"), "{err}");
    assert_eq!(
        invalid_field(err),
        ("spec.plugin.args.mode".into(), "l2".into())
    );
    let unknown = with_plugin("ipvlan", json!({"mode": "l4"}));
    assert_eq!(
        invalid_field(plan_of(&unknown, &["default"]).unwrap_err()),
        ("spec.plugin.args.mode".into(), "l4".into())
    );
}

#[test]
fn macvlan_defaults_to_bridge_and_checks_its_mode() {
    assert_eq!(
        delegate_of(&with_plugin("macvlan", json!({}))),
        json!({"type": "macvlan", "mode": "bridge"})
    );
    assert_eq!(
        delegate_of(&with_plugin(
            "macvlan",
            json!({"mode": "private", "mtu": "1500", "linkInContainer": "false"})
        )),
        json!({"type": "macvlan", "mode": "private", "mtu": 1500, "linkInContainer": false})
    );
    let bad = with_plugin("macvlan", json!({"mode": "l3"}));
    assert_eq!(
        invalid_field(plan_of(&bad, &["default"]).unwrap_err()),
        ("spec.plugin.args.mode".into(), "l3".into())
    );
}

#[test]
fn ptp_and_host_device_pass_their_args() {
    assert_eq!(
        delegate_of(&with_plugin(
            "ptp",
            json!({"mtu": "9000", "ipMasq": "true"})
        )),
        json!({"type": "ptp", "mtu": 9000, "ipMasq": true})
    );
    assert_eq!(
        delegate_of(&with_plugin("host-device", json!({}))),
        json!({"type": "host-device"})
    );
}

#[test]
fn sriov_resource_name_becomes_the_nad_annotation() {
    let net = with_plugin(
        "sriov",
        json!({"resourceName": "intel.com/sriov_rail", "vlan": "100", "spoofchk": "off"}),
    );
    let plan = plan_of(&net, &["default"]).unwrap();
    assert_eq!(
        plan.config["delegate"],
        json!({"type": "sriov", "vlan": 100, "spoofchk": "off"})
    );
    assert_eq!(
        plan.annotations,
        BTreeMap::from([(
            "k8s.v1.cni.cncf.io/resourceName".to_string(),
            "intel.com/sriov_rail".to_string()
        )])
    );
    // The annotation on the MultiNicNetwork wins over args.
    let mut by_annotation = net.clone();
    by_annotation.metadata.annotations = Some(BTreeMap::from([(
        "railyard.dev/resource-name".to_string(),
        "nvidia.com/rdma".to_string(),
    )]));
    let plan = plan_of(&by_annotation, &["default"]).unwrap();
    assert_eq!(
        plan.annotations["k8s.v1.cni.cncf.io/resourceName"],
        "nvidia.com/rdma"
    );
    assert!(plan.config["delegate"].get("resourceName").is_none());
}

#[test]
fn sriov_without_a_resource_is_invalid() {
    let err = plan_of(&with_plugin("sriov", json!({})), &["default"]).unwrap_err();
    assert!(
        err.to_string().contains("railyard.dev/resource-name"),
        "{err}"
    );
    assert_eq!(invalid_field(err).0, "spec.plugin.args.resourceName");
}

#[test]
fn keys_railyard_cni_sets_per_nic_and_bad_values_are_invalid() {
    let cases = [
        (
            "ipvlan",
            json!({"master": "eth1"}),
            "spec.plugin.args.master",
            "eth1",
        ),
        (
            "macvlan",
            json!({"master": "eth1"}),
            "spec.plugin.args.master",
            "eth1",
        ),
        (
            "host-device",
            json!({"device": "eth2"}),
            "spec.plugin.args.device",
            "eth2",
        ),
        (
            "sriov",
            json!({"resourceName": "r", "deviceID": "0000:04:00.1"}),
            "spec.plugin.args.deviceID",
            "0000:04:00.1",
        ),
        (
            "ptp",
            json!({"ipam": "host-local"}),
            "spec.plugin.args.ipam",
            "host-local",
        ),
        (
            "ipvlan",
            json!({"mtu": "jumbo"}),
            "spec.plugin.args.mtu",
            "jumbo",
        ),
        (
            "ptp",
            json!({"ipMasq": "yes"}),
            "spec.plugin.args.ipMasq",
            "yes",
        ),
        ("bridge", json!({}), "spec.plugin.type", "bridge"),
    ];
    for (kind, args, field, value) in cases {
        let err = plan_of(&with_plugin(kind, args.clone()), &["default"])
            .expect_err(&format!("{kind} {args}"));
        assert_eq!(
            invalid_field(err),
            (field.to_string(), value.to_string()),
            "{kind} {args}"
        );
    }
}

#[test]
fn a_foreign_ipam_type_is_invalid_ours_and_multi_nic_ipam_are_not() {
    let with_ipam = |t: &str| {
        network(|v| {
            v["spec"]["ipam"] = json!(format!(
                r#"{{"type": "{t}", "hostBlock": 6, "interfaceBlock": 2}}"#
            ))
        })
    };
    assert!(plan_of(&with_ipam("railyard-ipam"), &["default"]).is_ok());
    assert!(plan_of(&with_ipam("multi-nic-ipam"), &["default"]).is_ok());
    assert_eq!(
        invalid_field(plan_of(&with_ipam("whereabouts"), &["default"]).unwrap_err()),
        ("spec.ipam.type".into(), "whereabouts".into())
    );
}

// ---------------------------------------------------------------------------
// Annotations

#[test]
fn nad_name_annotation_renames_the_nad_but_not_the_network() {
    let plan = plan_of(
        &annotated("railyard.dev/nad-name", "rail-fast"),
        &["default"],
    )
    .unwrap();
    assert_eq!(plan.name, "rail-fast");
    assert_eq!(
        plan.config["name"], "multi-nic-sample",
        "the daemon knows the network by its name"
    );
    let err = plan_of(
        &annotated("railyard.dev/nad-name", "Rail_Fast"),
        &["default"],
    )
    .unwrap_err();
    assert_eq!(
        invalid_field(err),
        (
            "metadata.annotations[railyard.dev/nad-name]".into(),
            "Rail_Fast".into()
        )
    );
}

#[test]
fn cni_version_annotation_beats_the_plugin_and_is_checked() {
    let plan = plan_of(
        &annotated("railyard.dev/cni-version", "0.4.0"),
        &["default"],
    )
    .unwrap();
    assert_eq!(plan.config["cniVersion"], "0.4.0");
    let err = plan_of(
        &annotated("railyard.dev/cni-version", "2.0.0"),
        &["default"],
    )
    .unwrap_err();
    assert_eq!(
        invalid_field(err),
        (
            "metadata.annotations[railyard.dev/cni-version]".into(),
            "2.0.0".into()
        )
    );
    let unset = network(|v| v["spec"]["plugin"]["cniVersion"] = json!(""));
    assert_eq!(
        plan_of(&unset, &["default"]).unwrap().config["cniVersion"],
        nad::DEFAULT_CNI_VERSION
    );
    let bad = network(|v| v["spec"]["plugin"]["cniVersion"] = json!("0.2.0"));
    assert_eq!(
        invalid_field(plan_of(&bad, &["default"]).unwrap_err()).0,
        "spec.plugin.cniVersion"
    );
}

// ---------------------------------------------------------------------------
// Namespaces

#[test]
fn no_namespaces_listed_means_every_existing_namespace() {
    let all = network(|v| v["spec"]["namespaces"] = json!([]));
    let plan = plan_of(&all, &["team-b", "default", "team-a"]).unwrap();
    assert_eq!(plan.namespaces, vec!["default", "team-a", "team-b"]);
    assert!(plan.missing_namespaces.is_empty());
    assert!(plan_of(&all, &[]).unwrap().namespaces.is_empty());
}

#[test]
fn listed_namespaces_that_do_not_exist_are_reported_not_created() {
    let listed =
        network(|v| v["spec"]["namespaces"] = json!(["team-a", "ghost", "default", "team-a"]));
    let plan = plan_of(&listed, &["default", "team-a", "team-b"]).unwrap();
    assert_eq!(plan.namespaces, vec!["default", "team-a"]);
    assert_eq!(plan.missing_namespaces, vec!["ghost"]);
    let status = network_status(
        &Observed {
            nads: Some(&plan),
            ..Observed::default()
        },
        None,
        &at(1),
    );
    assert_eq!(
        (status.nad_name.as_deref(), status.nad_namespaces),
        (Some("multi-nic-sample"), 2)
    );
    assert_eq!(status.missing_namespaces, vec!["ghost"]);
}

// ---------------------------------------------------------------------------
// NAD objects, skip-if-unchanged and pruning

fn owner() -> OwnerReference {
    nad::owner_reference(&sample()).expect("a stored network has a UID")
}

#[test]
fn nad_objects_carry_owner_labels_annotations_and_config() {
    let owner = owner();
    assert_eq!(
        owner,
        OwnerReference {
            api_version: "railyard.dev/v1".into(),
            kind: "MultiNicNetwork".into(),
            name: "multi-nic-sample".into(),
            uid: UID.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    );
    let net = with_plugin("sriov", json!({"resourceName": "intel.com/rail"}));
    let plan = plan_of(&net, &["default", "ml"]).unwrap();
    let objs = plan.objects("multi-nic-sample", &owner);
    assert_eq!(objs.len(), 1, "the sample lists only default");
    let obj = &objs[0];
    assert_eq!(obj.metadata.name.as_deref(), Some("multi-nic-sample"));
    assert_eq!(obj.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(obj.metadata.owner_references, Some(vec![owner.clone()]));
    let labels = obj.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "railyard");
    assert_eq!(labels["railyard.dev/network"], "multi-nic-sample");
    assert_eq!(
        obj.metadata.annotations.clone().unwrap()["k8s.v1.cni.cncf.io/resourceName"],
        "intel.com/rail"
    );
    assert_eq!(obj.spec.config, plan.config_text());
    // The apply body names its type, as server-side apply requires.
    let body = serde_json::to_value(obj).unwrap();
    assert_eq!(body["apiVersion"], "k8s.cni.cncf.io/v1");
    assert_eq!(body["kind"], "NetworkAttachmentDefinition");
}

#[test]
fn up_to_date_ignores_what_others_added_but_not_what_railyard_sets() {
    let plan = plan_of(&sample(), &["default"]).unwrap();
    let want = plan.objects("multi-nic-sample", &owner()).remove(0);
    let mut have = want.clone();
    have.metadata.resource_version = Some("42".into());
    have.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("team".into(), "ml".into());
    assert!(nad::up_to_date(&have, &want));
    let mut edited = have.clone();
    edited.spec.config = r#"{"type":"macvlan"}"#.into();
    assert!(
        !nad::up_to_date(&edited, &want),
        "a hand-edited config is restored"
    );
    let mut orphaned = have.clone();
    orphaned.metadata.owner_references = None;
    assert!(!nad::up_to_date(&orphaned, &want));
    let mut relabelled = have;
    relabelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove("railyard.dev/network");
    assert!(!nad::up_to_date(&relabelled, &want));
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

#[test]
fn stale_nads_are_this_owners_unwanted_ones() {
    let cached = vec![
        cached_nad("default", "multi-nic-sample", UID),
        cached_nad("dropped", "multi-nic-sample", UID),
        cached_nad("default", "old-name", UID),
        cached_nad("default", "someone-else", "another-uid"),
    ];
    let keep = BTreeSet::from([("default".to_string(), "multi-nic-sample".to_string())]);
    assert_eq!(
        nad::stale(&cached, &owner(), &keep),
        vec![
            ("default".to_string(), "old-name".to_string()),
            ("dropped".to_string(), "multi-nic-sample".to_string()),
        ]
    );
}

// ---------------------------------------------------------------------------
// Status

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

fn planner_status(condition: Condition) -> NetworkStatus {
    NetworkStatus {
        network: "multi-nic-sample".into(),
        condition,
        hosts_planned: 62,
        hosts_departed: 1,
        hosts_unplanned: Vec::new(),
        interfaces: 4,
        unplanned_interfaces: Vec::new(),
        capacity: Capacity {
            hosts_total: 64,
            hosts_free: 1,
            interfaces_total: 4,
            pods_per_host_per_rail: vec![254],
        },
        last_error: None,
        plan_revision: 1234,
    }
}

fn observe(p: &NetworkStatus) -> Observed<'_> {
    Observed {
        generation: Some(3),
        planner: Some(p),
        ..Observed::default()
    }
}

#[test]
fn ready_network_reports_numbers_and_three_conditions() {
    let p = planner_status(Condition::Ready);
    let s = network_status(&observe(&p), None, &at(100));
    let kinds: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(kinds, vec!["Ready", "Invalid", "Exhausted"]);
    let ready = condition(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Planned")
    );
    assert_eq!(ready.message, "62 hosts planned on 4 rails");
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(ready.last_transition_time, at(100));
    assert_eq!(condition(&s, "Invalid").status, "False");
    assert_eq!(condition(&s, "Exhausted").status, "False");
    assert_eq!(
        (
            s.hosts_planned,
            s.hosts_departed,
            s.hosts_unplanned,
            s.interfaces
        ),
        (62, 1, 0, 4)
    );
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.plan_revision, 1234);
    let cap = s.capacity.unwrap();
    assert_eq!(
        (cap.hosts_total, cap.hosts_free, cap.interfaces_total),
        (64, 1, 4)
    );
    assert_eq!(cap.pods_per_host_per_rail, vec![254]);
}

#[test]
fn exhausted_network_names_the_hosts_left_out() {
    let mut p = planner_status(Condition::Exhausted);
    p.hosts_unplanned = (0..25)
        .map(|i| Unplanned {
            host: format!("node-{i}"),
            reason: "no free host index".into(),
        })
        .collect();
    p.unplanned_interfaces = vec![UnplannedInterface {
        net_address: "10.9.0.0/24".parse().unwrap(),
        reason: "no free interface index".into(),
    }];
    let s = network_status(&observe(&p), None, &at(100));
    let ready = condition(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Exhausted")
    );
    let ex = condition(&s, "Exhausted");
    assert_eq!(
        (ex.status.as_str(), ex.reason.as_str()),
        ("True", "NoFreeIndex")
    );
    assert!(
        ex.message.starts_with(
            "25 hosts and 1 NIC subnets found no free index: node-0 (no free host index)"
        ),
        "{}",
        ex.message
    );
    assert!(
        ex.message.contains("10.9.0.0/24") && ex.message.ends_with("and 20 more"),
        "{}",
        ex.message
    );
    assert_eq!(s.hosts_unplanned, 25);
    assert_eq!(
        s.unplanned_hosts.len(),
        20,
        "listed up to a cap, counted in full"
    );
}

#[test]
fn planner_refusal_is_invalid_with_its_reason() {
    let mut p = planner_status(Condition::Invalid);
    p.last_error = Some(format!("spec change refused: it would renumber host node-1; set annotation {ALLOW_RENUMBER}: \"true\""));
    let s = network_status(&observe(&p), None, &at(100));
    let invalid = condition(&s, "Invalid");
    assert_eq!(
        (invalid.status.as_str(), invalid.reason.as_str()),
        ("True", "PlannerRejected")
    );
    assert!(invalid.message.contains("renumber host node-1"));
    assert_eq!(condition(&s, "Ready").status, "False");
}

#[test]
fn not_yet_planned_is_unknown_not_false() {
    let s = network_status(&Observed::default(), None, &at(100));
    let ready = condition(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("Unknown", "Pending")
    );
    assert_eq!(condition(&s, "Invalid").status, "False");
    assert_eq!(s.capacity, None);
}

#[test]
fn transition_time_moves_only_when_the_status_changes() {
    let ready = planner_status(Condition::Ready);
    let first = network_status(&observe(&ready), None, &at(100));
    let again = network_status(&observe(&ready), Some(&first), &at(200));
    assert_eq!(again, first, "nothing changed: identical status, no patch");
    let mut exhausted = planner_status(Condition::Exhausted);
    exhausted.hosts_unplanned = vec![Unplanned {
        host: "node-99".into(),
        reason: "no free host index".into(),
    }];
    let changed = network_status(&observe(&exhausted), Some(&again), &at(300));
    assert_eq!(condition(&changed, "Ready").last_transition_time, at(300));
    assert_eq!(
        condition(&changed, "Exhausted").last_transition_time,
        at(300)
    );
    assert_eq!(
        condition(&changed, "Invalid").last_transition_time,
        at(100),
        "Invalid stayed False"
    );
}

// ---------------------------------------------------------------------------
// Pod-level selection: Multus cni-args → args.cni → Selection

#[test]
fn multus_cni_args_deserialize_into_selection() {
    // The pod annotation as documented in docs/kubernetes.md.
    let annotation = r#"[{"name": "multi-nic-sample", "cni-args": {"nics": 2, "masters": ["eth1"], "class": "fast", "numa": 0}}]"#;
    let elements: Vec<Value> = serde_json::from_str(annotation).unwrap();
    // Multus copies cni-args into the plugin's config as args.cni.
    let args_cni = elements[0]["cni-args"].clone();
    let selection: Selection = serde_json::from_value(args_cni).unwrap();
    assert_eq!(
        selection,
        Selection {
            nics: Some(2),
            masters: vec!["eth1".into()],
            class: Some("fast".into()),
            numa: Some(0),
        }
    );
}

#[test]
fn selection_uses_exactly_the_documented_names() {
    let full = Selection {
        nics: Some(1),
        masters: vec!["eth1".into()],
        class: Some("c".into()),
        numa: Some(1),
    };
    let v = serde_json::to_value(&full).unwrap();
    let names: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["nics", "masters", "class", "numa"]));
    assert_eq!(
        serde_json::from_value::<Selection>(json!({})).unwrap(),
        Selection::default()
    );
}

// ---------------------------------------------------------------------------
// Leadership, cleanup, watch mapping

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

#[test]
fn the_controller_runs_where_the_planner_leads() {
    let election = vec![
        kv(
            &format!("{}00000000000000b2", keys::ELECTION),
            b"planner-b",
            12,
        ),
        kv(
            &format!("{}00000000000000a1", keys::ELECTION),
            b"planner-a",
            7,
        ),
    ];
    assert_eq!(
        leader::leading_guard(&election, "planner-a"),
        Some(Compare::CreateRevision {
            key: format!("{}00000000000000a1", keys::ELECTION),
            rev: 7,
        })
    );
    assert_eq!(leader::leading_guard(&election, "planner-b"), None);
    assert_eq!(leader::leading_guard(&[], "planner-a"), None);
}

#[test]
fn cleanup_removes_only_kubernetes_specs_without_an_object() {
    let spec = |name: &str, uid: Option<&str>| {
        let mut m: NetworkManifest = serde_yaml::from_str(SAMPLE).unwrap();
        m.metadata.name = name.into();
        if let Some(u) = uid {
            m.metadata
                .annotations
                .insert("railyard.dev/k8s-uid".into(), u.into());
        }
        kv(&keys::network(name), &serde_json::to_vec(&m).unwrap(), 5)
    };
    let specs = vec![
        spec("gone", Some("u1")),
        spec("live", Some("u2")),
        spec("from-cli", None),
        kv(&keys::network("garbage"), b"not json", 9),
    ];
    let live = BTreeSet::from(["live".to_string()]);
    assert_eq!(
        cleanup::stale_specs(&specs, &live),
        vec![(keys::network("gone"), 5)]
    );
}

#[test]
fn a_nad_event_wakes_its_owning_network() {
    let mut nad = (*cached_nad("default", "multi-nic-sample", UID)).clone();
    let mut foreign = owner();
    foreign.api_version = "spiderpool.spidernet.io/v2beta1".into();
    foreign.kind = "SpiderMultusConfig".into();
    nad.metadata
        .owner_references
        .as_mut()
        .unwrap()
        .push(foreign);
    let owners = controller::owners_of(&nad);
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].name, "multi-nic-sample");
    assert_eq!(
        owners[0].namespace, None,
        "MultiNicNetwork is cluster-scoped"
    );
}

#[test]
fn etcd_changes_name_the_networks_to_reconcile() {
    let events = WatchUpdate::Events(vec![
        WatchEvent::Put(kv(&keys::status("a"), b"{}", 3)),
        WatchEvent::Delete {
            key: keys::network("b"),
            mod_revision: 4,
        },
    ]);
    assert_eq!(controller::changed_names(Ok(events)), vec!["a", "b"]);
    assert!(controller::changed_names(Err(StoreError::Unavailable {
        endpoint: "e".into(),
        reason: "down".into()
    }))
    .is_empty());
}

// ---------------------------------------------------------------------------
// Read-only views and DeviceClass

#[test]
fn device_class_converts_to_the_policy_type() {
    let class = DeviceClass::new(
        "fast",
        DeviceClassSpec {
            rules: vec![DeviceMatchSpec {
                vendor: Some("0x15b3".into()),
                products: vec!["1017".into()],
                driver: Some("mlx5_core".into()),
                min_speed_mbps: Some(100_000),
            }],
        },
    );
    let core = class.to_core();
    assert_eq!(core.name, "fast");
    let nic = railyard_core::attach::Candidate {
        name: "eth1".into(),
        vendor: Some("15b3".into()),
        product: Some("0x1017".into()),
        driver: Some("mlx5_core".into()),
        speed_mbps: Some(200_000),
        up: true,
        ..Default::default()
    };
    assert!(core.matches(&nic));
    let slow = railyard_core::attach::Candidate {
        speed_mbps: Some(25_000),
        ..nic
    };
    assert!(!core.matches(&slow));
}

#[test]
fn views_mirror_inventory_and_plan() {
    let host = HostInventory {
        name: "node-1".into(),
        nics: vec![Nic {
            name: "eth1".into(),
            addresses: vec!["10.0.1.5/24".parse().unwrap()],
            speed_mbps: Some(100_000),
            up: true,
            ..Nic::default()
        }],
    };
    let view = HostInterfaceSpec::from(&host);
    assert_eq!(view.host_name, "node-1");
    assert_eq!(view.interfaces[0].addresses, vec!["10.0.1.5/24"]);
    assert_eq!(view.interfaces[0].speed_mbps, Some(100_000));

    let net = validated(&sample());
    let plan = railyard_core::plan(&net, std::slice::from_ref(&host), None, 0, 600);
    let cidr = CidrSpec::from(&plan);
    assert_eq!(cidr.network, "multi-nic-sample");
    assert_eq!(cidr.interfaces.len(), 1);
    assert_eq!(cidr.interfaces[0].net_address, "10.0.1.0/24");
    assert_eq!(cidr.hosts[0].host, "node-1");
    assert_eq!(cidr.hosts[0].blocks[0].nic_address, "10.0.1.5");
    assert_eq!(cidr.hosts[0].blocks[0].cidr, "192.168.0.0/24");
}

// ---------------------------------------------------------------------------
// HostInterface and CIDR views: what to apply and delete

fn put(key: &str, value: &impl serde::Serialize) -> WatchEvent {
    WatchEvent::Put(kv(key, &serde_json::to_vec(value).unwrap(), 10))
}

fn gone(key: &str) -> WatchEvent {
    WatchEvent::Delete {
        key: key.into(),
        mod_revision: 11,
    }
}

fn snapshot(events: Vec<WatchEvent>) -> WatchUpdate {
    let kvs = events
        .into_iter()
        .filter_map(|e| match e {
            WatchEvent::Put(kv) => Some(kv),
            WatchEvent::Delete { .. } => None,
        })
        .collect();
    WatchUpdate::Snapshot(railyard_store::Range { kvs, revision: 10 })
}

fn inventory(name: &str, third_octet: u8) -> HostInventory {
    HostInventory {
        name: name.into(),
        nics: vec![Nic {
            name: "eth1".into(),
            addresses: vec![format!("10.0.1.{third_octet}/24").parse().unwrap()],
            up: true,
            ..Nic::default()
        }],
    }
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What the controller would hold after applying everything `mirror` shows.
fn applied_hosts(mirror: &views::Mirror) -> BTreeMap<String, HostInterfaceSpec> {
    mirror
        .host_names()
        .map(|n| (n.clone(), mirror.host_view(n).unwrap()))
        .collect()
}

#[test]
fn a_burst_applies_only_the_views_that_changed() {
    let mut mirror = views::Mirror::default();
    let start = snapshot(
        (1..=3)
            .map(|i| {
                put(
                    &keys::host(&format!("node-{i}")),
                    &inventory(&format!("node-{i}"), i),
                )
            })
            .collect(),
    );
    assert_eq!(
        mirror.follow_hosts(&start),
        names(&["node-1", "node-2", "node-3"])
    );
    let applied = applied_hosts(&mirror);
    let everything = names(&["node-1", "node-2", "node-3"]);
    assert!(
        views::decide(&everything, |n| mirror.host_view(n), &applied).is_empty(),
        "nothing changed, nothing to send"
    );

    // One batch: node-4 joins, node-1 re-registers unchanged, node-2 leaves,
    // node-3 changes.
    let batch = WatchUpdate::Events(vec![
        put(&keys::host("node-4"), &inventory("node-4", 4)),
        put(&keys::host("node-1"), &inventory("node-1", 1)),
        gone(&keys::host("node-2")),
        put(&keys::host("node-3"), &inventory("node-3", 33)),
    ]);
    let touched = mirror.follow_hosts(&batch);
    assert_eq!(touched, names(&["node-1", "node-2", "node-3", "node-4"]));
    let changes = views::decide(&touched, |n| mirror.host_view(n), &applied);
    let applied_names: Vec<&str> = changes.apply.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(applied_names, vec!["node-3", "node-4"]);
    assert_eq!(
        changes.apply[0].1.interfaces[0].addresses,
        vec!["10.0.1.33/24"]
    );
    assert_eq!(changes.delete, vec!["node-2"]);
    assert!(changes.unnamable.is_empty());
}

#[test]
fn a_snapshot_touches_hosts_before_and_after_it() {
    let mut mirror = views::Mirror::default();
    mirror.follow_hosts(&snapshot(vec![put(
        &keys::host("old"),
        &inventory("old", 1),
    )]));
    // After a compaction or reconnect: "old" left while nobody watched.
    let touched = mirror.follow_hosts(&snapshot(vec![put(
        &keys::host("new"),
        &inventory("new", 2),
    )]));
    assert_eq!(touched, names(&["new", "old"]));
    assert!(mirror.host_view("old").is_none());
    let applied = BTreeMap::from([("old".to_string(), HostInterfaceSpec::default())]);
    let changes = views::decide(&touched, |n| mirror.host_view(n), &applied);
    assert_eq!(changes.delete, vec!["old"]);
    assert_eq!(changes.apply.len(), 1);
}

#[test]
fn an_unreadable_registration_keeps_its_last_view() {
    let mut mirror = views::Mirror::default();
    mirror.follow_hosts(&snapshot(vec![put(
        &keys::host("node-1"),
        &inventory("node-1", 1),
    )]));
    let before = mirror.host_view("node-1");
    mirror.follow_hosts(&WatchUpdate::Events(vec![WatchEvent::Put(kv(
        &keys::host("node-1"),
        b"{not json",
        12,
    ))]));
    assert_eq!(mirror.host_view("node-1"), before);
    assert!(before.is_some());
}

#[test]
fn hosts_whose_names_cannot_be_object_names_get_no_view() {
    let mut mirror = views::Mirror::default();
    let touched = mirror.follow_hosts(&snapshot(vec![put(
        &keys::host("Node_1"),
        &inventory("Node_1", 1),
    )]));
    let changes = views::decide(&touched, |n| mirror.host_view(n), &BTreeMap::new());
    assert!(changes.apply.is_empty());
    assert_eq!(changes.unnamable.len(), 1);
    let (name, reason) = &changes.unnamable[0];
    assert_eq!(name, "Node_1");
    assert!(
        reason.contains("metadata.name") && reason.contains("\"Node_1\""),
        "{reason}"
    );
}

#[test]
fn the_cidr_view_follows_the_plan_keys() {
    let net = validated(&sample());
    let hosts = vec![inventory("node-1", 5), inventory("node-2", 6)];
    let plan = railyard_core::plan(&net, &hosts, None, 0, 600);
    let (meta, host_plans) = plan.split();
    let name = "multi-nic-sample";
    let mut events = vec![put(&keys::plan_meta(name), &meta)];
    events.extend(
        host_plans
            .iter()
            .map(|(h, p)| put(&keys::plan_host(name, h), p)),
    );
    // Keys of another shape under the prefix are not plan parts.
    events.push(put(&format!("{}{name}/other", keys::PLANS), &json!({})));
    let mut mirror = views::Mirror::default();
    assert_eq!(mirror.follow_plans(&snapshot(events)), names(&[name]));
    assert_eq!(mirror.cidr_view(name), Some(CidrSpec::from(&plan)));

    // One host's entry goes (its grace period ran out): one CIDR apply.
    let applied = BTreeMap::from([(name.to_string(), CidrSpec::from(&plan))]);
    let touched = mirror.follow_plans(&WatchUpdate::Events(vec![gone(&keys::plan_host(
        name, "node-2",
    ))]));
    let changes = views::decide(&touched, |n| mirror.cidr_view(n), &applied);
    assert_eq!(changes.apply.len(), 1);
    assert_eq!(changes.apply[0].1.hosts.len(), 1);
    assert_eq!(changes.apply[0].1.hosts[0].host, "node-1");

    // The network is deleted (the planner drops the whole prefix): the CIDR goes,
    // also while host keys are still being removed.
    let touched = mirror.follow_plans(&WatchUpdate::Events(vec![gone(&keys::plan_meta(name))]));
    assert_eq!(mirror.cidr_view(name), None);
    let changes = views::decide(&touched, |n| mirror.cidr_view(n), &applied);
    assert_eq!(changes.delete, vec![name]);
}

// ---------------------------------------------------------------------------
// DeviceClass → etcd

fn device_class(name: &str, rules: Value) -> DeviceClass {
    let mut c: DeviceClass = serde_json::from_value(json!({
        "apiVersion": "railyard.dev/v1", "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"rules": rules},
    }))
    .unwrap();
    c.metadata.uid = Some(format!("uid-{name}"));
    c
}

fn refusal(rules: Value) -> (String, String) {
    match device_class("c", rules).validated() {
        Err(CoreError::Invalid { field, value, .. }) => (field, value),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn device_class_validation_names_the_field_and_the_value() {
    let ok = device_class("fast", json!([{"vendor": "15b3"}, {"minSpeedMbps": 1}]));
    assert_eq!(ok.validated(), Ok(ok.to_core()));
    let cases = [
        (json!([]), ("spec.rules", "0 rules")),
        (
            json!([{"vendor": "nvidia"}]),
            ("spec.rules[0].vendor", "nvidia"),
        ),
        (
            json!([{"driver": "ice"}, {"products": ["1017", "0x101b", "10"]}]),
            ("spec.rules[1].products[2]", "10"),
        ),
        (
            json!([{"driver": "mlx5/core"}]),
            ("spec.rules[0].driver", "mlx5/core"),
        ),
        (json!([{"driver": ""}]), ("spec.rules[0].driver", "")),
        (
            json!([{"minSpeedMbps": 0}]),
            ("spec.rules[0].minSpeedMbps", "0"),
        ),
        // What the apiserver leaves of `- vender: 15b3`: it would match every NIC.
        (json!([{"driver": "ice"}, {}]), ("spec.rules[1]", "{}")),
    ];
    for (rules, (field, value)) in cases {
        assert_eq!(
            refusal(rules.clone()),
            (field.to_string(), value.to_string()),
            "{rules}"
        );
    }
    let many: Vec<Value> = (0..65).map(|_| json!({"driver": "ice"})).collect();
    assert_eq!(refusal(json!(many)).0, "spec.rules");
}

fn stored_kv(name: &str, value: &[u8], rev: i64) -> KeyValue {
    kv(&keys::device_class(name), value, rev)
}

#[test]
fn the_stored_class_is_what_the_daemon_reads_plus_the_owner_marker() {
    let c = device_class(
        "fast",
        json!([{"vendor": "0x15b3", "minSpeedMbps": 100000}]),
    );
    let value = devclass::stored_value(&c).unwrap();
    let raw: Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(raw["k8sUid"], "uid-fast");
    let daemon: railyard_core::attach::DeviceClass = serde_json::from_slice(&value).unwrap();
    assert_eq!(daemon, c.to_core());
    assert!(devclass::written_by_controller(&stored_kv(
        "fast", &value, 3
    )));
    assert!(!devclass::written_by_controller(&stored_kv(
        "cli",
        br#"{"name":"cli","rules":[{"driver":"ice"}]}"#,
        3
    )));
    assert!(!devclass::written_by_controller(&stored_kv(
        "junk", b"{", 3
    )));
}

#[test]
fn device_classes_are_written_when_changed_and_deleted_only_when_ours() {
    let fast = device_class("fast", json!([{"driver": "mlx5_core"}]));
    let new = device_class("new", json!([{"driver": "ice"}]));
    let broken = device_class("broken", json!([{"vendor": "nvidia"}]));
    let same = devclass::stored_value(&fast).unwrap();
    let objects: Vec<Arc<DeviceClass>> = vec![fast, new.clone(), broken]
        .into_iter()
        .map(Arc::new)
        .collect();
    let marked = br#"{"name":"x","rules":[{"driver":"ice"}],"k8sUid":"u"}"#;
    let stored = vec![
        stored_kv("fast", &same, 4),
        // The last valid version of an object that is now invalid: kept.
        stored_kv("broken", marked, 5),
        stored_kv("orphan", marked, 6),
        stored_kv("by-hand", br#"{"name":"by-hand","rules":[]}"#, 7),
        stored_kv("junk", b"not json", 8),
    ];
    let sync = devclass::decide(&objects, &stored).unwrap();
    assert_eq!(
        sync.put,
        vec![(
            keys::device_class("new"),
            devclass::stored_value(&new).unwrap(),
            0
        )]
    );
    assert_eq!(sync.delete, vec![(keys::device_class("orphan"), 6)]);
    assert_eq!(sync.refused.len(), 1);
    assert_eq!(sync.refused[0].0, "broken");
    assert!(
        sync.refused[0]
            .1
            .starts_with("DeviceClass broken: spec.rules[0].vendor: \"nvidia\""),
        "{}",
        sync.refused[0].1
    );

    // A changed object replaces the stored value, conditional on its revision.
    let faster = Arc::new(device_class(
        "fast",
        json!([{"driver": "mlx5_core", "minSpeedMbps": 1}]),
    ));
    let sync = devclass::decide(&[faster], &[stored_kv("fast", &same, 4)]).unwrap();
    assert_eq!(sync.put.len(), 1);
    assert_eq!(sync.put[0].2, 4);
}
