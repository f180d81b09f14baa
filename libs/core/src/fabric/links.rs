//! A routed host's links to its leaves, and its routes through them.
//!
//! On a routed rail a peer's NIC address is not on-link, so the route to a
//! peer's block goes through the host's *own* leaf on that rail: the other end
//! of the host's link. The routes still come from the plan (`desired_routes`,
//! protocol 167, diffed as ever); only their next hop changes. Keeping them
//! plan-driven rather than learned over BGP means the planner's guarantees
//! (one owner per block, grace periods, departed hosts routeless) hold on a
//! routed fabric unchanged, and a leaf cannot steer the host's traffic.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::Fabric;
use crate::ifname::IfName;
use crate::inventory::HostInventory;
use crate::plan::{Block, Plan};
use crate::routes::{desired_routes, Route};

/// One of the host's links to a leaf: the NIC, the host's address on the
/// link (with the link's prefix) and the leaf's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoutedLink {
    pub nic: IfName,
    pub address: IpNet,
    pub gateway: IpAddr,
}

impl RoutedLink {
    pub fn is_v4(&self) -> bool {
        self.address.addr().is_ipv4()
    }
}

/// Why a routed block's NIC gives no link: reported on every pass, and the
/// block's rail gets no routes and no session on this host until it is fixed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkProblem {
    /// The plan's next hop is not an address the NIC holds now (it changed
    /// since the registration the plan was made from).
    NoAddress { nic: IfName, address: IpAddr },
    /// The link has no gateway railyard can name.
    NoGateway {
        nic: IfName,
        address: IpNet,
        reason: String,
    },
}

impl fmt::Display for LinkProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkProblem::NoAddress { nic, address } => write!(
                f,
                "{nic}: the plan's address {address} is not on the NIC; no routes or BGP through it"
            ),
            LinkProblem::NoGateway {
                nic,
                address,
                reason,
            } => write!(f, "{nic}: link {address}: {reason}"),
        }
    }
}

/// The leaf's address on the host's link `link` (the host's address with the
/// link's prefix): the other end of a /31 (RFC 3021) or /127, else the
/// link's first host address, where a leaf's interface usually is. Refused,
/// never guessed, when the link has no other address or the host holds the
/// one railyard would pick.
pub fn leaf_gateway(link: IpNet) -> Result<IpAddr, String> {
    let (bits, addr, net) = match link {
        IpNet::V4(n) => (
            32u8,
            u128::from(n.addr().to_bits()),
            u128::from(n.network().to_bits()),
        ),
        IpNet::V6(n) => (128u8, n.addr().to_bits(), n.network().to_bits()),
    };
    let back = |v: u128| match link {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(v as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(v)),
    };
    let prefix = link.prefix_len();
    if prefix == bits {
        return Err(format!(
            "a /{prefix} has no other address; a routed link needs a /{} or wider, the leaf at the other end",
            bits - 1
        ));
    }
    if prefix == bits - 1 {
        return Ok(back(addr ^ 1));
    }
    if addr == net {
        return Err("the host holds the link's network address".into());
    }
    let first = net + 1;
    if addr == first {
        return Err(format!(
            "the host holds the link's first address {}, where railyard expects its leaf; give the host another address or use a /{}",
            back(first),
            bits - 1
        ));
    }
    Ok(back(first))
}

/// The links under the host's routed blocks. `blocks` are this host's blocks
/// of routed networks (any number of networks), `addresses` every address the
/// host's NICs hold now, with its prefix (discovery's inventory). One link
/// per (NIC, address), sorted; problems sorted and deduplicated too.
pub fn routed_links(
    blocks: &[Block],
    addresses: &[(IfName, IpNet)],
) -> (Vec<RoutedLink>, Vec<LinkProblem>) {
    let mut links = Vec::new();
    let mut problems = Vec::new();
    for b in blocks {
        let held = addresses
            .iter()
            .find(|(nic, net)| *nic == b.nic && net.addr() == b.nic_address);
        match held {
            None => problems.push(LinkProblem::NoAddress {
                nic: b.nic,
                address: b.nic_address,
            }),
            Some((nic, net)) => match leaf_gateway(*net) {
                Ok(gateway) => links.push(RoutedLink {
                    nic: *nic,
                    address: *net,
                    gateway,
                }),
                Err(reason) => problems.push(LinkProblem::NoGateway {
                    nic: *nic,
                    address: *net,
                    reason,
                }),
            },
        }
    }
    links.sort();
    links.dedup();
    problems.sort();
    problems.dedup();
    (links, problems)
}

/// `routes` (from `desired_routes`) with each next hop replaced by the leaf
/// of its device and family. Routes whose device has no link of that family
/// are returned apart (the second list), so the caller reports them instead of
/// routing to a peer's address that is not on-link. The order is kept, so
/// sorted input stays sorted (the next hop is not part of a route's key).
pub fn route_via_leaves(routes: Vec<Route>, links: &[RoutedLink]) -> (Vec<Route>, Vec<Route>) {
    let mut kept = Vec::with_capacity(routes.len());
    let mut dropped = Vec::new();
    for mut r in routes {
        let v4 = r.dst.addr().is_ipv4();
        match links.iter().find(|l| l.nic == r.dev && l.is_v4() == v4) {
            Some(link) => {
                r.gateway = link.gateway;
                kept.push(r);
            }
            None => dropped.push(r),
        }
    }
    (kept, dropped)
}

/// Every address of a host's NICs with its prefix, as [`routed_links`]
/// takes them. Names the kernel would refuse are left out.
pub fn inventory_addresses(host: &HostInventory) -> Vec<(IfName, IpNet)> {
    host.nics
        .iter()
        .filter_map(|n| Some((IfName::new(&n.name).ok()?, &n.addresses)))
        .flat_map(|(name, addrs)| addrs.iter().map(move |a| (name, *a)))
        .collect()
}

/// The routes host `me` holds for a network of `fabric` in `table`:
/// `desired_routes`, and on a routed fabric through the host's own leaves
/// (its link addresses in `addresses`; a rail without one has no route).
/// What the route-daemon programs, for displays and checks outside it.
pub fn host_routes(
    plan: &Plan,
    fabric: Fabric,
    me: &str,
    table: u32,
    addresses: &[(IfName, IpNet)],
) -> Vec<Route> {
    own_leaf_routes(plan, fabric, me, desired_routes(plan, me, table), addresses).0
}

/// `routes` of host `me` (from `desired_routes` on `plan`) as it sends them:
/// unchanged on an l2 fabric; on a routed one through its own leaf, over the
/// links its `addresses` give its blocks' NICs. Second: the routes left out
/// because their NIC has no usable link (none on l2).
pub fn own_leaf_routes(
    plan: &Plan,
    fabric: Fabric,
    me: &str,
    routes: Vec<Route>,
    addresses: &[(IfName, IpNet)],
) -> (Vec<Route>, Vec<Route>) {
    if !fabric.is_routed() {
        return (routes, Vec::new());
    }
    let mine = plan
        .hosts
        .get(me)
        .map(|h| h.blocks.as_slice())
        .unwrap_or_default();
    let (links, _) = routed_links(mine, addresses);
    route_via_leaves(routes, &links)
}
