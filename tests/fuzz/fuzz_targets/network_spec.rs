//! The network spec: a `MultiNicNetwork` manifest from YAML (or JSON, which
//! YAML reads too) through `NetworkManifest::validate`, then the plan of a
//! small inventory on the validated network.
//!
//! Properties: nothing panics; every refusal names a field under
//! `metadata.` or `spec.`; a valid manifest written as JSON or YAML reads
//! back equal and validates to the same network; the validated bounds hold
//! (block bits, pod bits left); the plan gives every block inside the
//! network's subnets and no two hosts overlapping blocks; a block's
//! allocator reserves exactly its network address, gateway (and IPv4
//! broadcast) and the addresses of the `excludeCIDRs` inside it, and never
//! hands out an excluded address.
#![no_main]

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use railyard_core::alloc::MAX_TRACKED;
use railyard_core::spec::{MAX_HOST_BLOCK, MAX_INTERFACE_BLOCK, MIN_POD_BITS};
use railyard_core::{plan, BlockAllocator, CoreError, HostInventory, NetworkManifest};

fn num(a: std::net::IpAddr) -> u128 {
    match a {
        std::net::IpAddr::V4(v) => u128::from(u32::from(v)),
        std::net::IpAddr::V6(v) => u128::from(v),
    }
}

/// How many of the block's tracked addresses (the first `MAX_TRACKED`) its
/// allocator must keep free: all but the network address, the gateway, the
/// IPv4 broadcast of a fully tracked block and whatever an exclude covers.
fn expected_free(block: IpNet, excludes: &[IpNet]) -> u32 {
    let bits = u32::from(block.max_prefix_len() - block.prefix_len());
    let size: u128 = if bits >= 16 {
        u128::from(MAX_TRACKED)
    } else {
        1 << bits
    };
    let base = num(block.network());
    let mut spans: Vec<(u128, u128)> = vec![(0, 1)];
    if block.addr().is_ipv4() && bits <= 16 {
        spans.push((size - 1, size - 1));
    }
    for e in excludes {
        let (start, end) = (
            num(e.network()).max(base),
            num(e.broadcast()).min(num(block.broadcast())),
        );
        if start <= end && start - base < size {
            spans.push((start - base, (end - base).min(size - 1)));
        }
    }
    spans.sort();
    let (mut reserved, mut upto): (u128, Option<u128>) = (0, None);
    for (a, b) in spans {
        let a = upto.map_or(a, |u| a.max(u + 1));
        if a <= b {
            reserved += b - a + 1;
        }
        upto = Some(upto.map_or(b, |u| u.max(b)));
    }
    (size - reserved) as u32
}

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
            let mut alloc = BlockAllocator::new(b.cidr, &net.excludes);
            assert_eq!(
                alloc.free(),
                expected_free(b.cidr, &net.excludes),
                "block {} with excludes {:?}",
                b.cidr,
                net.excludes
            );
            if let Some(a) = alloc.allocate() {
                assert!(b.cidr.contains(&a), "{a} outside {}", b.cidr);
                assert!(
                    !net.excludes.iter().any(|e| e.contains(&a)),
                    "{a} is excluded"
                );
            }
        }
    }
});
