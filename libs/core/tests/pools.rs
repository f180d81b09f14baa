//! Workload pools: validation names the field, and the allocator keeps every
//! pooled address away from pods without the pool (example and property).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use railyard_core::alloc::PoolTake;
use railyard_core::pools::{Pool, PoolMembers};
use railyard_core::{BlockAllocator, NetworkManifest};

fn pools_of(ipam: &str) -> Result<Vec<Pool>, String> {
    let yaml = format!(
        "metadata: {{name: net-a}}\nspec:\n  subnet: 192.168.0.0/16,fd00:200::/48\n  ipam: {ipam}\n"
    );
    let m: NetworkManifest = serde_yaml::from_str(&yaml).map_err(|e| e.to_string())?;
    let net = m.validate().map_err(|e| e.to_string())?;
    net.spec
        .pools(&net.subnets, net.interface_block, net.host_block)
        .map_err(|e| e.to_string())
}

const BLOCKS: &str = "hostBlock: 8, interfaceBlock: 2";

#[test]
fn offsets_and_address_pools_are_read() {
    let pools = pools_of(&format!(
        "{{{BLOCKS}, pools: [{{name: db, offsets: \"10-19\"}}, {{name: lic, ips: [\"192.168.0.40..192.168.0.41\", \"192.168.1.50\"]}}]}}"
    ))
    .unwrap();
    assert_eq!(pools.len(), 2);
    assert_eq!(
        pools[0].members,
        PoolMembers::Offsets {
            first: 10,
            last: 19
        }
    );
    let block: IpNet = "192.168.0.0/26".parse().unwrap();
    assert_eq!(
        pools[0].offsets_in(block, 64),
        (10..=19).collect::<Vec<_>>()
    );
    assert_eq!(pools[1].offsets_in(block, 64), vec![40, 41]);
    let other: IpNet = "192.168.1.0/26".parse().unwrap();
    assert_eq!(pools[1].offsets_in(other, 64), vec![50]);
}

#[test]
fn bad_pools_are_refused_naming_the_field_and_value() {
    let cases = [
        ("[{name: Db, offsets: \"1-2\"}]", "spec.ipam.pools[0].name"),
        (
            "[{name: a, offsets: \"2-1\"}]",
            "spec.ipam.pools[0].offsets",
        ),
        (
            "[{name: a, offsets: \"0-3\"}]",
            "spec.ipam.pools[0].offsets",
        ),
        // A /26 host block (16 - 2 - 8 = 6 bits) has 64 addresses; 63 is broadcast.
        ("[{name: a, offsets: \"10-63\"}]", "10-63"),
        (
            "[{name: a, offsets: \"ten\"}]",
            "spec.ipam.pools[0].offsets",
        ),
        ("[{name: a}]", "spec.ipam.pools[0].ips"),
        (
            "[{name: a, offsets: \"1-2\", ips: [\"192.168.0.9\"]}]",
            "not both",
        ),
        (
            "[{name: a, ips: [\"10.0.0.1\"]}]",
            "spec.ipam.pools[0].ips[0]",
        ),
        ("[{name: a, ips: [\"nope\"]}]", "spec.ipam.pools[0].ips[0]"),
        (
            "[{name: a, offsets: \"1-2\"}, {name: a, offsets: \"3-4\"}]",
            "spec.ipam.pools[1].name",
        ),
        (
            "[{name: a, offsets: \"5-9\"}, {name: b, offsets: \"9-12\"}]",
            "shares offset 9 with pool \"a\"",
        ),
        (
            "[{name: a, offsets: \"5-9\"}, {name: b, ips: [\"192.168.3.70\"]}]",
            "shares 192.168.3.70 with pool \"a\"",
        ),
        (
            "[{name: a, ips: [\"192.168.0.0/30\"]}, {name: b, ips: [\"192.168.0.2\"]}]",
            "shares 192.168.0.2",
        ),
    ];
    for (pools, needle) in cases {
        let err = pools_of(&format!("{{{BLOCKS}, pools: {pools}}}"))
            .expect_err(&format!("{pools} must be refused"));
        assert!(err.contains(needle), "{pools}: {err:?} lacks {needle:?}");
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn pooled_addresses_go_only_to_their_pool() {
    let block: IpNet = "10.0.0.0/28".parse().unwrap();
    let pool = Pool {
        name: "db".into(),
        members: PoolMembers::Offsets { first: 2, last: 3 },
    };
    let mut a = BlockAllocator::new(block, &[]);
    a.set_pools(std::slice::from_ref(&pool));
    assert!(a.is_pooled(ip("10.0.0.2")));
    // Dynamic pods skip 2 and 3.
    assert_eq!(a.allocate(), Some(ip("10.0.0.4")));
    assert_eq!(a.allocate_pooled("db"), PoolTake::Taken(ip("10.0.0.2")));
    assert_eq!(a.allocate_pooled("db"), PoolTake::Taken(ip("10.0.0.3")));
    assert_eq!(a.allocate_pooled("db"), PoolTake::Full { size: 2 });
    assert_eq!(a.allocate_pooled("web"), PoolTake::NotHere);
    // Released, a pooled address goes back to the pool, never to the scan.
    assert!(a.release(ip("10.0.0.2")));
    while a.allocate().is_some() {}
    assert!(!a.is_allocated(ip("10.0.0.2")));
    assert_eq!(a.allocate_pooled("db"), PoolTake::Taken(ip("10.0.0.2")));
    // A listed address is taken only when free.
    let mut b = BlockAllocator::new(block, &[]);
    b.allocate_specific(ip("10.0.0.5")).unwrap();
    assert_eq!(
        b.allocate_listed(&[ip("10.0.0.5"), ip("10.0.0.6")]),
        Some(ip("10.0.0.6"))
    );
    assert_eq!(b.allocate_listed(&[ip("10.0.0.5"), ip("10.9.0.6")]), None);
}

#[derive(Debug, Clone)]
enum Op {
    Dynamic,
    Pooled(usize),
    Static(u8),
    Release(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Dynamic),
        3 => (0usize..3).prop_map(Op::Pooled),
        1 => (0u8..64).prop_map(Op::Static),
        3 => (0u8..64).prop_map(Op::Release),
    ]
}

proptest! {
    /// Whatever the order of dynamic, pooled and static allocations and
    /// releases: a dynamic pod never gets a pooled address, a pool only its
    /// own, and no address is held twice.
    #[test]
    fn pools_never_leak_or_share(ops in prop::collection::vec(op(), 1..300)) {
        let block: IpNet = "10.0.0.0/26".parse().unwrap();
        let pools = vec![
            Pool { name: "p0".into(), members: PoolMembers::Offsets { first: 8, last: 15 } },
            Pool { name: "p1".into(), members: PoolMembers::Addresses(vec!["10.0.0.40/30".parse().unwrap()]) },
            Pool { name: "p2".into(), members: PoolMembers::Offsets { first: 60, last: 62 } },
        ];
        let mut a = BlockAllocator::new(block, &[]);
        a.set_pools(&pools);
        let member = |p: &Pool, addr: IpAddr| {
            let IpAddr::V4(v) = addr else { unreachable!("an IPv4 block") };
            p.offsets_in(block, 64).contains(&(u32::from(v) & 63))
        };
        let mut held: BTreeSet<IpAddr> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Dynamic => if let Some(x) = a.allocate() {
                    prop_assert!(!pools.iter().any(|p| member(p, x)), "dynamic got pooled {}", x);
                    prop_assert!(held.insert(x), "{} twice", x);
                },
                Op::Pooled(k) => if let PoolTake::Taken(x) = a.allocate_pooled(&pools[k].name) {
                    prop_assert!(member(&pools[k], x), "{} not in {}", x, pools[k].name);
                    prop_assert!(held.insert(x), "{} twice", x);
                },
                Op::Static(i) => {
                    let x = ip(&format!("10.0.0.{i}"));
                    if a.allocate_specific(x).is_ok() {
                        prop_assert!(held.insert(x), "{} twice", x);
                    }
                }
                Op::Release(i) => {
                    let x = ip(&format!("10.0.0.{i}"));
                    prop_assert_eq!(a.release(x), held.remove(&x));
                }
            }
            prop_assert_eq!(a.allocated() as usize, held.len());
        }
    }
}
