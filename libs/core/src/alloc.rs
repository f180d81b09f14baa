//! The pod address allocator of one host block.
//!
//! A bitmap with a cursor: each allocation takes the next free address after the
//! last one handed out, wrapping at the end, so a released address is reused as
//! late as possible (a stale ARP entry or conntrack flow for it has time to die).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::bitmap::Bitmap;
use crate::error::{CoreError, Result};
use crate::gateway::Gateway;
use crate::layout::{from_u128, to_u128};
use crate::spec::overlaps;

/// Blocks larger than this (IPv6 /64s) allocate from their first 65,536 addresses:
/// no host runs more pods than that, and the bitmap stays at 8 KiB.
pub const MAX_TRACKED: u32 = 1 << 16;

#[derive(Debug, Clone)]
pub struct BlockAllocator {
    block: IpNet,
    base: u128,
    used: Bitmap,
    /// Network, gateway, broadcast and excluded addresses: set in `used` too, and
    /// remembered here so release() refuses them.
    reserved: Bitmap,
    cursor: u32,
    allocated: u32,
    /// The pods' next hop (`spec.ipam.gateway`), never handed to a pod; none
    /// for a network without one.
    gateway: Option<IpAddr>,
    /// Workload pools' addresses in this block, when the network has pools.
    pools: Option<Box<Pooled>>,
}

/// The pools of one block: which addresses each hands out, and a second
/// `used` that also marks every pooled address, which the dynamic scan
/// searches so a pod without the pool never gets one.
#[derive(Debug, Clone)]
struct Pooled {
    members: Vec<(String, Vec<u32>)>,
    dynamic_used: Bitmap,
}

/// What [`BlockAllocator::allocate_pooled`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolTake {
    Taken(IpAddr),
    /// The pool has addresses in this block, all held.
    Full {
        size: u32,
    },
    /// The pool has no address in this block (an `ips` pool of other hosts).
    NotHere,
}

impl BlockAllocator {
    /// `excludes` may be any CIDRs; only the parts inside `block` matter.
    /// The gateway is the default one, the block's offset 1.
    pub fn new(block: IpNet, excludes: &[IpNet]) -> Self {
        Self::with_gateway(block, excludes, Gateway::default())
    }

    /// [`BlockAllocator::new`] with the network's gateway choice: its address
    /// is reserved (when it lies in the tracked addresses; beyond them no
    /// address is ever handed out anyway), and with [`Gateway::None`] no
    /// address is reserved for one.
    pub fn with_gateway(block: IpNet, excludes: &[IpNet], gateway: Gateway) -> Self {
        let bits = u32::from(block.max_prefix_len() - block.prefix_len());
        let size = if bits >= 16 { MAX_TRACKED } else { 1 << bits };
        let mut reserved = Bitmap::new(size);
        let base = to_u128(block.network());
        // The network address, and the gateway: the host side of the pod's
        // routes (none for a network without one).
        reserved.set(0);
        if let Some(off) = gateway.offset_in(block).filter(|o| *o < u128::from(size)) {
            reserved.set(off as u32);
        }
        // Broadcast, when the tracked range reaches the block's end (/16 and smaller).
        if block.addr().is_ipv4() && bits <= 16 {
            reserved.set(size - 1);
        }
        for e in excludes.iter().filter(|e| overlaps(e, &block)) {
            let start = to_u128(e.network()).max(base);
            let end = to_u128(e.broadcast()).min(to_u128(block.broadcast()));
            // Offsets as u128: an exclude beyond the tracked addresses of a
            // large IPv6 block reserves none of them (cut to u32, its offset
            // could wrap to 0 and reserve them all).
            if start - base >= u128::from(size) {
                continue;
            }
            let last = (end - base).min(u128::from(size - 1)) as u32;
            for i in (start - base) as u32..=last {
                reserved.set(i);
            }
        }
        BlockAllocator {
            block,
            base,
            used: reserved.clone(),
            reserved,
            cursor: 0,
            allocated: 0,
            pools: None,
            gateway: gateway.address(block),
        }
    }

    /// Sets the workload pools (replacing any): their addresses leave the
    /// dynamic scan and are handed out only by [`Self::allocate_pooled`].
    /// Held addresses stay held.
    pub fn set_pools(&mut self, pools: &[crate::pools::Pool]) {
        let tracked = self.used.len();
        let members: Vec<(String, Vec<u32>)> = pools
            .iter()
            .map(|p| (p.name.clone(), p.offsets_in(self.block, tracked)))
            .filter(|(_, offs)| !offs.is_empty())
            .collect();
        if members.is_empty() {
            self.pools = None;
            return;
        }
        let mut dynamic_used = self.used.clone();
        for i in members.iter().flat_map(|(_, o)| o) {
            dynamic_used.set(*i);
        }
        self.pools = Some(Box::new(Pooled {
            members,
            dynamic_used,
        }));
    }

    /// Whether `addr` belongs to a pool here.
    pub fn is_pooled(&self, addr: IpAddr) -> bool {
        let Ok(i) = self.offset_of(addr) else {
            return false;
        };
        self.pools
            .as_ref()
            .is_some_and(|p| p.members.iter().any(|(_, o)| o.binary_search(&i).is_ok()))
    }

    /// The first free address of pool `name` in this block.
    pub fn allocate_pooled(&mut self, name: &str) -> PoolTake {
        let Some(offsets) = self
            .pools
            .as_ref()
            .and_then(|p| p.members.iter().find(|(n, _)| n == name))
            .map(|(_, o)| o)
        else {
            return PoolTake::NotHere;
        };
        let size = offsets.len() as u32;
        let Some(i) = offsets
            .iter()
            .copied()
            .find(|i| !self.used.get(*i) && !self.reserved.get(*i))
        else {
            return PoolTake::Full { size };
        };
        self.mark(i);
        PoolTake::Taken(self.addr_at(i))
    }

    /// The first address of `list` in this block that is free (Kube-OVN's
    /// `ip_pool` annotation), or None.
    pub fn allocate_listed(&mut self, list: &[IpAddr]) -> Option<IpAddr> {
        let i = list
            .iter()
            .filter_map(|a| self.offset_of(*a).ok())
            .find(|i| !self.used.get(*i) && !self.reserved.get(*i))?;
        self.mark(i);
        Some(self.addr_at(i))
    }

    fn mark(&mut self, i: u32) {
        self.used.set(i);
        if let Some(p) = self.pools.as_mut() {
            p.dynamic_used.set(i);
        }
        self.allocated += 1;
    }

    pub fn block(&self) -> IpNet {
        self.block
    }

    /// The address pods use as next hop; never handed to a pod. None when
    /// the network has no gateway (`spec.ipam.gateway: none`).
    pub fn gateway(&self) -> Option<IpAddr> {
        self.gateway
    }

    pub fn allocated(&self) -> u32 {
        self.allocated
    }

    pub fn free(&self) -> u32 {
        self.used.len() - self.used.count_ones()
    }

    /// The next free address after the last one handed out, or None when full.
    pub fn allocate(&mut self) -> Option<IpAddr> {
        let scan = self.pools.as_ref().map_or(&self.used, |p| &p.dynamic_used);
        let i = scan.first_clear_wrapping(self.cursor)?;
        self.mark(i);
        self.cursor = i + 1;
        Some(self.addr_at(i))
    }

    /// The last address handed out, so a restarted owner can `resume_after` it and
    /// keep delayed reuse across restarts.
    pub fn last_allocated(&self) -> Option<IpAddr> {
        self.cursor.checked_sub(1).map(|i| self.addr_at(i))
    }

    /// Continues allocating after `addr` (restoring the cursor after a restart).
    /// Addresses outside the block are ignored.
    pub fn resume_after(&mut self, addr: IpAddr) {
        if let Ok(i) = self.offset_of(addr) {
            self.cursor = i + 1;
        }
    }

    /// Marks a specific address as allocated (restoring state, or a static request).
    pub fn allocate_specific(&mut self, addr: IpAddr) -> Result<()> {
        let i = self.offset_of(addr)?;
        if self.reserved.get(i) {
            return Err(CoreError::Reserved {
                addr: addr.to_string(),
                block: self.block.to_string(),
            });
        }
        if self.used.get(i) {
            return Err(CoreError::InUse {
                addr: addr.to_string(),
                block: self.block.to_string(),
            });
        }
        self.mark(i);
        Ok(())
    }

    /// Releases `addr`. Returns false when it was not allocated (a repeated DEL).
    pub fn release(&mut self, addr: IpAddr) -> bool {
        match self.offset_of(addr) {
            Ok(i) if self.used.get(i) && !self.reserved.get(i) => {
                self.used.clear(i);
                if let Some(p) = self.pools.as_mut() {
                    if !p.members.iter().any(|(_, o)| o.binary_search(&i).is_ok()) {
                        p.dynamic_used.clear(i);
                    }
                }
                self.allocated -= 1;
                true
            }
            _ => false,
        }
    }

    pub fn is_allocated(&self, addr: IpAddr) -> bool {
        self.offset_of(addr)
            .is_ok_and(|i| self.used.get(i) && !self.reserved.get(i))
    }

    /// Whether `addr` lies in the addresses this allocator tracks (the whole
    /// block, or the first [`MAX_TRACKED`] of a larger one).
    pub fn tracks(&self, addr: IpAddr) -> bool {
        self.offset_of(addr).is_ok()
    }

    fn offset_of(&self, addr: IpAddr) -> Result<u32> {
        let outside = || CoreError::OutsideBlock {
            addr: addr.to_string(),
            block: self.block.to_string(),
        };
        if !self.block.contains(&addr) {
            return Err(outside());
        }
        u32::try_from(to_u128(addr) - self.base)
            .ok()
            .filter(|i| *i < self.used.len())
            .ok_or_else(outside)
    }

    fn addr_at(&self, i: u32) -> IpAddr {
        from_u128(self.base + u128::from(i), self.block.addr().is_ipv4())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the network_spec fuzz target: an IPv6 exclude 2^64 addresses
    /// into a block had its offset cut to u32 (0), which reserved every
    /// tracked address, so the whole block read as exhausted.
    #[test]
    fn an_exclude_beyond_the_tracked_addresses_reserves_none_of_them() {
        let block: IpNet = "fd10::/56".parse().unwrap();
        for far in ["fd10:0:0:1::/64", "fd10:0:0:1::1:0/112", "fd10::1:0:0:0/80"] {
            let mut a = BlockAllocator::new(block, &[far.parse().unwrap()]);
            assert_eq!(a.free(), MAX_TRACKED - 2, "{far}");
            assert_eq!(a.allocate(), Some("fd10::2".parse().unwrap()), "{far}");
        }
        // One that starts inside the tracked range still reserves its part.
        let near: IpNet = "fd10::ff00/120".parse().unwrap();
        let a = BlockAllocator::new(block, &[near]);
        assert_eq!(a.free(), MAX_TRACKED - 2 - 256);
    }
}
