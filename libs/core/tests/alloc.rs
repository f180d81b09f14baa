use std::collections::HashSet;
use std::net::IpAddr;

use railyard_core::{BlockAllocator, CoreError, Gateway};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn reserves_network_gateway_and_broadcast() {
    let mut a = BlockAllocator::new("192.168.1.0/29".parse().unwrap(), &[]);
    assert_eq!(a.gateway(), Some(ip("192.168.1.1")));
    let got: Vec<IpAddr> = std::iter::from_fn(|| a.allocate()).collect();
    let want: Vec<IpAddr> = (2..=6).map(|i| ip(&format!("192.168.1.{i}"))).collect();
    assert_eq!(got, want);
    assert_eq!(a.free(), 0);
    assert!(a.allocate().is_none());
}

#[test]
fn next_after_last_with_wrap_delays_reuse() {
    let mut a = BlockAllocator::new("10.1.0.0/28".parse().unwrap(), &[]);
    let first = a.allocate().unwrap();
    let second = a.allocate().unwrap();
    assert!(a.release(first));
    // The released address is not handed out again until the cursor wraps.
    let third = a.allocate().unwrap();
    assert_ne!(third, first);
    assert!(third > second);
    while a.allocate().is_some() {}
    assert!(a.release(first));
    assert_eq!(a.allocate(), Some(first));
}

#[test]
fn excludes_inside_the_block_are_skipped() {
    let ex = [
        "10.1.0.0/30".parse().unwrap(),
        "10.1.0.8/29".parse().unwrap(),
    ];
    let mut a = BlockAllocator::new("10.1.0.0/28".parse().unwrap(), &ex);
    let got: Vec<IpAddr> = std::iter::from_fn(|| a.allocate()).collect();
    assert_eq!(
        got,
        (4..=7)
            .map(|i| ip(&format!("10.1.0.{i}")))
            .collect::<Vec<_>>()
    );
}

#[test]
fn specific_allocation_and_release_are_checked() {
    let mut a = BlockAllocator::new("10.1.0.0/24".parse().unwrap(), &[]);
    a.allocate_specific(ip("10.1.0.50")).unwrap();
    assert!(matches!(
        a.allocate_specific(ip("10.1.0.50")),
        Err(CoreError::InUse { .. })
    ));
    assert!(matches!(
        a.allocate_specific(ip("10.1.0.1")),
        Err(CoreError::Reserved { .. })
    ));
    assert!(matches!(
        a.allocate_specific(ip("10.2.0.5")),
        Err(CoreError::OutsideBlock { .. })
    ));
    assert!(a.is_allocated(ip("10.1.0.50")));
    assert!(
        !a.release(ip("10.1.0.1")),
        "reserved addresses are never released"
    );
    assert!(a.release(ip("10.1.0.50")));
    assert!(!a.release(ip("10.1.0.50")), "a second release is a no-op");
    assert_eq!(a.allocated(), 0);
}

#[test]
fn large_ipv6_block_tracks_its_first_65536_addresses() {
    let mut a = BlockAllocator::new("fd00::/64".parse().unwrap(), &[]);
    assert_eq!(a.gateway(), Some(ip("fd00::1")));
    assert_eq!(a.allocate(), Some(ip("fd00::2")));
    assert_eq!(a.free(), 65_536 - 3);
    let mut seen = HashSet::new();
    while let Some(x) = a.allocate() {
        assert!(seen.insert(x));
    }
    assert_eq!(seen.len(), 65_536 - 3);
}

#[test]
fn a_slash_16_block_reserves_its_broadcast() {
    let a = BlockAllocator::new("10.7.0.0/16".parse().unwrap(), &[]);
    assert_eq!(a.free(), 65_536 - 3);
    let mut b = a.clone();
    assert!(matches!(
        b.allocate_specific(ip("10.7.255.255")),
        Err(CoreError::Reserved { .. })
    ));
}

#[test]
fn the_cursor_survives_a_restart() {
    let mut a = BlockAllocator::new("10.1.0.0/24".parse().unwrap(), &[]);
    for _ in 0..5 {
        a.allocate();
    }
    let last = a.last_allocated().unwrap();
    assert_eq!(last, ip("10.1.0.6"));
    let mut restarted = BlockAllocator::new("10.1.0.0/24".parse().unwrap(), &[]);
    restarted.resume_after(last);
    assert_eq!(restarted.allocate(), Some(ip("10.1.0.7")));
}

#[test]
fn a_chosen_gateway_is_reserved_and_offset_1_is_then_a_pods() {
    let block = "192.168.1.0/29".parse().unwrap();
    let mut a = BlockAllocator::with_gateway(block, &[], Gateway::Offset(-2));
    assert_eq!(a.gateway(), Some(ip("192.168.1.6")));
    let got: Vec<IpAddr> = std::iter::from_fn(|| a.allocate()).collect();
    let want: Vec<IpAddr> = (1..=5).map(|i| ip(&format!("192.168.1.{i}"))).collect();
    assert_eq!(got, want);
    assert!(matches!(
        a.allocate_specific(ip("192.168.1.6")),
        Err(CoreError::Reserved { .. })
    ));
    // The default is today's: offset 1, exactly as `new` does.
    let d = BlockAllocator::with_gateway(block, &[], Gateway::default());
    assert_eq!(d.gateway(), BlockAllocator::new(block, &[]).gateway());
    assert_eq!(d.free(), 5);
}

#[test]
fn without_a_gateway_nothing_is_reserved_for_one() {
    let mut a = BlockAllocator::with_gateway("192.168.1.0/29".parse().unwrap(), &[], Gateway::None);
    assert_eq!(a.gateway(), None);
    assert_eq!(a.free(), 6);
    let got: Vec<IpAddr> = std::iter::from_fn(|| a.allocate()).collect();
    let want: Vec<IpAddr> = (1..=6).map(|i| ip(&format!("192.168.1.{i}"))).collect();
    assert_eq!(got, want);
    let mut v6 = BlockAllocator::with_gateway("fd00::/120".parse().unwrap(), &[], Gateway::None);
    assert_eq!(v6.allocate(), Some(ip("fd00::1")));
    // A gateway beyond the tracked addresses of a large IPv6 block is never
    // handed out either (nothing beyond them is).
    let mut far =
        BlockAllocator::with_gateway("fd00::/64".parse().unwrap(), &[], Gateway::Offset(-1));
    assert_eq!(far.gateway(), Some(ip("fd00::ffff:ffff:ffff:ffff")));
    assert_eq!(far.allocate(), Some(ip("fd00::1")));
    assert_eq!(far.free(), 65_536 - 2);
}
