//! Builders shared by the allocdb tests.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::IpAddr;

use railyard_allocdb::{AddArgs, AllocDb, NetworkConfig, Options};
use railyard_core::ipam::{AttachmentId, NicAllocation};
use railyard_core::{Block, Interface, Nic, Strategy};

pub const NET: &str = "net1";

/// A network with one block per `(nic, rail, cidr)`; rail `r` is 192.168.(64r).0/18
/// (and fd00:r::/48 for IPv6 blocks).
pub fn config(blocks: &[(&str, u32, &str)]) -> NetworkConfig {
    let mut rails: Vec<u32> = blocks.iter().map(|b| b.1).collect();
    rails.dedup();
    NetworkConfig {
        routes: Vec::new(),
        pools: Vec::new(),
        gateway: Default::default(),
        name: NET.into(),
        strategy: Strategy::None,
        policy_target: String::new(),
        excludes: vec![],
        interfaces: rails
            .iter()
            .map(|r| Interface {
                index: *r,
                net_address: format!("10.0.{r}.0/24").parse().unwrap(),
                cidrs: vec![
                    format!("192.168.{}.0/18", 64 * r).parse().unwrap(),
                    format!("fd00:{r}::/48").parse().unwrap(),
                ],
            })
            .collect(),
        blocks: blocks
            .iter()
            .map(|(nic, rail, cidr)| Block {
                interface: *rail,
                nic: nic.parse().expect("valid name"),
                nic_address: format!("10.0.{rail}.1").parse().unwrap(),
                cidr: cidr.parse().unwrap(),
            })
            .collect(),
    }
}

/// Two rails, a /24 per NIC.
pub fn two_rails() -> NetworkConfig {
    config(&[
        ("eth0", 0, "192.168.1.0/24"),
        ("eth1", 1, "192.168.65.0/24"),
    ])
}

/// Two rails, dual stack: four addresses per attachment.
pub fn dual_stack() -> NetworkConfig {
    config(&[
        ("eth0", 0, "192.168.1.0/24"),
        ("eth0", 0, "fd00:0:0:1::/64"),
        ("eth1", 1, "192.168.65.0/24"),
        ("eth1", 1, "fd00:1:0:1::/64"),
    ])
}

/// The host's NICs as discovered: `ethR` holds 10.0.R.1, the `nicAddress` of
/// its blocks in [`config`] (a NIC without it could not carry pod traffic).
pub fn nics(names: &[&str]) -> Vec<Nic> {
    names
        .iter()
        .map(|n| {
            let rail: u32 = n
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap_or(0);
            Nic {
                name: n.to_string(),
                addresses: vec![format!("10.0.{rail}.1/24").parse().unwrap()],
                up: true,
                ..Nic::default()
            }
        })
        .collect()
}

pub fn id(c: &str) -> AttachmentId {
    AttachmentId {
        network: NET.into(),
        container_id: c.into(),
        ifname: "net1".into(),
    }
}

pub fn args(c: &str) -> AddArgs {
    AddArgs::new(id(c))
}

pub fn addrs(nics: &[NicAllocation]) -> Vec<IpAddr> {
    nics.iter()
        .flat_map(|n| n.addresses.iter().map(|a| a.addr()))
        .collect()
}

pub fn opts() -> Options {
    Options::default()
}

pub async fn open_with(dir: &std::path::Path, cfg: NetworkConfig) -> AllocDb {
    let db = AllocDb::open(dir, opts()).unwrap();
    db.set_network(cfg).await.unwrap();
    db
}

/// Every address held by the db's attachments (network, address), failing on a
/// duplicate, and each block's bitmap count equal to what the attachments hold in it.
pub async fn assert_consistent(db: &AllocDb) -> HashSet<(String, IpAddr)> {
    let all = db.attachments(None).await.unwrap();
    let mut seen = HashSet::new();
    for a in &all {
        for addr in addrs(&a.nics) {
            assert!(
                seen.insert((a.id.network.clone(), addr)),
                "{addr} is held twice"
            );
        }
        db.check(&a.id).await.unwrap();
    }
    for b in db.stats().blocks {
        let held = seen
            .iter()
            .filter(|(n, a)| *n == b.network && b.cidr.contains(a))
            .count() as u32;
        assert_eq!(
            b.allocated, held,
            "bitmap of {} disagrees with the attachments",
            b.cidr
        );
    }
    seen
}
