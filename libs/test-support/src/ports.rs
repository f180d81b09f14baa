//! Loopback ports for servers a test starts later (etcd, kube-apiserver, a
//! metrics listener).
//!
//! Why not bind port 0 and hand that port on: the kernel picks it from the
//! ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 by default),
//! the same range every outgoing connection on the machine takes its source
//! port from. Between the probe closing and the server binding, a client
//! socket of a test running beside it can take the port, and the server fails
//! with "address already in use" (an e2e etcd's peer port did exactly this in
//! CI). Ports handed out here lie below that range, where no outgoing
//! connection lands, and come from one cursor per process, so two tests of one
//! binary never get the same port; processes start their cursors apart (by
//! pid), and every port is checked bindable before it is handed out.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The range ports are handed out from: registered ports below the default
/// ephemeral range.
const FIRST: u32 = 20_000;
const END: u32 = 32_000;
const SPAN: u32 = END - FIRST;

/// A free loopback port no other caller in this process has been given.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive free loopback ports (etcd's client and peer
/// ports are `p` and `p + 1` in the local cluster). Panics, naming the range,
/// when no run of `n` is free: a test cannot go on without its server.
pub fn free_ports(n: u16) -> u16 {
    try_free_ports(n)
        .unwrap_or_else(|| panic!("no {n} consecutive free loopback ports in {FIRST}..{END}"))
}

/// [`free_ports`], or `None` when every candidate run is taken.
pub fn try_free_ports(n: u16) -> Option<u16> {
    let n = u32::from(n.max(1));
    let cursor = cursor();
    for _ in 0..SPAN / n {
        let offset = cursor.fetch_add(n, Ordering::Relaxed) % SPAN;
        if offset + n > SPAN {
            continue; // a run never wraps past the end of the range
        }
        let first = FIRST + offset;
        let bindable = (first..first + n).all(|p| {
            u16::try_from(p).is_ok_and(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok())
        });
        if bindable {
            return u16::try_from(first).ok();
        }
    }
    None
}

/// This process's cursor, started at a pid-derived offset so that test
/// binaries running at once hand out different ports.
fn cursor() -> &'static AtomicU32 {
    static CURSOR: OnceLock<AtomicU32> = OnceLock::new();
    CURSOR.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(997) % SPAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let p = free_ports(2);
            assert!((FIRST..END - 1).contains(&u32::from(p)), "{p}");
            assert!(seen.insert(p) && seen.insert(p + 1), "{p} handed out twice");
        }
    }

    #[test]
    fn a_port_in_use_is_skipped() {
        let p = free_port();
        let _held = TcpListener::bind((Ipv4Addr::LOCALHOST, p)).expect("bind the port handed out");
        // Walk the cursor once around the range: `p` may come up again, and
        // must not be handed out while it is held.
        for _ in 0..SPAN {
            if let Some(q) = try_free_ports(1) {
                assert_ne!(q, p, "a held port was handed out");
            }
        }
    }
}
