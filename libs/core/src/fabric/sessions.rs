//! What a routed host says to its leaves: one BGP session per link (NIC and
//! family), announcing exactly the host's own blocks behind that link and
//! accepting only railyard's host blocks of the rails on it.
//!
//! Sessions are per link, not per network: two routed networks over one
//! fabric share the NIC and its leaf, and one session carries both networks'
//! blocks. They must then agree on the BGP parameters; the first network by
//! name sets them and a disagreeing one is reported, its blocks on that link
//! not announced (rather than a second session to the same neighbour, which
//! the leaf would refuse).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::links::RoutedLink;
use super::Bgp;
use crate::ifname::IfName;
use crate::plan::Plan;

/// One routed network as the host's daemon follows it: the accepted spec's
/// BGP parameters and the plan.
#[derive(Debug, Clone, Copy)]
pub struct RoutedNetwork<'a> {
    pub name: &'a str,
    pub bgp: Bgp,
    pub plan: &'a Plan,
}

/// Host blocks of one rail: `range` (the rail's share of the pod subnet)
/// split at exactly `prefix` bits. BIRD writes it `range{prefix,prefix}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AcceptRange {
    pub range: IpNet,
    pub prefix: u8,
}

impl AcceptRange {
    /// Whether `net` is one of the host blocks this range describes.
    pub fn admits(&self, net: &IpNet) -> bool {
        net.prefix_len() == self.prefix && self.range.contains(&net.network())
    }
}

/// One BGP session of the host: over `nic`, from the host's link address to
/// the leaf's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub nic: IfName,
    pub local: IpNet,
    pub neighbor: IpAddr,
    pub bgp: Bgp,
    /// The host's own blocks behind this link, sorted: all it announces.
    pub announce: Vec<IpNet>,
    /// What it accepts from the leaf, sorted (minus `announce`).
    pub accept: Vec<AcceptRange>,
}

impl Session {
    pub fn is_v4(&self) -> bool {
        self.local.addr().is_ipv4()
    }

    /// Whether a route the leaf offers passes the import filter.
    pub fn accepts(&self, net: &IpNet) -> bool {
        self.accept.iter().any(|a| a.admits(net)) && !self.announce.contains(net)
    }
}

/// A network whose blocks cannot be announced on a link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionConflict {
    pub network: String,
    pub nic: IfName,
    pub reason: String,
}

/// The sessions of host `me`, sorted by NIC then family (IPv4 first). A
/// block gets announced when the host is planned and not departed in its
/// network, and a link in `links` holds the block's next hop: the plan's NIC
/// and address. Its network is `networks`' in name order for conflicts.
pub fn sessions(
    networks: &[RoutedNetwork<'_>],
    me: &str,
    links: &[RoutedLink],
) -> (Vec<Session>, Vec<SessionConflict>) {
    let mut by_link: BTreeMap<(IfName, bool), Session> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let mut ordered: Vec<&RoutedNetwork<'_>> = networks.iter().collect();
    ordered.sort_by_key(|n| n.name);
    for net in ordered {
        let Some(host) = net.plan.hosts.get(me) else {
            continue;
        };
        if host.departed_at.is_some() {
            continue;
        }
        for b in &host.blocks {
            let v4 = b.cidr.addr().is_ipv4();
            let Some(link) = links
                .iter()
                .find(|l| l.nic == b.nic && l.address.addr() == b.nic_address)
            else {
                continue;
            };
            if !bird_safe(&b.nic) {
                conflicts.push(SessionConflict {
                    network: net.name.to_string(),
                    nic: b.nic,
                    reason: "the NIC's name has characters BIRD's configuration cannot quote (only letters, digits and . - _ @)".into(),
                });
                continue;
            }
            let session = by_link.entry((b.nic, !v4)).or_insert_with(|| Session {
                nic: b.nic,
                local: link.address,
                neighbor: link.gateway,
                bgp: net.bgp,
                announce: Vec::new(),
                accept: Vec::new(),
            });
            if session.bgp != net.bgp {
                conflicts.push(SessionConflict {
                    network: net.name.to_string(),
                    nic: b.nic,
                    reason: format!(
                        "its BGP settings (as {} to {}, hold {} s) differ from another routed network's on this link (as {} to {}, hold {} s); its blocks here are not announced",
                        net.bgp.asn, net.bgp.peer_asn, net.bgp.hold_time,
                        session.bgp.asn, session.bgp.peer_asn, session.bgp.hold_time
                    ),
                });
                continue;
            }
            session.announce.push(b.cidr);
            let rail = net
                .plan
                .interfaces
                .iter()
                .find(|i| i.index == b.interface)
                .and_then(|i| i.cidrs.iter().find(|c| c.addr().is_ipv4() == v4));
            if let Some(range) = rail {
                session.accept.push(AcceptRange {
                    range: *range,
                    prefix: b.cidr.prefix_len(),
                });
            }
        }
    }
    let sessions = by_link
        .into_values()
        .map(|mut s| {
            s.announce.sort();
            s.announce.dedup();
            s.accept.sort();
            s.accept.dedup();
            s
        })
        .collect();
    conflicts.sort();
    conflicts.dedup();
    (sessions, conflicts)
}

/// BIRD's router id for the host: the first IPv4 session's local address
/// (sessions come sorted by NIC), else `host_index + 1` as a 32-bit id for an
/// IPv6-only host. It only has to differ from the leaf's on each session.
pub fn router_id(sessions: &[Session], host_index: u32) -> Ipv4Addr {
    sessions
        .iter()
        .find_map(|s| match s.local.addr() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .unwrap_or_else(|| Ipv4Addr::from_bits(host_index.saturating_add(1)))
}

/// Whether a NIC name can go into BIRD's configuration inside quotes.
pub fn bird_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}
