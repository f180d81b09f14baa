use railyard_core::{NetworkManifest, Strategy, VlanMode};

fn validate(spec: &str) -> Result<railyard_core::Network, String> {
    let yaml = format!("metadata: {{name: net-a}}\nspec:\n{spec}");
    let m: NetworkManifest = serde_yaml::from_str(&yaml).map_err(|e| e.to_string())?;
    m.validate().map_err(|e| e.to_string())
}

#[track_caller]
fn rejects(spec: &str, needles: &[&str]) {
    let err = validate(spec).expect_err("spec must be rejected");
    for n in needles {
        assert!(err.contains(n), "error {err:?} lacks {n:?}");
    }
}

#[test]
fn accepts_a_multi_nic_cni_manifest_unchanged() {
    let m: NetworkManifest = serde_yaml::from_str(
        r#"
apiVersion: multinic.fms.io/v1
kind: MultiNicNetwork
metadata:
  name: multinic-sriov
spec:
  subnet: "172.34.0.0/16"
  ipam: |
    {
      "type": "multi-nic-ipam",
      "hostBlock": 8,
      "interfaceBlock": 2,
      "vlanMode": "l2",
      "excludeCIDRs": ["172.34.0.0/28"]
    }
  multiNICIPAM: true
  plugin:
    cniVersion: "0.3.0"
    type: sriov
    args: {numVfs: "2", isRdma: "true"}
  attachPolicy: {strategy: costOpt}
  namespaces: [default, team-a]
  masterNets: ["10.10.1.0/24", "10.10.2.0/24"]
"#,
    )
    .unwrap();
    let n = m.validate().unwrap();
    assert_eq!(n.host_block, 8);
    assert_eq!(n.interface_block, 2);
    assert_eq!(n.vlan_mode, VlanMode::L2);
    assert_eq!(n.strategy, Strategy::Balance);
    assert_eq!(n.master_nets.len(), 2);
    assert_eq!(n.excludes[0].to_string(), "172.34.0.0/28");
    assert_eq!(n.spec.plugin.unwrap().args["numVfs"], "2");
}

#[test]
fn default_subnet_and_object_ipam() {
    let n = validate("  ipam: {hostBlock: 6, interfaceBlock: 2}\n").unwrap();
    assert_eq!(n.subnets[0].to_string(), "172.30.0.0/16");
}

#[test]
fn errors_name_the_field_and_value() {
    rejects(
        "  subnet: 192.168.0.0/24\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
        &["spec.ipam.hostBlock", "\"6\"", "0 pod bits"],
    );
    rejects(
        "  subnet: 192.168.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
        &["spec.subnet", "192.168.0/16"],
    );
    rejects(
        "  subnet: 192.168.1.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
        &["spec.subnet", "192.168.0.0/16"],
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6}'\n",
        &["spec.ipam.interfaceBlock", "required"],
    );
    rejects(
        "  ipam: '{\"hostBlock\": -1, \"interfaceBlock\": 2}'\n",
        &["spec.ipam.hostBlock", "\"-1\""],
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6,'\n",
        &["spec.ipam", "not valid IPAM JSON"],
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2, \"vlanMode\": \"l4\"}'\n",
        &["spec.ipam.vlanMode", "l4"],
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2, \"excludeCIDRs\": [\"10.0.0.0/8\"]}'\n",
        &[
            "spec.ipam.excludeCIDRs[0]",
            "10.0.0.0/8",
            "does not overlap",
        ],
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n  masterNets: [10.0.0.0/24, nope]\n",
        &["spec.masterNets[1]", "nope"],
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n  attachPolicy: {strategy: fastest}\n",
        &["spec.attachPolicy.strategy", "fastest"],
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n  attachPolicy: {strategy: devClass}\n",
        &["spec.attachPolicy.target"],
    );
    rejects(
        "  subnet: 10.0.0.0/16,10.1.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
        &["spec.subnet", "dual stack"],
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n  namespaces: [Bad_NS]\n",
        &["spec.namespaces[0]", "Bad_NS"],
    );
    let bad_name: NetworkManifest =
        serde_yaml::from_str("metadata: {name: My/Net}\nspec: {}\n").unwrap();
    let e = bad_name.validate().unwrap_err().to_string();
    assert!(e.contains("metadata.name") && e.contains("My/Net"), "{e}");
}

#[test]
fn an_unknown_ipam_key_is_refused_by_name() {
    // A typo of excludeCIDRs, in multi-nic-cni's string form and as an object.
    rejects(
        "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2, \"excludeCIDR\": [\"192.168.0.0/24\"]}'\n",
        &["spec.ipam.excludeCIDR", "192.168.0.0/24", "not an ipam key"],
    );
    rejects(
        "  ipam: {hostBlock: 6, interfaceBlock: 2, hostblock: 5}\n",
        &["spec.ipam.hostblock", "not an ipam key"],
    );
}

#[test]
fn every_ipam_key_of_the_multi_nic_cni_samples_is_accepted() {
    // The keys multi-nic-cni's README and sample manifests use (seeds/001).
    let n = validate(
        "  subnet: 192.168.0.0/16\n  ipam: '{\"type\": \"multi-nic-ipam\", \"hostBlock\": 6, \"interfaceBlock\": 2, \"vlanMode\": \"l3\", \"excludeCIDRs\": [\"192.168.0.0/28\"]}'\n",
    )
    .unwrap();
    assert_eq!(n.excludes.len(), 1);
    for key in railyard_core::spec::IPAM_KEYS {
        assert!(
            [
                "type",
                "hostBlock",
                "interfaceBlock",
                "vlanMode",
                "excludeCIDRs",
                // Kube-OVN's excludeIps (ranges), railyard's one addition.
                "excludeIPs",
                // Each host block's gateway, or none (railyard's).
                "gateway",
                // An external IPAM's config (multiNICIPAM: false).
                "external",
                // Workload pools (railyard's; Kube-OVN's ip_pool on the network).
                "pools",
            ]
            .contains(&key),
            "{key}"
        );
    }
}

/// Kube-OVN's excludeIps: addresses, CIDRs and ranges, each becoming CIDRs
/// beside excludeCIDRs'; a bad entry is refused naming its index.
#[test]
fn exclude_ips_take_ranges_and_refuse_bad_entries_by_index() {
    let n = validate(
        "  subnet: 192.168.0.0/16
  ipam: {hostBlock: 6, interfaceBlock: 2, excludeCIDRs: [192.168.0.0/28], excludeIps: [\"192.168.1.1..192.168.1.10\", 192.168.2.7, 192.168.3.0/30]}
",
    )
    .unwrap();
    let shown: Vec<String> = n.excludes.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "192.168.0.0/28",
            "192.168.1.1/32",
            "192.168.1.2/31",
            "192.168.1.4/30",
            "192.168.1.8/31",
            "192.168.1.10/32",
            "192.168.2.7/32",
            "192.168.3.0/30"
        ]
    );
    rejects(
        "  subnet: 192.168.0.0/16
  ipam: {hostBlock: 6, interfaceBlock: 2, excludeIPs: [192.168.0.1, \"192.168.0.9..192.168.0.2\"]}
",
        &[
            "spec.ipam.excludeIPs[1]",
            "192.168.0.9..192.168.0.2",
            "ends before",
        ],
    );
    rejects(
        "  subnet: 192.168.0.0/16
  ipam: {hostBlock: 6, interfaceBlock: 2, excludeIPs: [10.0.0.1]}
",
        &["spec.ipam.excludeIPs[0]", "outside the subnet"],
    );
}

/// ipvlan l2 does not cross hosts over railyard's routes: refused, naming
/// the field that asked for it and what to use instead. Other plugins
/// ignore vlanMode, so their manifests keep loading.
#[test]
fn ipvlan_l2_is_refused_and_other_plugins_ignore_vlan_mode() {
    let l2 = "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2, \"vlanMode\": \"l2\"}'\n";
    let why = ["l3 (the default) or l3s", "across hosts"];
    // No plugin: the NAD's plugin is ipvlan.
    rejects(
        l2,
        &[&["spec.ipam.vlanMode", "\"l2\""][..], &why[..]].concat(),
    );
    rejects(
        &format!("{l2}  plugin: {{type: ipvlan}}\n"),
        &[&["spec.ipam.vlanMode"][..], &why[..]].concat(),
    );
    rejects(
        "  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n  plugin: {type: ipvlan, args: {mode: l2}}\n",
        &[&["spec.plugin.args.mode", "\"l2\""][..], &why[..]].concat(),
    );
    for kind in ["macvlan", "sriov"] {
        let n = validate(&format!("{l2}  plugin: {{type: {kind}}}\n")).unwrap();
        assert_eq!(n.vlan_mode, VlanMode::L2, "{kind}");
    }
    for mode in ["l3", "l3s"] {
        let ok = format!(
            "  ipam: '{{\"hostBlock\": 6, \"interfaceBlock\": 2, \"vlanMode\": \"{mode}\"}}'\n  plugin: {{type: ipvlan}}\n"
        );
        validate(&ok).unwrap();
    }
}

/// `spec.routes`: extra pod routes per rail, checked by field and index.
#[test]
fn rail_routes_are_checked_by_index() {
    let base = "  subnet: 192.168.0.0/16\n  ipam: {hostBlock: 6, interfaceBlock: 2}\n";
    let ok = validate(&format!(
        "{base}  routes: [{{rail: 2, dst: 10.50.0.0/16}}, {{rail: 0, dst: \"fd50::/64\"}}]\n"
    ))
    .unwrap();
    let routes = ok
        .spec
        .rail_routes(&ok.subnets, ok.interface_block)
        .unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(
        (routes[0].rail, routes[0].dst.to_string()),
        (2, "10.50.0.0/16".into())
    );
    for (routes, want) in [
        (
            "[{rail: 4, dst: 10.50.0.0/16}]",
            &["spec.routes[0].rail", "0 to 3"][..],
        ),
        (
            "[{rail: 0, dst: 10.50.0.0/16}, {rail: 1, dst: nope}]",
            &["spec.routes[1].dst", "not a CIDR"],
        ),
        (
            "[{rail: 0, dst: 10.50.0.1/16}]",
            &["spec.routes[0].dst", "10.50.0.0/16"],
        ),
        (
            "[{rail: 0, dst: 192.168.4.0/24}]",
            &["spec.routes[0].dst", "overlaps the pod subnet"],
        ),
    ] {
        rejects(&format!("{base}  routes: {routes}\n"), want);
    }
}
