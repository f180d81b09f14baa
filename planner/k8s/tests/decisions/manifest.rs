//! MultiNicNetwork to the etcd manifest.

use super::*;

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

#[test]
fn a_routed_fabric_reaches_the_manifest() {
    let net = network(|v| {
        v["spec"]["masterNets"] = json!(["10.110.0.0/16", "10.111.0.0/16"]);
        v["spec"]["fabric"] =
            json!({"mode": "routed", "bgp": {"asn": 64512, "peerAsn": 65000, "holdTime": 9}});
    });
    let m = convert::manifest(&net);
    let n = m.validate().expect("valid");
    assert_eq!(
        n.spec.fabric().unwrap(),
        railyard_core::fabric::Fabric::Routed(railyard_core::fabric::Bgp {
            asn: 64_512,
            peer_asn: 65_000,
            hold_time: 9
        })
    );
    // Without it, nothing is added to the stored bytes.
    let plain = serde_json::to_string(&convert::manifest(&sample())).unwrap();
    assert!(!plain.contains("fabric"), "{plain}");
    // The controller refuses a bad value naming it.
    let bad = network(|v| {
        v["spec"]["masterNets"] = json!(["10.110.0.0/16"]);
        v["spec"]["fabric"] = json!({"mode": "routed", "bgp": {"peerAsn": 64512}});
    });
    let err = convert::manifest(&bad).validate().unwrap_err();
    assert_eq!(
        invalid_field(err),
        ("spec.fabric.bgp.peerAsn".into(), "64512".into())
    );
}
