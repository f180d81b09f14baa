//! `spec.ipam.gateway`: validation names the field and the value; unset is
//! exactly what a network was before the field existed.

use railyard_core::{Gateway, Network, NetworkManifest};

fn validate(ipam: &str, plugin: &str) -> Result<Network, String> {
    let yaml = format!(
        "metadata: {{name: net-a}}\nspec:\n  subnet: 192.168.0.0/16,fd00:200::/48\n  ipam: {ipam}\n{plugin}"
    );
    let m: NetworkManifest = serde_yaml::from_str(&yaml).map_err(|e| e.to_string())?;
    m.validate().map_err(|e| e.to_string())
}

const BLOCKS: &str = "hostBlock: 8, interfaceBlock: 2";
const MACVLAN: &str = "  plugin: {cniVersion: 1.0.0, type: macvlan, args: {mode: bridge}}\n";
const IPVLAN_L3: &str = "  plugin: {cniVersion: 1.0.0, type: ipvlan, args: {mode: l3}}\n";

#[test]
fn unset_is_offset_1_and_leaves_the_network_as_it_was() {
    let net = validate(&format!("{{{BLOCKS}}}"), MACVLAN).unwrap();
    assert_eq!(net.gateway, Gateway::Offset(1));
    let stored = serde_json::to_string(&net).unwrap();
    assert!(!stored.contains("gateway"), "{stored}");
    // An explicit offset is kept, and stored.
    let net = validate(&format!("{{{BLOCKS}, gateway: {{offset: -2}}}}"), MACVLAN).unwrap();
    assert_eq!(net.gateway, Gateway::Offset(-2));
    let stored = serde_json::to_value(&net).unwrap();
    assert_eq!(stored["gateway"], serde_json::json!({"offset": -2}));
    let back: Network = serde_json::from_value(stored).unwrap();
    assert_eq!(back.gateway, Gateway::Offset(-2));
}

#[test]
fn multi_nic_cnis_json_string_form_takes_it_too() {
    let ipam = r#"'{"hostBlock": 8, "interfaceBlock": 2, "gateway": "none"}'"#;
    assert_eq!(validate(ipam, IPVLAN_L3).unwrap().gateway, Gateway::None);
    let ipam = r#"'{"hostBlock": 8, "interfaceBlock": 2, "gateway": {"offset": 7}}'"#;
    assert_eq!(validate(ipam, MACVLAN).unwrap().gateway, Gateway::Offset(7));
}

#[test]
fn none_is_for_ipvlan_l3_and_l3s_only() {
    let none = format!("{{{BLOCKS}, gateway: none}}");
    assert_eq!(validate(&none, IPVLAN_L3).unwrap().gateway, Gateway::None);
    // ipvlan is the plugin when none is named, vlanMode its mode.
    let l3s = format!("{{{BLOCKS}, vlanMode: l3s, gateway: none}}");
    assert_eq!(validate(&l3s, "").unwrap().gateway, Gateway::None);
    for (plugin, names) in [
        (MACVLAN, "macvlan"),
        (
            "  plugin: {cniVersion: 1.0.0, type: host-device}\n",
            "host-device",
        ),
        ("  plugin: {cniVersion: 1.0.0, type: ptp}\n", "ptp"),
    ] {
        let err = validate(&none, plugin).unwrap_err();
        assert!(
            err.starts_with("spec.ipam.gateway: \"none\"") && err.contains(names),
            "{names}: {err}"
        );
    }
}

#[test]
fn bad_offsets_are_refused_naming_the_field_and_value() {
    // Host blocks: 2^(32-16-2-8) = 64 IPv4 addresses, 2^(128-48-10) IPv6.
    for (gateway, says) in [
        ("{offset: 0}", "network address"),
        ("{offset: 63}", "broadcast"),
        ("{offset: -1}", "broadcast"),
        (
            "{offset: 64}",
            "outside the IPv4 host blocks of 192.168.0.0/16",
        ),
        ("{offset: -65}", "outside"),
        ("{offset: -64}", "network address"),
    ] {
        let err = validate(&format!("{{{BLOCKS}, gateway: {gateway}}}"), MACVLAN).unwrap_err();
        let value = gateway.replace("{offset: ", "").replace('}', "");
        assert!(
            err.starts_with("spec.ipam.gateway:")
                && err.contains(&format!("offset: {value}"))
                && err.contains(says),
            "{gateway}: {err}"
        );
    }
    for (gateway, field) in [
        ("auto", "spec.ipam.gateway:"),
        ("{offset: two}", "spec.ipam.gateway.offset:"),
        ("{offst: 2}", "spec.ipam.gateway.offst:"),
    ] {
        let err = validate(&format!("{{{BLOCKS}, gateway: {gateway}}}"), MACVLAN).unwrap_err();
        assert!(err.starts_with(field), "{gateway}: {err}");
    }
    // Inside an exclude: the second IPv4 host block's offset 10.
    let err = validate(
        &format!("{{{BLOCKS}, gateway: {{offset: 10}}, excludeCIDRs: [192.168.0.72/30]}}"),
        MACVLAN,
    )
    .unwrap_err();
    assert!(
        err.starts_with("spec.ipam.gateway:")
            && err.contains("192.168.0.74")
            && err.contains("192.168.0.64/26")
            && err.contains("192.168.0.72/30"),
        "{err}"
    );
    validate(
        &format!("{{{BLOCKS}, gateway: {{offset: 10}}, excludeCIDRs: [192.168.0.76/30]}}"),
        MACVLAN,
    )
    .unwrap();
    // Unset, offset 1 inside an exclude is accepted as every release did;
    // asked for, it is refused like any offset.
    let exclude = "excludeCIDRs: [192.168.0.0/30]";
    validate(&format!("{{{BLOCKS}, {exclude}}}"), MACVLAN).unwrap();
    let err = validate(
        &format!("{{{BLOCKS}, {exclude}, gateway: {{offset: 1}}}}"),
        MACVLAN,
    )
    .unwrap_err();
    assert!(
        err.starts_with("spec.ipam.gateway:") && err.contains("192.168.0.1"),
        "{err}"
    );
}

#[test]
fn without_a_gateway_each_block_holds_one_pod_more() {
    let blocks = format!("{{{BLOCKS}}}");
    let with = railyard_core::Layout::new(&validate(&blocks, IPVLAN_L3).unwrap());
    let none = format!("{{{BLOCKS}, gateway: none}}");
    let without = railyard_core::Layout::new(&validate(&none, IPVLAN_L3).unwrap());
    // 64 IPv4 addresses: network, broadcast and (with one) the gateway.
    assert_eq!(with.pods_per_block(0), 61);
    assert_eq!(without.pods_per_block(0), 62);
    assert_eq!(without.pods_per_block(1), with.pods_per_block(1) + 1);
}
