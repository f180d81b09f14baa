//! [`GatewayShims`] over rtnetlink: `ip link add NAME link PARENT type macvlan
//! mode bridge`, `ip link set NAME alias railyard:NET up`, `ip addr add GW/LEN
//! dev NAME [nodad]`, as requests on the daemon's connection.
//!
//! Every decision is made on a fresh dump of links and addresses: ownership
//! ([`is_ours`]) is checked on what the kernel holds now, not on a belief, so a
//! link someone else made under a shim's name is never changed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::IfName;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{LinkMacVlan, LinkUnspec};

use super::NetlinkRoutes;
use crate::error::{Error, Result};
use crate::kernel::shims::is_ours;
use crate::kernel::{Ensured, GatewayShims, Shim, ShimState};

/// What a shim decision needs of a link in the dump.
#[derive(Debug)]
struct Found {
    index: u32,
    name: IfName,
    alias: Option<String>,
    parent: Option<u32>,
    macvlan_bridge: bool,
    mac: [u8; 6],
    up: bool,
}

fn found(msg: &LinkMessage) -> Option<Found> {
    let mut name = None;
    let mut alias = None;
    let mut parent = None;
    let mut mac = [0; 6];
    let mut macvlan = false;
    let mut bridge = false;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = IfName::new(n).ok(),
            LinkAttribute::IfAlias(a) => alias = Some(a.clone()),
            LinkAttribute::Link(i) => parent = Some(*i),
            LinkAttribute::Address(a) => {
                if let Ok(a) = <[u8; 6]>::try_from(a.as_slice()) {
                    mac = a;
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::MacVlan) => macvlan = true,
                        LinkInfo::Data(InfoData::MacVlan(data)) => {
                            bridge |= data
                                .iter()
                                .any(|d| matches!(d, InfoMacVlan::Mode(MacVlanMode::Bridge)));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Found {
        index: msg.header.index,
        name: name?,
        alias,
        parent,
        macvlan_bridge: macvlan && bridge,
        mac,
        up: msg.header.flags.contains(LinkFlags::Up),
    })
}

/// The address a message carries, with its prefix length: IPv4 puts the
/// interface's own address in IFA_LOCAL (IFA_ADDRESS is the peer's on
/// point-to-point links), IPv6 only has IFA_ADDRESS.
fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    let mut address = None;
    let mut local = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Local(a) => local = Some(*a),
            _ => {}
        }
    }
    let addr: IpAddr = local.or(address)?;
    IpNet::new(addr, msg.header.prefix_len).ok()
}

/// The EUI-64 link-local address of `mac`, the one the kernel makes.
fn link_local(mac: &[u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

impl NetlinkRoutes {
    async fn dump_links(&self) -> Result<Vec<Found>> {
        Ok(self
            .netlink()
            .links()
            .await?
            .iter()
            .filter_map(found)
            .collect())
    }

    /// The link's global addresses (the kernel's IPv6 link-local one is not
    /// ours to manage), with the messages that delete them.
    async fn global_addresses(&self, index: u32) -> Result<Vec<(IpNet, AddressMessage)>> {
        Ok(self
            .netlink()
            .addresses()
            .await?
            .into_iter()
            .filter(|m| m.header.index == index && m.header.scope != AddressScope::Link)
            .filter_map(|m| Some((address_of(&m)?, m)))
            .collect())
    }

    async fn create(&self, shim: &Shim, parent: u32) -> Result<u32> {
        let handle = self.netlink().handle();
        let name = shim.name.as_ref();
        handle
            .link()
            .add(
                LinkMacVlan::new(name, parent, MacVlanMode::Bridge)
                    .address(shim.mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("create shim {name:?}"), e))?;
        let index = self
            .dump_links()
            .await?
            .into_iter()
            .find(|l| l.name == shim.name)
            .map(|l| l.index);
        let Some(index) = index else {
            return Err(Error::Config(format!(
                "shim {name:?} vanished right after it was created"
            )));
        };
        // The kernel ignores IFLA_IFALIAS when creating a link; without the
        // alias the link is not ours, so a link we cannot mark must not stay.
        let marked = handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .alias(shim.alias())
                    .build(),
            )
            .execute()
            .await;
        if let Err(e) = marked {
            let _ = handle.link().del(index).execute().await;
            return Err(Error::netlink(format!("set the alias of shim {name:?}"), e));
        }
        if shim.addresses.iter().any(|a| a.addr().is_ipv6()) {
            // The kernel sends neighbour solicitations for forwarded packets
            // only from a link-local address that passed DAD; its own would be
            // tentative for a second or two after every (re)creation, and the
            // pods behind the shim unreachable from other hosts meanwhile. So
            // the address it would make (EUI-64 of the MAC) is added first,
            // without DAD; the kernel's own then finds it there.
            let ll = IpNet::new(IpAddr::V6(link_local(&shim.mac)), 64)
                .unwrap_or_else(|_| unreachable!("64 is a valid IPv6 prefix length"));
            self.add_address(shim, index, ll).await?;
        }
        Ok(index)
    }

    async fn add_address(&self, shim: &Shim, index: u32, net: IpNet) -> Result<()> {
        let mut request =
            self.netlink()
                .handle()
                .address()
                .add(index, net.addr(), net.prefix_len());
        // The gateway must answer the moment pods use it.
        super::skip_dad(&mut request, net.addr());
        request
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("add {net} to shim {:?}", shim.name.as_ref()), e))
    }

    /// Brings the addresses of our link `index` to `shim`'s; true if it changed any.
    async fn sync_addresses(&self, shim: &Shim, index: u32) -> Result<bool> {
        let have = self.global_addresses(index).await?;
        let mut changed = false;
        for (net, msg) in &have {
            if !shim.addresses.contains(net) {
                self.netlink()
                    .handle()
                    .address()
                    .del(msg.clone())
                    .execute()
                    .await
                    .map_err(|e| {
                        Error::netlink(
                            format!("delete {net} from shim {:?}", shim.name.as_ref()),
                            e,
                        )
                    })?;
                changed = true;
            }
        }
        for net in &shim.addresses {
            if !have.iter().any(|(h, _)| h == net) {
                self.add_address(shim, index, *net).await?;
                changed = true;
            }
        }
        Ok(changed)
    }

    async fn set_up(&self, shim: &Shim, index: u32) -> Result<()> {
        let up = LinkUnspec::new_with_index(index).up();
        self.set_link(up.build(), "up", &shim.name).await
    }

    /// Deletes link `index`, a `what` named `name` (for the error).
    async fn delete_link(&self, index: u32, what: &str, name: &IfName) -> Result<()> {
        self.netlink()
            .handle()
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("delete {what} {:?}", name.as_ref()), e))
    }

    /// One link change of shim `name`; an error says `what` was being set.
    async fn set_link(&self, change: LinkMessage, what: &str, name: &IfName) -> Result<()> {
        self.netlink()
            .handle()
            .link()
            .set(change)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("set {what} shim {:?}", name.as_ref()), e))
    }
}

#[async_trait]
impl GatewayShims for NetlinkRoutes {
    async fn owned_shims(&self) -> Result<Vec<ShimState>> {
        let links = self.dump_links().await?;
        let names: HashMap<u32, IfName> = links.iter().map(|l| (l.index, l.name)).collect();
        let mut out = Vec::new();
        for l in links
            .iter()
            .filter(|l| is_ours(&l.name, l.alias.as_deref()))
        {
            let mut addresses: Vec<IpNet> = self
                .global_addresses(l.index)
                .await?
                .into_iter()
                .map(|(a, _)| a)
                .collect();
            addresses.sort_unstable();
            out.push(ShimState {
                name: l.name,
                parent: l
                    .parent
                    .filter(|_| l.macvlan_bridge)
                    .and_then(|p| names.get(&p).copied()),
                mac: l.mac,
                up: l.up,
                addresses,
            });
        }
        out.sort_by_key(|a| a.name);
        Ok(out)
    }

    async fn ensure_shim(&self, shim: &Shim) -> Result<Ensured> {
        let links = self.dump_links().await?;
        let Some(parent) = links
            .iter()
            .find(|l| l.name == shim.parent)
            .map(|l| l.index)
        else {
            return Ok(Ensured::Refused(format!(
                "parent device {:?} of shim {:?} does not exist",
                shim.parent.as_ref(),
                shim.name.as_ref()
            )));
        };
        let existing = links.iter().find(|l| l.name == shim.name);
        let (index, mut outcome) = match existing {
            None => (self.create(shim, parent).await?, Ensured::Created),
            Some(l) if !is_ours(&l.name, l.alias.as_deref()) => return Ok(Ensured::Conflict),
            // Another parent or mode cannot be changed in place: made again.
            Some(l) if !l.macvlan_bridge || l.parent != Some(parent) => {
                self.delete_link(l.index, "misshapen shim", &l.name).await?;
                (self.create(shim, parent).await?, Ensured::Repaired)
            }
            Some(l) => {
                let mut outcome = Ensured::Unchanged;
                if l.alias.as_deref() != Some(shim.alias().as_str()) {
                    let alias = LinkUnspec::new_with_index(l.index).alias(shim.alias());
                    self.set_link(alias.build(), "the alias of", &l.name)
                        .await?;
                    outcome = Ensured::Repaired;
                }
                if l.mac != shim.mac {
                    let mac = LinkUnspec::new_with_index(l.index).address(shim.mac.to_vec());
                    self.set_link(mac.build(), "the MAC of", &l.name).await?;
                    outcome = Ensured::Repaired;
                }
                if !l.up {
                    outcome = Ensured::Repaired;
                }
                (l.index, outcome)
            }
        };
        // Addresses before up: the link never answers without its gateway.
        // (`sync_addresses` sees global addresses only: the link-local one
        // `create` added is left alone.)
        if self.sync_addresses(shim, index).await? && outcome == Ensured::Unchanged {
            outcome = Ensured::Repaired;
        }
        if outcome != Ensured::Unchanged {
            self.set_up(shim, index).await?;
        }
        Ok(outcome)
    }

    async fn remove_shim(&self, name: &IfName) -> Result<bool> {
        let links = self.dump_links().await?;
        let Some(l) = links
            .iter()
            .find(|l| l.name == *name && is_ours(&l.name, l.alias.as_deref()))
        else {
            return Ok(false);
        };
        self.delete_link(l.index, "shim", name).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_local_address_is_the_kernels_eui64() {
        let ll = link_local(&[0x02, 0xa5, 0xc7, 0x30, 0xef, 0xc1]);
        assert_eq!(ll.to_string(), "fe80::a5:c7ff:fe30:efc1");
    }
}
