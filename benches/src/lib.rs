//! Synthetic networks and inventories for the benchmarks, sized like the targets in
//! the issues (10,000 hosts x 8 rails).

pub mod peers;

use railyard_core::{HostInventory, Network, NetworkSpec, Nic};

/// A network that fits 16,384 hosts on 8 rails: 10.0.0.0/8 (or fd00::/48),
/// interfaceBlock 3, hostBlock 14.
pub fn network(v6: bool) -> Network {
    let spec = NetworkSpec {
        subnet: if v6 { "fd00::/48" } else { "10.0.0.0/8" }.to_string(),
        ipam: railyard_core::spec::IpamField::Text(
            r#"{"hostBlock": 14, "interfaceBlock": 3}"#.to_string(),
        ),
        ..NetworkSpec::default()
    };
    match spec.validate("bench") {
        Ok(n) => n,
        Err(e) => panic!("benchmark network is invalid: {e}"),
    }
}

/// Host `n` with `rails` NICs; NIC k sits on rail subnet 172.(16+k).0.0/16
/// (or fc00:k::/64).
pub fn host(n: u32, rails: u32, v6: bool) -> HostInventory {
    HostInventory {
        name: format!("node-{n:05}"),
        nics: (0..rails)
            .map(|k| {
                let addr = if v6 {
                    format!("fc00:{k}::{:x}/64", n + 1)
                } else {
                    format!("172.{}.{}.{}/16", 16 + k, (n + 1) / 256, (n + 1) % 256)
                };
                Nic {
                    name: format!("ens{k}"),
                    addresses: vec![addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"))],
                    up: true,
                    ..Nic::default()
                }
            })
            .collect(),
    }
}

pub fn hosts(count: u32, rails: u32, v6: bool) -> Vec<HostInventory> {
    (0..count).map(|n| host(n, rails, v6)).collect()
}
