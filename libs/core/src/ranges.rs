//! Address ranges as Kube-OVN writes excludes (`192.168.0.1..192.168.0.10`),
//! turned into the fewest CIDRs that cover exactly the range.
//!
//! Why CIDRs: everything downstream (the layout's whole-index exclusion, the
//! block allocators' reserved bits, the daemon's `NetworkConfig.excludes`)
//! already works on CIDRs, so a range costs nothing new there; a range of n
//! addresses needs at most about 2·log2(n) CIDRs.

use std::net::IpAddr;

use ipnet::IpNet;

/// One `excludeIPs` entry: an address, a CIDR, or `first..last` (inclusive,
/// one family, first <= last). The error says what is wrong with it.
pub fn parse_exclude(entry: &str) -> Result<Vec<IpNet>, String> {
    let text = entry.trim();
    if let Some((a, b)) = text.split_once("..") {
        let first: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{:?} before `..` is not an IP address", a.trim()))?;
        let last: IpAddr = b
            .trim()
            .parse()
            .map_err(|_| format!("{:?} after `..` is not an IP address", b.trim()))?;
        return range_to_cidrs(first, last);
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(vec![net.trunc()]);
    }
    let addr: IpAddr = text.parse().map_err(|_| {
        "is not an address, a CIDR or a range (like 192.168.0.1..192.168.0.10)".to_string()
    })?;
    Ok(vec![IpNet::from(addr)])
}

/// The fewest CIDRs covering exactly `first..=last`, in address order.
pub fn range_to_cidrs(first: IpAddr, last: IpAddr) -> Result<Vec<IpNet>, String> {
    let (lo, hi, bits) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return Err(format!("{first}..{last} mixes IPv4 and IPv6")),
    };
    if lo > hi {
        return Err(format!("{first}..{last} ends before it starts"));
    }
    let mut out = Vec::new();
    let mut at = lo;
    loop {
        // The largest aligned block starting at `at` that stays within `hi`.
        let align = if at == 0 {
            bits
        } else {
            at.trailing_zeros().min(bits)
        };
        let mut size_bits = align;
        while size_bits > 0 && block_end(at, size_bits).is_none_or(|end| end > hi) {
            size_bits -= 1;
        }
        let prefix = u8::try_from(bits - size_bits).unwrap_or(0);
        let net = if bits == 32 {
            let a = std::net::Ipv4Addr::from(u32::try_from(at).unwrap_or(u32::MAX));
            IpNet::new(IpAddr::V4(a), prefix)
        } else {
            IpNet::new(IpAddr::V6(at.into()), prefix)
        }
        .map_err(|e| e.to_string())?;
        out.push(net);
        match block_end(at, size_bits) {
            Some(end) if end < hi => at = end + 1,
            _ => break,
        }
    }
    Ok(out)
}

/// The last address of the block of 2^`size_bits` addresses starting at `at`.
fn block_end(at: u128, size_bits: u32) -> Option<u128> {
    let len = if size_bits >= 128 {
        None
    } else {
        Some(1u128 << size_bits)
    };
    match len {
        Some(len) => at.checked_add(len - 1),
        None => (at == 0).then_some(u128::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidrs(a: &str, b: &str) -> Vec<String> {
        range_to_cidrs(a.parse().unwrap(), b.parse().unwrap())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn ranges_become_the_fewest_aligned_cidrs() {
        assert_eq!(
            cidrs("192.168.0.1", "192.168.0.10"),
            [
                "192.168.0.1/32",
                "192.168.0.2/31",
                "192.168.0.4/30",
                "192.168.0.8/31",
                "192.168.0.10/32"
            ]
        );
        assert_eq!(cidrs("10.0.0.0", "10.0.0.255"), ["10.0.0.0/24"]);
        assert_eq!(cidrs("10.0.0.7", "10.0.0.7"), ["10.0.0.7/32"]);
        assert_eq!(cidrs("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(cidrs("fd00::", "fd00::ff"), ["fd00::/120"]);
        assert_eq!(
            cidrs("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ["::/0"]
        );
    }

    #[test]
    fn entries_are_addresses_cidrs_or_ranges_and_errors_say_why() {
        assert_eq!(
            parse_exclude("10.0.0.5").unwrap(),
            ["10.0.0.5/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            parse_exclude("10.0.0.5/24").unwrap(),
            ["10.0.0.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(parse_exclude(" 10.0.0.1 .. 10.0.0.2 ").unwrap().len(), 2);
        assert!(parse_exclude("10.0.0.9..10.0.0.1")
            .unwrap_err()
            .contains("ends before"));
        assert!(parse_exclude("10.0.0.1..fd00::1")
            .unwrap_err()
            .contains("mixes"));
        assert!(parse_exclude("10.0.0.1..x")
            .unwrap_err()
            .contains("after `..`"));
        assert!(parse_exclude("ten").unwrap_err().contains("range"));
    }

    proptest! {
        /// The CIDRs are aligned, in order, adjacent, and cover exactly the range.
        #[test]
        fn cidrs_cover_exactly_the_range(lo in any::<u32>(), len in 0u32..100_000) {
            let hi = lo.saturating_add(len);
            let nets = range_to_cidrs(
                IpAddr::V4(lo.into()),
                IpAddr::V4(hi.into()),
            ).unwrap();
            let mut next = u64::from(lo);
            for n in &nets {
                let IpNet::V4(n) = n else { panic!("family") };
                prop_assert_eq!(u64::from(u32::from(n.network())), next);
                prop_assert_eq!(n.network(), n.addr());
                next = u64::from(u32::from(n.broadcast())) + 1;
            }
            prop_assert_eq!(next, u64::from(hi) + 1);
            prop_assert!(nets.len() <= 64);
        }
    }
}
