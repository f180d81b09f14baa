//! NIC discovery: the kernel's links and addresses (rtnetlink) joined with the
//! hardware facts only sysfs knows, filtered to the rail candidates. A static
//! inventory file, when configured, replaces all of it.

mod filter;
mod inventory;
mod sysfs;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::{HostInventory, Nic};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage, RouteType};

use crate::error::Result;
use crate::netlink::Netlink;

pub use filter::{FilterConfig, NicFilter, Skip};
pub use inventory::{load_inventory, parse_inventory};
pub use sysfs::{
    hardware, parse_numa_node, parse_pci_address, parse_pci_id, parse_speed, Hardware, Sysfs,
    SysfsDir,
};

const MAIN_TABLE: u32 = 254;

/// One kernel interface with what netlink says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkRecord {
    pub index: u32,
    pub name: String,
    /// The link kind (`veth`, `bridge`, ...); physical NICs have none.
    pub kind: Option<String>,
    pub loopback: bool,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub addresses: Vec<IpNet>,
}

/// Everything discovery needs from the kernel, read in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLinks {
    pub links: Vec<LinkRecord>,
    /// Indexes of the links a default route (v4 or v6, main table) leaves through.
    pub default_route_links: BTreeSet<u32>,
}

/// Where the links come from: rtnetlink, or a fake in tests.
#[async_trait]
pub trait LinkSource: Send + Sync {
    async fn kernel_links(&self) -> Result<KernelLinks>;
}

#[async_trait]
impl LinkSource for Netlink {
    async fn kernel_links(&self) -> Result<KernelLinks> {
        let mut links: Vec<LinkRecord> = self.links().await?.iter().map(link_record).collect();
        for addr in self.addresses().await? {
            if let Some((index, net)) = address_of(&addr) {
                if let Some(l) = links.iter_mut().find(|l| l.index == index) {
                    l.addresses.push(net);
                }
            }
        }
        let mut default_route_links = BTreeSet::new();
        for v6 in [false, true] {
            for r in self.routes(v6, MAIN_TABLE).await? {
                default_route_links.extend(default_route_oifs(&r));
            }
        }
        Ok(KernelLinks {
            links,
            default_route_links,
        })
    }
}

/// The rail candidates as `Nic`s, sorted by name so two discoveries of an
/// unchanged host compare equal.
pub async fn discover(
    source: &dyn LinkSource,
    sysfs: &dyn Sysfs,
    filter: &NicFilter,
) -> Result<Vec<Nic>> {
    let kernel = source.kernel_links().await?;
    Ok(select_nics(kernel, sysfs, filter))
}

/// The pure part of [`discover`].
pub fn select_nics(kernel: KernelLinks, sysfs: &dyn Sysfs, filter: &NicFilter) -> Vec<Nic> {
    let mut nics: Vec<Nic> = kernel
        .links
        .into_iter()
        .filter(|l| match filter.check(l, &kernel.default_route_links) {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(nic = %l.name, reason = %why, "not a rail candidate");
                false
            }
        })
        .map(|l| to_nic(l, sysfs))
        .collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics
}

/// Where the inventory comes from: discovery or a static file in production, a
/// fixed value in tests.
#[async_trait]
pub trait InventorySource: Send + Sync {
    async fn inventory(&self) -> Result<HostInventory>;
}

/// The production source, one per process (registration and the IPAM NIC list
/// share it): the static file when configured, else netlink + sysfs
/// filtered to the rail candidates.
#[derive(Debug)]
pub struct Discovered {
    pub node_name: String,
    pub netlink: Netlink,
    pub sysfs: SysfsDir,
    pub filter: NicFilter,
    pub static_file: Option<PathBuf>,
}

#[async_trait]
impl InventorySource for Discovered {
    async fn inventory(&self) -> Result<HostInventory> {
        host_inventory(
            &self.node_name,
            self.static_file.as_deref(),
            &self.netlink,
            &self.sysfs,
            &self.filter,
        )
        .await
    }
}

/// This host's inventory: the static file when one is configured, else discovery.
pub async fn host_inventory(
    host: &str,
    static_file: Option<&Path>,
    source: &dyn LinkSource,
    sysfs: &dyn Sysfs,
    filter: &NicFilter,
) -> Result<HostInventory> {
    if let Some(path) = static_file {
        return load_inventory(path, host);
    }
    Ok(HostInventory {
        name: host.to_owned(),
        nics: discover(source, sysfs, filter).await?,
    })
}

fn to_nic(link: LinkRecord, sysfs: &dyn Sysfs) -> Nic {
    let hw = hardware(sysfs, &link.name);
    let mut addresses = link.addresses;
    addresses.sort();
    addresses.dedup();
    Nic {
        name: link.name,
        addresses,
        mac: link.mac,
        mtu: link.mtu,
        speed_mbps: hw.speed_mbps,
        numa_node: hw.numa_node,
        pci_address: hw.pci_address,
        pcie_root: hw.pcie_root,
        vendor: hw.vendor,
        product: hw.product,
        driver: hw.driver,
        up: link.up,
    }
}

pub fn link_record(msg: &LinkMessage) -> LinkRecord {
    let mut rec = LinkRecord {
        index: msg.header.index,
        loopback: msg.header.flags.contains(LinkFlags::Loopback),
        ..LinkRecord::default()
    };
    let mut oper = State::Unknown;
    let mut carrier = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => rec.name.clone_from(n),
            LinkAttribute::Mtu(m) => rec.mtu = Some(*m),
            LinkAttribute::Address(a) => rec.mac = format_mac(a),
            LinkAttribute::OperState(s) => oper = *s,
            LinkAttribute::Carrier(c) => carrier = Some(*c != 0),
            LinkAttribute::LinkInfo(infos) => rec.kind = infos.iter().find_map(kind_name),
            _ => {}
        }
    }
    rec.up = is_up(oper, carrier);
    rec
}

/// Up means traffic can flow: operationally up, or a driver that does not track
/// operational state ("unknown") but reports carrier.
pub fn is_up(oper: State, carrier: Option<bool>) -> bool {
    match oper {
        State::Up => true,
        State::Unknown => carrier == Some(true),
        _ => false,
    }
}

fn kind_name(info: &LinkInfo) -> Option<String> {
    match info {
        LinkInfo::Kind(InfoKind::Other(s)) => Some(s.clone()),
        LinkInfo::Kind(k) => Some(k.to_string()),
        _ => None,
    }
}

/// `aa:bb:cc:dd:ee:ff`; an all-zero address (tunnels, loopback) is no address.
pub fn format_mac(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return None;
    }
    Some(
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// The interface index and `address/prefix` of an address message. Link-local
/// addresses are left out: every NIC has one in the same fe80::/64, so they
/// would put every NIC on one rail.
pub fn address_of(msg: &AddressMessage) -> Option<(u32, IpNet)> {
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
    // point-to-point links, and the only one given for IPv6.
    let ip = local.or(address)?;
    if is_link_local(&ip) {
        return None;
    }
    let net = IpNet::new(ip, msg.header.prefix_len).ok()?;
    Some((msg.header.index, net))
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

/// The output interfaces of a default route, or none for any other route.
pub fn default_route_oifs(msg: &RouteMessage) -> Vec<u32> {
    if msg.header.destination_prefix_length != 0 || msg.header.kind != RouteType::Unicast {
        return Vec::new();
    }
    let mut out = Vec::new();
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => out.push(*i),
            RouteAttribute::MultiPath(hops) => out.extend(hops.iter().map(|h| h.interface_index)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::route::RouteNextHop;
    use rtnetlink::packet_route::AddressFamily;

    struct NoSysfs;
    impl Sysfs for NoSysfs {
        fn read(&self, _: &str, _: &str) -> Option<String> {
            None
        }
        fn link_target(&self, _: &str, _: &str) -> Option<std::path::PathBuf> {
            None
        }
        fn canonical(&self, _: &str, _: &str) -> Option<std::path::PathBuf> {
            None
        }
    }

    struct FakeLinks(KernelLinks);
    #[async_trait]
    impl LinkSource for FakeLinks {
        async fn kernel_links(&self) -> Result<KernelLinks> {
            Ok(self.0.clone())
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn up_follows_operstate_and_carrier() {
        assert!(is_up(State::Up, None));
        assert!(is_up(State::Unknown, Some(true)));
        assert!(!is_up(State::Unknown, Some(false)));
        assert!(!is_up(State::Unknown, None));
        assert!(!is_up(State::LowerLayerDown, Some(true)));
        assert!(!is_up(State::Down, Some(true)));
    }

    #[test]
    fn link_message_to_record() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.attributes = vec![
            LinkAttribute::IfName("rail0".into()),
            LinkAttribute::Mtu(9000),
            LinkAttribute::Address(vec![0x02, 0, 0, 0, 0, 0x0a]),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let rec = link_record(&msg);
        assert_eq!(rec.name, "rail0");
        assert_eq!(rec.mtu, Some(9000));
        assert_eq!(rec.mac.as_deref(), Some("02:00:00:00:00:0a"));
        assert_eq!(rec.kind.as_deref(), Some("veth"));
        assert!(rec.up && !rec.loopback);
        assert_eq!(format_mac(&[0; 6]), None);
    }

    #[test]
    fn addresses_keep_prefix_and_drop_link_local() {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.index = 3;
        msg.header.prefix_len = 24;
        msg.attributes = vec![
            AddressAttribute::Address("10.0.1.5".parse().expect("ip")),
            AddressAttribute::Local("10.0.1.5".parse().expect("ip")),
        ];
        assert_eq!(address_of(&msg), Some((3, net("10.0.1.5/24"))));
        msg.header.prefix_len = 64;
        msg.attributes = vec![AddressAttribute::Address("fe80::1".parse().expect("ip"))];
        assert_eq!(address_of(&msg), None);
    }

    #[test]
    fn default_routes_name_their_devices() {
        let mut r = RouteMessage::default();
        r.header.kind = RouteType::Unicast;
        r.attributes = vec![RouteAttribute::Oif(2)];
        assert_eq!(default_route_oifs(&r), vec![2]);
        let hop = |i| {
            let mut h = RouteNextHop::default();
            h.interface_index = i;
            h
        };
        r.attributes = vec![RouteAttribute::MultiPath(vec![hop(4), hop(5)])];
        assert_eq!(default_route_oifs(&r), vec![4, 5]);
        r.header.destination_prefix_length = 24;
        assert!(default_route_oifs(&r).is_empty());
    }

    #[tokio::test]
    async fn discovery_filters_sorts_and_static_file_wins() {
        let rec = |index, name: &str, addrs: &[&str]| LinkRecord {
            index,
            name: name.into(),
            loopback: name == "lo",
            up: true,
            addresses: addrs.iter().map(|a| net(a)).collect(),
            ..LinkRecord::default()
        };
        let source = FakeLinks(KernelLinks {
            links: vec![
                rec(1, "lo", &["127.0.0.1/8"]),
                rec(2, "eth0", &["192.0.2.10/24"]),
                rec(4, "eth2", &["10.0.2.5/24", "10.0.2.5/24"]),
                rec(3, "eth1", &["10.0.1.5/24", "fd00:1::5/64"]),
            ],
            default_route_links: BTreeSet::from([2]),
        });
        let nics = discover(&source, &NoSysfs, &NicFilter::default())
            .await
            .expect("discover");
        let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["eth1", "eth2"]);
        assert_eq!(nics[1].addresses, vec![net("10.0.2.5/24")]);

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("inv.yaml");
        std::fs::write(
            &file,
            "name: h1\nnics: [{name: ib0, addresses: [10.9.0.1/16]}]\n",
        )
        .expect("write");
        let inv = host_inventory("h1", Some(&file), &source, &NoSysfs, &NicFilter::default())
            .await
            .expect("static");
        assert_eq!(inv.nics[0].name, "ib0");
        let inv = host_inventory("h1", None, &source, &NoSysfs, &NicFilter::default())
            .await
            .expect("discovered");
        assert_eq!(inv.nics.len(), 2);
    }
}
