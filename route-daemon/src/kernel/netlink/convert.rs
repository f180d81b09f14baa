//! Between `railyard_core::Route` and the kernel's route messages. Pure, so the
//! exact bytes railyard asks for are unit-tested without a kernel.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use railyard_core::{ActualRoute, IfName, Route};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType, RouteVia,
};
use rtnetlink::packet_route::AddressFamily;

use super::RAILYARD_PROTOCOL;

/// Used by `ip route del` as "any scope", so a delete matches whatever scope the
/// route was given.
const RT_SCOPE_NOWHERE: u8 = 255;

fn family(dst: &IpNet) -> AddressFamily {
    match dst {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

fn header(route: &Route) -> RouteHeader {
    RouteHeader {
        address_family: family(&route.dst),
        destination_prefix_length: route.dst.prefix_len(),
        // Tables above 255 only fit the RTA_TABLE attribute; the header says
        // "unspecified" then, as iproute2 does.
        table: u8::try_from(route.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
        protocol: RouteProtocol::from(RAILYARD_PROTOCOL),
        ..RouteHeader::default()
    }
}

fn attributes(route: &Route, oif: Option<u32>) -> Vec<RouteAttribute> {
    let mut attrs = vec![
        RouteAttribute::Table(route.table),
        RouteAttribute::Destination(RouteAddress::from(route.dst.network())),
    ];
    let same_family = route.dst.addr().is_ipv4() == route.gateway.is_ipv4();
    if same_family {
        attrs.push(RouteAttribute::Gateway(RouteAddress::from(route.gateway)));
    } else {
        // An IPv4 destination through an IPv6 next hop (RFC 5549) needs RTA_VIA.
        attrs.push(RouteAttribute::Via(match route.gateway {
            IpAddr::V4(a) => RouteVia::Inet(a),
            IpAddr::V6(a) => RouteVia::Inet6(a),
        }));
    }
    if let Some(i) = oif {
        attrs.push(RouteAttribute::Oif(i));
    }
    attrs
}

/// The message for an add or a replace (the flags decide which).
pub fn new_route_message(route: &Route, oif: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header = header(route);
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes = attributes(route, Some(oif));
    msg
}

/// The message deleting exactly our route: protocol, gateway and (when the device
/// still exists) output interface must all match, so a foreign route at the same
/// destination survives.
pub fn del_route_message(route: &Route, oif: Option<u32>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header = header(route);
    msg.header.scope = RouteScope::from(RT_SCOPE_NOWHERE);
    msg.header.kind = RouteType::Unspec;
    msg.attributes = attributes(route, oif);
    msg
}

/// A kernel route as railyard sees it, or `None` for what is not a plain IP
/// route of a table (cache clones, other families).
///
/// Foreign routes need only their destination (they matter as conflicts), so a
/// connected route without gateway reads as gateway "unspecified" and a
/// multipath route as its first hop. A route through an interface that vanished
/// meanwhile keeps the interface number as its device name.
pub fn actual_route(msg: &RouteMessage, names: &HashMap<u32, IfName>) -> Option<ActualRoute> {
    if msg.header.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let v6 = match msg.header.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut table = u32::from(msg.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Via(RouteVia::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => {
                if let Some(h) = hops.first() {
                    oif = oif.or(Some(h.interface_index));
                    gateway = gateway.or_else(|| {
                        h.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(g) => ip_of(g),
                            _ => None,
                        })
                    });
                }
            }
            _ => {}
        }
    }
    let unspecified = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let dst = IpNet::new(
        dst.unwrap_or(unspecified),
        msg.header.destination_prefix_length,
    )
    .ok()?;
    let dev = match oif {
        Some(i) => names
            .get(&i)
            .copied()
            .or_else(|| IfName::new(&format!("if{i}")).ok())
            .unwrap_or_default(),
        None => IfName::default(),
    };
    Some(ActualRoute {
        route: Route {
            dst,
            gateway: gateway.unwrap_or(unspecified),
            dev,
            table,
        },
        owned: u8::from(msg.header.protocol) == RAILYARD_PROTOCOL,
    })
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, gw: &str, table: u32) -> Route {
        Route {
            dst: dst.parse().expect("dst"),
            gateway: gw.parse().expect("gw"),
            dev: IfName::new("eth1").expect("valid"),
            table,
        }
    }

    #[test]
    fn new_route_carries_our_protocol_and_table() {
        let msg = new_route_message(&route("10.1.2.0/24", "10.0.0.2", 123_456), 7);
        assert_eq!(u8::from(msg.header.protocol), RAILYARD_PROTOCOL);
        assert_eq!(msg.header.table, 0, "big table ids go in RTA_TABLE only");
        assert_eq!(msg.header.destination_prefix_length, 24);
        assert!(msg.attributes.contains(&RouteAttribute::Table(123_456)));
        assert!(msg.attributes.contains(&RouteAttribute::Oif(7)));
        let main = new_route_message(&route("10.1.2.0/24", "10.0.0.2", 254), 7);
        assert_eq!(main.header.table, 254);
    }

    #[test]
    fn mixed_family_next_hop_uses_via() {
        let msg = new_route_message(&route("10.1.2.0/24", "fd00::2", 100), 7);
        assert!(msg
            .attributes
            .contains(&RouteAttribute::Via(RouteVia::Inet6(
                "fd00::2".parse().expect("ip")
            ))));
    }

    #[test]
    fn delete_matches_any_scope_but_only_our_protocol() {
        let msg = del_route_message(&route("fd00:1::/64", "fd00::2", 100), None);
        assert_eq!(u8::from(msg.header.scope), RT_SCOPE_NOWHERE);
        assert_eq!(u8::from(msg.header.protocol), RAILYARD_PROTOCOL);
        assert_eq!(msg.header.address_family, AddressFamily::Inet6);
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(_))));
    }

    #[test]
    fn round_trip_through_kernel_form() {
        let names = HashMap::from([(7, IfName::new("eth1").expect("valid"))]);
        for r in [
            route("10.1.2.0/24", "10.0.0.2", 70_000),
            route("fd00:1::/64", "fd00::2", 100),
        ] {
            let back = actual_route(&new_route_message(&r, 7), &names).expect("route");
            assert!(back.owned);
            assert_eq!(back.route, r);
        }
    }

    #[test]
    fn foreign_connected_and_clones() {
        let names = HashMap::new();
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 24;
        msg.header.table = 254;
        msg.header.protocol = RouteProtocol::Kernel;
        msg.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet("10.0.0.0".parse().expect("ip"))),
            RouteAttribute::Oif(3),
        ];
        let a = actual_route(&msg, &names).expect("route");
        assert!(!a.owned);
        assert_eq!(a.route.table, 254);
        assert_eq!(a.route.gateway, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(&*a.route.dev, "if3");
        msg.header.flags.insert(RouteFlags::Cloned);
        assert_eq!(actual_route(&msg, &names), None);
    }
}
