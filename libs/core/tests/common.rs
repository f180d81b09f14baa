//! Builders shared by the core's integration tests.
#![allow(dead_code)]

use railyard_core::{HostInventory, Network, NetworkManifest, Nic};

pub fn network(yaml: &str) -> Network {
    let m: NetworkManifest = serde_yaml::from_str(yaml).expect("test manifest parses");
    m.validate().expect("test manifest is valid")
}

/// The upstream worked example: 192.168.0.0/16, interfaceBlock 2, hostBlock 6.
pub fn upstream() -> Network {
    network(
        r#"
apiVersion: net.cogadvisor.io/v1
kind: MultiNicNetwork
metadata: {name: multi-nic-sample}
spec:
  subnet: "192.168.0.0/16"
  ipam: |
    {"type": "multi-nic-ipam", "hostBlock": 6, "interfaceBlock": 2, "vlanMode": "l3"}
  multiNICIPAM: true
  plugin: {cniVersion: "0.3.0", type: ipvlan, args: {mode: l3}}
  attachPolicy: {strategy: none}
"#,
    )
}

/// A host with one NIC per rail: NIC k is `eth{k}` at 10.0.k.(n+1)/24 (+ fd00:k::(n+1)/64).
pub fn host(name: &str, n: u32, rails: u32, v6: bool) -> HostInventory {
    HostInventory {
        name: name.to_string(),
        nics: (0..rails)
            .map(|k| {
                let mut addresses = vec![format!("10.0.{k}.{}/24", n + 1).parse().unwrap()];
                if v6 {
                    addresses.push(format!("fd00:{k}::{:x}/64", n + 1).parse().unwrap());
                }
                Nic {
                    name: format!("eth{k}"),
                    addresses,
                    up: true,
                    ..Nic::default()
                }
            })
            .collect(),
    }
}

pub fn hosts(count: u32, rails: u32) -> Vec<HostInventory> {
    (0..count)
        .map(|n| host(&format!("host-{n:05}"), n, rails, false))
        .collect()
}
