//! NetworkAttachmentDefinitions: per delegate, annotations, namespaces, the objects, pruning.

use super::*;

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
            "capabilities": {"ips": true, "mac": true},
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
        v["spec"]["ipam"] = json!(r#"{"hostBlock": 6, "interfaceBlock": 2, "vlanMode": "l3s"}"#);
        v["spec"]["plugin"] = json!({"type": "ipvlan"});
    });
    assert_eq!(
        delegate_of(&from_vlan_mode),
        json!({"type": "ipvlan", "mode": "l3s"})
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
        v["spec"]["plugin"] = json!({"type": "ipvlan", "args": {"mode": "l3s"}});
    });
    let err = plan_of(&conflict, &["default"]).unwrap_err();
    assert!(err.to_string().contains("spec.ipam.vlanMode"), "{err}");
    assert_eq!(
        invalid_field(err),
        ("spec.plugin.args.mode".into(), "l3s".into())
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

#[test]
fn an_external_ipam_goes_into_the_nad_and_a_foreign_type_points_to_it() {
    let external = network(|v| {
        v["spec"]["ipam"] = json!(
            r#"{"hostBlock": 6, "interfaceBlock": 2, "external": {"type": "host-local", "dataDir": "/var/lib/cni/rails"}}"#
        );
        v["spec"]["multiNICIPAM"] = json!(false);
    });
    let plan = plan_of(&external, &["default"]).unwrap();
    assert_eq!(
        plan.config["ipam"],
        json!({"type": "railyard-ipam",
               "external": {"type": "host-local", "dataDir": "/var/lib/cni/rails"}}),
        "railyard-cni asks the daemon for the NICs and runs host-local on each block"
    );
    assert_eq!(
        plan.config["delegate"],
        json!({"type": "ipvlan", "mode": "l3"})
    );
    // multiNICIPAM: true means railyard allocates: refused with an external one.
    let both = network(|v| {
        v["spec"]["ipam"] =
            json!(r#"{"hostBlock": 6, "interfaceBlock": 2, "external": {"type": "whereabouts"}}"#);
        v["spec"]["multiNICIPAM"] = json!(true);
    });
    let err = convert::manifest(&both).validate().unwrap_err();
    assert_eq!(
        invalid_field(err),
        ("spec.multiNICIPAM".into(), "true".into())
    );
    // A bad external config is Invalid naming the field and value.
    for (external, field, value) in [
        (json!({}), "spec.ipam.external.type", ""),
        (json!({"type": "dhcp"}), "spec.ipam.external.type", "dhcp"),
        (
            json!({"type": "multi-nic-ipam"}),
            "spec.ipam.external.type",
            "multi-nic-ipam",
        ),
        (
            json!({"type": "whereabouts", "range": "10.0.0.0/8"}),
            "spec.ipam.external.range",
            "10.0.0.0/8",
        ),
    ] {
        let net = network(|v| {
            v["spec"]["ipam"] = json!(json!({"hostBlock": 6, "interfaceBlock": 2,
                                             "external": external.clone()})
            .to_string());
            v["spec"]["multiNICIPAM"] = json!(false);
        });
        let err = convert::manifest(&net).validate().unwrap_err();
        assert_eq!(
            invalid_field(err),
            (field.into(), value.into()),
            "{external}"
        );
    }
    // The old way of naming another IPAM says where it goes now.
    let foreign = network(|v| {
        v["spec"]["ipam"] =
            json!(r#"{"type": "whereabouts", "hostBlock": 6, "interfaceBlock": 2}"#);
        v["spec"]["multiNICIPAM"] = json!(false);
    });
    let err = plan_of(&foreign, &["default"]).unwrap_err();
    assert!(err.to_string().contains("spec.ipam.external"), "{err}");
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

/// `railyard.dev/resource-name` taken off a network that is no longer sriov: the
/// NAD still carries `k8s.v1.cni.cncf.io/resourceName` from before, and a check
/// that only looks for wanted annotations would never drop it.
#[test]
fn up_to_date_compares_railyards_own_annotations_exactly() {
    let plan = plan_of(&sample(), &["default"]).unwrap();
    let want = plan.objects("multi-nic-sample", &owner()).remove(0);
    assert!(want.metadata.annotations.is_none(), "ipvlan: no resource");
    let mut theirs = want.clone();
    theirs.metadata.annotations = Some(BTreeMap::from([(
        "team.example/contact".to_string(),
        "ml-infra".to_string(),
    )]));
    assert!(
        nad::up_to_date(&theirs, &want),
        "someone else's annotation is left alone"
    );
    let mut leftover = theirs.clone();
    leftover.metadata.annotations.as_mut().unwrap().insert(
        "k8s.v1.cni.cncf.io/resourceName".into(),
        "intel.com/sriov_rail".into(),
    );
    assert!(
        !nad::up_to_date(&leftover, &want),
        "a resource name railyard no longer sets is removed by re-applying"
    );
    let sriov = with_plugin("sriov", json!({"resourceName": "intel.com/rail"}));
    let want = plan_of(&sriov, &["default"])
        .unwrap()
        .objects("multi-nic-sample", &owner())
        .remove(0);
    let mut other_resource = want.clone();
    other_resource
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(
            "k8s.v1.cni.cncf.io/resourceName".into(),
            "intel.com/old".into(),
        );
    assert!(!nad::up_to_date(&other_resource, &want));
    assert!(nad::up_to_date(&want, &want));
}

/// `spec.devices` becomes railyard-cni's `devices`: a VF resource per rail
/// (so sriov needs no single resourceName), and the GPU resources.
#[test]
fn devices_give_each_rail_its_vf_resource() {
    let net = network(|v| {
        v["spec"]["plugin"] = json!({"cniVersion": "1.0.0", "type": "sriov"});
        v["spec"]["devices"] = json!({
            "railResources": {"0": "nvidia.com/rail0_vf", "3": " nvidia.com/rail3_vf "},
            "gpuResources": ["nvidia.com/gpu"],
            "podResourcesSocket": "/var/snap/microk8s/common/var/lib/kubelet/pod-resources/kubelet.sock",
        });
    });
    let plan = plan_of(&net, &["default"]).unwrap();
    assert_eq!(
        plan.config["devices"],
        json!({
            "railResources": {"0": "nvidia.com/rail0_vf", "3": "nvidia.com/rail3_vf"},
            "gpuResources": ["nvidia.com/gpu"],
            "podResourcesSocket": "/var/snap/microk8s/common/var/lib/kubelet/pod-resources/kubelet.sock",
        })
    );
    assert!(
        plan.annotations.is_empty(),
        "no single resourceName for Multus"
    );

    let bad = |devices: Value, kind: &str| {
        let net = network(|v| {
            v["spec"]["plugin"] = json!({"cniVersion": "1.0.0", "type": kind, "args": {}});
            v["spec"]["devices"] = devices;
        });
        invalid_field(plan_of(&net, &["default"]).unwrap_err())
    };
    // The sample has interfaceBlock 2: rails 0 to 3.
    assert_eq!(
        bad(json!({"railResources": {"4": "r"}}), "sriov"),
        ("spec.devices.railResources[4]".into(), "4".into())
    );
    assert_eq!(
        bad(json!({"railResources": {"one": "r"}}), "sriov").0,
        "spec.devices.railResources[one]"
    );
    assert_eq!(
        bad(json!({"railResources": {"0": "r"}}), "macvlan").0,
        "spec.devices.railResources"
    );
    assert_eq!(
        bad(json!({"gpuResources": ["nvidia.com/gpu", " "]}), "sriov").0,
        "spec.devices.gpuResources[1]"
    );
    assert_eq!(
        bad(json!({"podResourcesSocket": "kubelet.sock"}), "sriov").0,
        "spec.devices.podResourcesSocket"
    );
    let both = network(|v| {
        v["spec"]["plugin"] = json!({"type": "sriov", "args": {"resourceName": "x/y"}});
        v["spec"]["devices"] = json!({"railResources": {"0": "r"}});
    });
    assert_eq!(
        invalid_field(plan_of(&both, &["default"]).unwrap_err()).0,
        "spec.plugin.args.resourceName"
    );
}

/// `spec.chain` becomes railyard-cni's `chain`, numbers and sysctls converted.
#[test]
fn chain_plugins_are_converted_and_checked() {
    let net = network(|v| {
        v["spec"]["plugin"] = json!({"cniVersion": "1.0.0", "type": "ptp"});
        v["spec"]["chain"] = json!([
            {"type": "tuning", "args": {"mtu": "9000", "promisc": "true",
                                        "sysctl.net.ipv4.conf.IFNAME.arp_ignore": "1"}},
            {"type": "bandwidth", "args": {"ingressRate": "100000000", "ingressBurst": "200000"}},
        ]);
    });
    assert_eq!(
        plan_of(&net, &["default"]).unwrap().config["chain"],
        json!([
            {"type": "tuning", "mtu": 9000, "promisc": true,
             "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1"}},
            {"type": "bandwidth", "ingressRate": 100_000_000, "ingressBurst": 200_000},
        ])
    );
    let bad = |chain: Value| {
        let net = network(|v| v["spec"]["chain"] = chain);
        invalid_field(plan_of(&net, &["default"]).unwrap_err())
    };
    assert_eq!(
        bad(json!([{"type": "portmap"}])),
        ("spec.chain[0].type".into(), "portmap".into())
    );
    assert_eq!(
        bad(json!([{"type": "sbr"}, {"type": "bandwidth", "args": {"egressRate": "fast"}}])),
        ("spec.chain[1].args.egressRate".into(), "fast".into())
    );
    assert_eq!(
        bad(json!([{"type": "rdma", "args": {"deviceID": "0000:3b:00.1"}}])).0,
        "spec.chain[0].args.deviceID"
    );
}
