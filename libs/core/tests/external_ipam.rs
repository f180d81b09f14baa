//! `spec.ipam.external` (`multiNICIPAM: false`): validated with the rest of
//! the spec, every problem naming the field and the value.

use railyard_core::NetworkManifest;
use serde_json::json;

fn validate(spec: &str) -> Result<railyard_core::Network, String> {
    let yaml = format!("metadata: {{name: net-a}}\nspec:\n{spec}");
    let m: NetworkManifest = serde_yaml::from_str(&yaml).map_err(|e| e.to_string())?;
    m.validate().map_err(|e| e.to_string())
}

#[test]
fn an_external_ipam_is_planned_like_any_network_and_kept_for_the_nad() {
    for spec in [
        // multi-nic-cni's JSON in a string, and an inline object.
        "  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2, \"excludeCIDRs\": [\"192.168.0.0/28\"], \"external\": {\"type\": \"host-local\", \"dataDir\": \"/var/lib/cni/rails\"}}'\n  multiNICIPAM: false\n",
        "  subnet: 192.168.0.0/16\n  ipam: {hostBlock: 6, interfaceBlock: 2, excludeCIDRs: [192.168.0.0/28], external: {type: host-local, dataDir: /var/lib/cni/rails}}\n",
    ] {
        let n = validate(spec).unwrap();
        assert_eq!((n.host_block, n.interface_block), (6, 2));
        assert_eq!(n.excludes[0].to_string(), "192.168.0.0/28");
        let conf = n.spec.external_ipam().unwrap().expect("an external IPAM");
        assert_eq!(
            serde_json::Value::Object(conf),
            json!({"type": "host-local", "dataDir": "/var/lib/cni/rails"})
        );
    }
    let ours =
        validate("  ipam: {hostBlock: 6, interfaceBlock: 2}\n  multiNICIPAM: true\n").unwrap();
    assert_eq!(ours.spec.external_ipam().unwrap(), None);
}

#[test]
fn bad_external_ipams_name_the_field_and_value() {
    let with = |external: &str, multi: bool| {
        format!(
            "  ipam: '{{\"hostBlock\": 6, \"interfaceBlock\": 2, \"external\": {external}}}'\n  multiNICIPAM: {multi}\n"
        )
    };
    for (spec, needles) in [
        (
            with("{\"type\": \"host-local\"}", true),
            vec!["spec.multiNICIPAM", "true"],
        ),
        (
            with("{}", false),
            vec!["spec.ipam.external.type", "required"],
        ),
        (
            with("\"host-local\"", false),
            vec!["spec.ipam.external", "must be an object"],
        ),
        (
            with("{\"type\": \"railyard-ipam\"}", false),
            vec!["spec.ipam.external.type", "railyard-ipam", "railyard's own"],
        ),
        (
            with("{\"type\": \"dhcp\"}", false),
            vec!["spec.ipam.external.type", "dhcp", "host-local, whereabouts"],
        ),
        (
            with("{\"type\": \"host-local\", \"ranges\": []}", false),
            vec!["spec.ipam.external.ranges", "set by railyard-cni"],
        ),
        (
            with(
                "{\"type\": \"whereabouts\", \"exclude\": [\"10.0.0.0/8\"]}",
                false,
            ),
            vec!["spec.ipam.external.exclude", "excludeCIDRs"],
        ),
        (
            with("{\"type\": \"host-local\", \"dataDir\": \"cni\"}", false),
            vec!["spec.ipam.external.dataDir", "\"cni\"", "absolute"],
        ),
    ] {
        let err = validate(&spec).expect_err(&spec);
        for n in needles {
            assert!(err.contains(n), "error {err:?} lacks {n:?}");
        }
    }
}
