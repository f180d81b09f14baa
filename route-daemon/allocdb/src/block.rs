//! One host block: the core's [`BlockAllocator`] plus what the engine needs around
//! it (the plan's block, whether the plan still has it, the last address handed
//! out).

use std::net::IpAddr;

use ipnet::IpNet;
use railyard_core::alloc::MAX_TRACKED;
use railyard_core::{Block, BlockAllocator, CoreError, Gateway};

#[derive(Debug, Clone)]
pub(crate) struct BlockState {
    pub block: Block,
    pub alloc: BlockAllocator,
    /// False once the plan dropped the block: it serves no new allocation and
    /// disappears when its last address is released.
    pub in_plan: bool,
    /// The last address handed out, so delayed reuse survives a restart.
    pub last: Option<IpAddr>,
    /// The family's position in the network's subnets (0 = primary), which orders
    /// a pod's addresses the same way the plan orders families.
    pub family: usize,
}

impl BlockState {
    pub fn new(block: Block, excludes: &[IpNet], gateway: Gateway, family: usize) -> Self {
        BlockState {
            alloc: BlockAllocator::with_gateway(block.cidr, excludes, gateway),
            block,
            in_plan: true,
            last: None,
            family,
        }
    }

    pub fn cidr(&self) -> IpNet {
        self.block.cidr
    }

    /// A new address, next after the last one handed out.
    pub fn take(&mut self) -> Option<IpAddr> {
        let a = self.alloc.allocate()?;
        self.last = Some(a);
        Some(a)
    }

    /// Marks an address from the log as held.
    pub fn claim(&mut self, addr: IpAddr) -> Result<(), CoreError> {
        self.alloc.allocate_specific(addr)?;
        self.last = Some(addr);
        Ok(())
    }

    /// Moves the allocator's cursor to just after `self.last`, in O(1)
    /// (`BlockAllocator::resume_after`): the next address handed out is the
    /// first free one after it, so delayed reuse survives a restart.
    ///
    /// When `last` has become reserved since (a new exclude), the cursor sits one
    /// free address further, as it always has; that still never reuses early.
    pub fn resume(&mut self) {
        let Some(last) = self.last else { return };
        self.alloc.resume_after(last);
        if self.reserved(last) {
            if let Some(skipped) = self.alloc.allocate() {
                self.alloc.release(skipped);
            }
        }
    }

    /// Whether `addr` is one the allocator never hands out (network, gateway,
    /// broadcast, excluded). Leaves the allocator as it was.
    fn reserved(&mut self, addr: IpAddr) -> bool {
        if self.alloc.is_allocated(addr) {
            return false;
        }
        match self.alloc.allocate_specific(addr) {
            Ok(()) => {
                self.alloc.release(addr);
                false
            }
            Err(e) => matches!(e, CoreError::Reserved { .. }),
        }
    }

    /// A new allocator for changed excludes or gateway, keeping every held
    /// address; returns the held ones that are reserved now.
    pub fn rebuild(&mut self, excludes: &[IpNet], gateway: Gateway) -> Vec<IpAddr> {
        let mut next = BlockAllocator::with_gateway(self.cidr(), excludes, gateway);
        let mut lost = Vec::new();
        for i in 0..tracked(self.cidr()) {
            let a = nth(self.cidr(), i);
            if self.alloc.is_allocated(a) && next.allocate_specific(a).is_err() {
                lost.push(a);
            }
        }
        self.alloc = next;
        self.resume();
        lost
    }
}

fn tracked(block: IpNet) -> u32 {
    let bits = u32::from(block.max_prefix_len() - block.prefix_len());
    if bits >= 16 {
        MAX_TRACKED
    } else {
        1 << bits
    }
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn nth(block: IpNet, i: u32) -> IpAddr {
    let n = to_u128(block.network()) + u128::from(i);
    match block {
        IpNet::V4(_) => IpAddr::V4((n as u32).into()),
        IpNet::V6(_) => IpAddr::V6(n.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cidr: &str) -> BlockState {
        let cidr: IpNet = cidr.parse().unwrap();
        let b = Block {
            interface: 0,
            nic: "eth0".parse().expect("valid name"),
            nic_address: "10.0.0.1".parse().unwrap(),
            cidr,
        };
        BlockState::new(b, &[], Gateway::default(), 0)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resume_continues_after_the_last_address() {
        for held in [false, true] {
            let mut b = block("10.9.0.0/28");
            b.claim(ip("10.9.0.3")).unwrap();
            b.last = Some(ip("10.9.0.7"));
            if held {
                b.claim(ip("10.9.0.7")).unwrap();
            }
            b.resume();
            assert_eq!(b.alloc.allocated(), 1 + u32::from(held));
            assert_eq!(b.alloc.is_allocated(ip("10.9.0.7")), held);
            assert_eq!(b.take(), Some(ip("10.9.0.8")));
        }
    }

    #[test]
    fn resume_in_a_large_v6_block() {
        let mut b = block("fd00::/64");
        b.last = Some(ip("fd00::ff00"));
        b.resume();
        assert_eq!(b.alloc.allocated(), 0);
        assert_eq!(b.take(), Some(ip("fd00::ff01")));
    }

    #[test]
    fn rebuild_keeps_held_addresses_and_reports_newly_reserved_ones() {
        let mut b = block("10.9.0.0/28");
        b.take();
        b.take();
        let lost = b.rebuild(&["10.9.0.3/32".parse().unwrap()], Gateway::default());
        assert_eq!(lost, [ip("10.9.0.3")]);
        assert!(b.alloc.is_allocated(ip("10.9.0.2")));
        // `last` itself is reserved now, so the cursor lands one free address later.
        assert_eq!(b.take(), Some(ip("10.9.0.5")));
    }
}
