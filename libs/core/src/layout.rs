//! The address arithmetic of a network:
//!
//! ```text
//! subnet bits | interfaceBlock bits (rail index) | hostBlock bits (host index) | pod bits
//! ```
//!
//! All math is on u128 so IPv4 and IPv6 share one code path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::bitmap::Bitmap;
use crate::spec::{overlaps, Network};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    subnets: Vec<IpNet>,
    interface_block: u8,
    host_block: u8,
    /// Whether each block reserves an address for a gateway (not with
    /// `spec.ipam.gateway: none`).
    gateway: bool,
}

/// Rail and host indexes that excludeCIDRs remove whole. Smaller excludes are left
/// to the block allocator, which skips their addresses.
#[derive(Debug, Clone)]
pub(crate) struct Exclusions {
    pub(crate) rails: Bitmap,
    pub(crate) hosts: Bitmap,
}

impl Layout {
    pub fn new(net: &Network) -> Self {
        Layout {
            subnets: net.subnets.clone(),
            interface_block: net.interface_block,
            host_block: net.host_block,
            gateway: net.gateway != crate::Gateway::None,
        }
    }

    pub fn subnets(&self) -> &[IpNet] {
        &self.subnets
    }

    pub fn rail_capacity(&self) -> u32 {
        1 << self.interface_block
    }

    pub fn host_capacity(&self) -> u32 {
        1 << self.host_block
    }

    /// Which family slot (0 primary, 1 secondary) an address or CIDR belongs to.
    pub fn family_of(&self, addr: &IpAddr) -> Option<usize> {
        self.subnets
            .iter()
            .position(|s| s.addr().is_ipv4() == addr.is_ipv4())
    }

    pub fn pod_bits(&self, family: usize) -> u8 {
        let s = &self.subnets[family];
        s.max_prefix_len() - s.prefix_len() - self.interface_block - self.host_block
    }

    /// Usable pod addresses in one host block: all but network, gateway (unless
    /// the network has none) and (IPv4) broadcast, which the block allocator
    /// reserves.
    pub fn pods_per_block(&self, family: usize) -> u128 {
        let broadcast = u128::from(self.subnets[family].addr().is_ipv4());
        let reserved = 1 + u128::from(self.gateway) + broadcast;
        (1u128
            .checked_shl(u32::from(self.pod_bits(family)))
            .unwrap_or(u128::MAX))
        .saturating_sub(reserved)
    }

    pub fn rail_cidr(&self, family: usize, rail: u32) -> IpNet {
        let s = &self.subnets[family];
        let shift = u32::from(self.host_block) + u32::from(self.pod_bits(family));
        let base = to_u128(s.network()) + shl(u128::from(rail), shift);
        make_net(
            base,
            s.prefix_len() + self.interface_block,
            s.addr().is_ipv4(),
        )
    }

    pub fn host_cidr(&self, family: usize, rail: u32, host: u32) -> IpNet {
        let s = &self.subnets[family];
        let pod = u32::from(self.pod_bits(family));
        let base = to_u128(s.network())
            + shl(u128::from(rail), u32::from(self.host_block) + pod)
            + shl(u128::from(host), pod);
        make_net(
            base,
            s.prefix_len() + self.interface_block + self.host_block,
            s.addr().is_ipv4(),
        )
    }

    pub(crate) fn exclusions(&self, excludes: &[IpNet]) -> Exclusions {
        let mut ex = Exclusions {
            rails: Bitmap::new(self.rail_capacity()),
            hosts: Bitmap::new(self.host_capacity()),
        };
        for (family, s) in self.subnets.iter().enumerate() {
            let rail_prefix = s.prefix_len() + self.interface_block;
            let host_prefix = rail_prefix + self.host_block;
            let pod = u32::from(self.pod_bits(family));
            for e in excludes
                .iter()
                .filter(|e| e.addr().is_ipv4() == s.addr().is_ipv4() && overlaps(e, s))
            {
                if e.prefix_len() <= s.prefix_len() {
                    mark(&mut ex.rails, 0, self.rail_capacity());
                    continue;
                }
                let offset = to_u128(e.network()) - to_u128(s.network());
                if e.prefix_len() <= rail_prefix {
                    let first = shr(offset, u32::from(self.host_block) + pod) as u32;
                    mark(&mut ex.rails, first, 1 << (rail_prefix - e.prefix_len()));
                } else if e.prefix_len() <= host_prefix {
                    let first = (shr(offset, pod) as u32) & (self.host_capacity() - 1);
                    mark(&mut ex.hosts, first, 1 << (host_prefix - e.prefix_len()));
                }
            }
        }
        ex
    }
}

fn mark(bits: &mut Bitmap, first: u32, count: u32) {
    for i in first..first.saturating_add(count).min(bits.len()) {
        bits.set(i);
    }
}

fn shl(v: u128, by: u32) -> u128 {
    v.checked_shl(by).unwrap_or(0)
}

fn shr(v: u128, by: u32) -> u128 {
    v.checked_shr(by).unwrap_or(0)
}

pub(crate) fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

pub(crate) fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

fn make_net(base: u128, prefix: u8, v4: bool) -> IpNet {
    // Prefix lengths come from a validated Network, so they are in range.
    IpNet::new(from_u128(base, v4), prefix).unwrap_or_else(|_| IpNet::from(from_u128(base, v4)))
}
