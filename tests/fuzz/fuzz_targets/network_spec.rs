//! The network spec: a `MultiNicNetwork` manifest from YAML (or JSON, which
//! YAML reads too) through `NetworkManifest::validate`, then the plan of a
//! small inventory on the validated network.
//!
//! Properties: nothing panics; every refusal names a field under
//! `metadata.` or `spec.`; a valid manifest written as JSON or YAML reads
//! back equal and validates to the same network; the validated bounds hold
//! (block bits, pod bits left); the plan gives every block inside the
//! network's subnets and no two hosts overlapping blocks.
#![no_main]

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use railyard_core::spec::{MAX_HOST_BLOCK, MAX_INTERFACE_BLOCK, MIN_POD_BITS};
use railyard_core::{plan, CoreError, HostInventory, NetworkManifest};

const HOSTS: &str = r#"
- name: node-a
  nics:
  - {name: eth1, addresses: ["10.0.1.11/24", "fd00:1::11/64"]}
  - {name: eth2, addresses: ["10.0.2.11/24", "fd00:2::11/64"]}
- name: node-b
  nics:
  - {name: eth1, addresses: ["10.0.1.12/24", "fd00:1::12/64"]}
  - {name: eth2, addresses: ["10.0.2.12/24", "fd00:2::12/64"]}
- name: node-c
  nics:
  - {name: eth1, addresses: ["192.168.1.13/24"], speedMbps: 100000, numaNode: 0}
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // serde_yaml is the reader of `railyard apply -f` and of the tests; JSON is YAML.
    let Ok(manifest) = serde_yaml::from_str::<NetworkManifest>(text) else {
        return;
    };
    let net = match manifest.validate() {
        Err(e) => {
            let field = match &e {
                CoreError::Invalid { field, .. } | CoreError::InvalidName { field, .. } => field,
                other => panic!("a spec refusal without a field: {other}"),
            };
            assert!(
                field.starts_with("spec.") || field.starts_with("metadata."),
                "refusal names no spec field: {e}"
            );
            assert!(e.to_string().contains(field.as_str()), "{e}");
            return;
        }
        Ok(net) => net,
    };
    assert_eq!(net.name, manifest.metadata.name);
    assert!(!net.subnets.is_empty() && net.subnets.len() <= 2);
    assert!(net.host_block <= MAX_HOST_BLOCK && net.interface_block <= MAX_INTERFACE_BLOCK);
    for s in &net.subnets {
        let pod_bits = i32::from(s.max_prefix_len())
            - i32::from(s.prefix_len())
            - i32::from(net.host_block)
            - i32::from(net.interface_block);
        assert!(
            pod_bits >= i32::from(MIN_POD_BITS),
            "{s}: {pod_bits} pod bits"
        );
    }

    // decode(encode(v)) == v, in both forms a user may keep it.
    let json = serde_json::to_string(&manifest).expect("a manifest serializes");
    let back: NetworkManifest = serde_json::from_str(&json).expect("written JSON reads back");
    assert_eq!(back, manifest, "JSON round trip: {json}");
    let yaml = serde_yaml::to_string(&manifest).expect("a manifest serializes");
    let back: NetworkManifest = serde_yaml::from_str(&yaml).expect("written YAML reads back");
    assert_eq!(back, manifest, "YAML round trip: {yaml}");
    assert_eq!(back.validate().as_ref(), Ok(&net));
    // The validated network as stored (the planner's view) reads back too.
    let stored = serde_json::to_string(&net).expect("a network serializes");
    let again: railyard_core::Network = serde_json::from_str(&stored).expect("reads back");
    assert_eq!(again, net);

    let hosts: Vec<HostInventory> = serde_yaml::from_str(HOSTS).unwrap();
    let p = plan(&net, &hosts, None, 0, 0);
    let mut blocks: Vec<(String, IpNet)> = Vec::new();
    for (host, hp) in &p.hosts {
        for b in &hp.blocks {
            assert!(
                net.subnets.iter().any(|s| s.contains(&b.cidr)),
                "{host}'s block {} is outside {:?}",
                b.cidr,
                net.subnets
            );
            for (other, c) in &blocks {
                assert!(
                    other == host || !(c.contains(&b.cidr) || b.cidr.contains(c)),
                    "{host}'s block {} overlaps {other}'s {c}",
                    b.cidr
                );
            }
            blocks.push((host.clone(), b.cidr));
        }
    }
});
