//! [`RailLinks`] over rtnetlink: `ip link add ... type bond|vlan`, `ip link set
//! SLAVE master BOND`, `ip addr add|del`, `ip link set up`, as requests on the
//! daemon's connection.
//!
//! Every step looks its links up on a fresh dump: a name taken since the
//! planner's listing is a refusal, never a link changed by mistake. A kernel
//! without the 8021q or bonding module refuses the create (`EOPNOTSUPP`, or
//! "Unknown device type"); that comes back as [`StepOutcome::Refused`] naming
//! the link, so the daemon logs it and retries.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::IfName;
use rtnetlink::packet_route::link::{
    BondMode as KernelBondMode, InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use rtnetlink::{LinkBond, LinkUnspec, LinkVlan};

use super::NetlinkRoutes;
use crate::discovery::{address_of, default_route_oifs};
use crate::error::{Error, Result};
use crate::kernel::rail_links::ifacer_alias;
use crate::kernel::{LinkKind, LinkStep, RailLink, RailLinks, StepOutcome, MAIN_TABLE};

const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const EADDRNOTAVAIL: i32 = 99;

/// A link of the dump, before names are resolved.
#[derive(Debug)]
struct Dumped {
    index: u32,
    name: IfName,
    vlan: Option<(Option<u32>, u16)>,
    bond: bool,
    controller: Option<u32>,
    alias: Option<String>,
    up: bool,
}

fn dumped(msg: &LinkMessage) -> Option<Dumped> {
    let mut name = None;
    let mut alias = None;
    let mut parent = None;
    let mut controller = None;
    let mut vlan_kind = false;
    let mut vlan_id = None;
    let mut bond = false;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = IfName::new(n).ok(),
            LinkAttribute::IfAlias(a) => alias = Some(a.clone()),
            LinkAttribute::Link(i) => parent = Some(*i),
            LinkAttribute::Controller(i) => controller = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Vlan) => vlan_kind = true,
                        LinkInfo::Kind(InfoKind::Bond) => bond = true,
                        LinkInfo::Data(InfoData::Vlan(data)) => {
                            vlan_id = data.iter().find_map(|d| match d {
                                InfoVlan::Id(id) => Some(*id),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Dumped {
        index: msg.header.index,
        name: name?,
        vlan: if vlan_kind {
            Some((parent, vlan_id.unwrap_or_default()))
        } else {
            None
        },
        bond,
        controller,
        alias,
        up: msg.header.flags.contains(LinkFlags::Up),
    })
}

/// The kernel's errno in a refused request, if that is what `e` is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

impl NetlinkRoutes {
    async fn dump_rail_links(&self) -> Result<Vec<Dumped>> {
        Ok(self
            .netlink()
            .links()
            .await?
            .iter()
            .filter_map(dumped)
            .collect())
    }

    async fn index_of(&self, name: &IfName) -> Result<Option<u32>> {
        Ok(self
            .dump_rail_links()
            .await?
            .into_iter()
            .find(|l| l.name == *name)
            .map(|l| l.index))
    }

    /// Sends one link request; a kernel refusal is a [`StepOutcome::Refused`]
    /// saying what was being done, a broken connection an error.
    async fn link_request(&self, msg: LinkMessage, what: &str) -> Result<StepOutcome> {
        match self.netlink().handle().link().set(msg).execute().await {
            Ok(()) => Ok(StepOutcome::Done),
            Err(e) if errno(&e).is_some() => Ok(StepOutcome::Refused(format!("{what}: {e}"))),
            Err(e) => Err(Error::netlink(what.to_owned(), e)),
        }
    }

    /// Creates a link from `msg` and marks it with the alias (the kernel ignores
    /// an alias in the create request). A link we cannot mark is deleted again:
    /// unmarked, it would look like someone else's to the next pass.
    async fn create_marked(
        &self,
        msg: LinkMessage,
        name: &IfName,
        network: &str,
        what: &str,
    ) -> Result<StepOutcome> {
        let handle = self.netlink().handle();
        if let Err(e) = handle.link().add(msg).execute().await {
            return match errno(&e) {
                Some(_) => Ok(StepOutcome::Refused(format!(
                    "create {what} {:?}: {e}",
                    name.as_str()
                ))),
                None => Err(Error::netlink(
                    format!("create {what} {:?}", name.as_str()),
                    e,
                )),
            };
        }
        let Some(index) = self.index_of(name).await? else {
            return Ok(StepOutcome::Refused(format!(
                "{what} {:?} vanished right after it was created",
                name.as_str()
            )));
        };
        let marked = handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .alias(ifacer_alias(network))
                    .build(),
            )
            .execute()
            .await;
        if let Err(e) = marked {
            let _ = handle.link().del(index).execute().await;
            return Err(Error::netlink(
                format!("set the alias of {what} {:?}", name.as_str()),
                e,
            ));
        }
        Ok(StepOutcome::Done)
    }

    async fn move_address(
        &self,
        address: IpNet,
        from: &IfName,
        to: &IfName,
    ) -> Result<StepOutcome> {
        let links = self.dump_rail_links().await?;
        let index = |n: &IfName| links.iter().find(|l| l.name == *n).map(|l| l.index);
        let Some(to_index) = index(to) else {
            return Ok(StepOutcome::Refused(format!(
                "{:?} does not exist",
                to.as_str()
            )));
        };
        let handle = self.netlink().handle();
        let mut add = handle
            .address()
            .add(to_index, address.addr(), address.prefix_len());
        // The host held the address already.
        super::skip_dad(&mut add, address.addr());
        match add.execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) if errno(&e).is_some() => {
                return Ok(StepOutcome::Refused(format!(
                    "add {address} to {:?}: {e}",
                    to.as_str()
                )))
            }
            Err(e) => {
                return Err(Error::netlink(
                    format!("add {address} to {:?}", to.as_str()),
                    e,
                ))
            }
        }
        let Some(from_index) = index(from) else {
            return Ok(StepOutcome::Done);
        };
        let held = self
            .netlink()
            .addresses()
            .await?
            .into_iter()
            .find(|m| address_of(m) == Some((from_index, address)));
        let Some(msg) = held else {
            return Ok(StepOutcome::Done);
        };
        match handle.address().del(msg).execute().await {
            Ok(()) => Ok(StepOutcome::Done),
            Err(e) if matches!(errno(&e), Some(EADDRNOTAVAIL | ENODEV)) => Ok(StepOutcome::Done),
            Err(e) if errno(&e).is_some() => Ok(StepOutcome::Refused(format!(
                "delete {address} from {:?}: {e}",
                from.as_str()
            ))),
            Err(e) => Err(Error::netlink(
                format!("delete {address} from {:?}", from.as_str()),
                e,
            )),
        }
    }

    async fn enslave(&self, slave: &IfName, bond: &IfName) -> Result<StepOutcome> {
        let links = self.dump_rail_links().await?;
        let Some(b) = links.iter().find(|l| l.name == *bond && l.bond) else {
            return Ok(StepOutcome::Refused(format!(
                "bond {:?} does not exist",
                bond.as_str()
            )));
        };
        let Some(s) = links.iter().find(|l| l.name == *slave) else {
            return Ok(StepOutcome::Refused(format!(
                "slave {:?} does not exist",
                slave.as_str()
            )));
        };
        match s.controller {
            Some(c) if c == b.index => return Ok(StepOutcome::Done),
            Some(c) => {
                let other = links
                    .iter()
                    .find(|l| l.index == c)
                    .map_or_else(|| c.to_string(), |l| l.name.to_string());
                return Ok(StepOutcome::Refused(format!(
                    "{:?} is enslaved to {other:?} already",
                    slave.as_str()
                )));
            }
            None => {}
        }
        let what = format!("enslave {:?} to {:?}", slave.as_str(), bond.as_str());
        // The bonding driver refuses a slave that is up.
        let steps = [
            LinkUnspec::new_with_index(s.index).down().build(),
            LinkUnspec::new_with_index(s.index)
                .controller(b.index)
                .build(),
            LinkUnspec::new_with_index(s.index).up().build(),
        ];
        for msg in steps {
            if let StepOutcome::Refused(why) = self.link_request(msg, &what).await? {
                return Ok(StepOutcome::Refused(why));
            }
        }
        Ok(StepOutcome::Done)
    }
}

#[async_trait]
impl RailLinks for NetlinkRoutes {
    async fn rail_links(&self) -> Result<Vec<RailLink>> {
        let links = self.dump_rail_links().await?;
        let names: HashMap<u32, IfName> = links.iter().map(|l| (l.index, l.name)).collect();
        let mut addresses: HashMap<u32, Vec<IpNet>> = HashMap::new();
        for msg in self.netlink().addresses().await? {
            if let Some((index, net)) = address_of(&msg) {
                addresses.entry(index).or_default().push(net);
            }
        }
        let mut default_route = BTreeSet::new();
        for v6 in [false, true] {
            for r in self.netlink().routes(v6, MAIN_TABLE).await? {
                default_route.extend(default_route_oifs(&r));
            }
        }
        let mut out: Vec<RailLink> = links
            .iter()
            .map(|l| {
                let mut addrs = addresses.remove(&l.index).unwrap_or_default();
                addrs.sort_unstable();
                RailLink {
                    name: l.name,
                    kind: match (l.vlan, l.bond) {
                        (Some((parent, id)), _) => LinkKind::Vlan {
                            parent: parent.and_then(|p| names.get(&p).copied()),
                            id,
                        },
                        (None, true) => LinkKind::Bond,
                        (None, false) => LinkKind::Other,
                    },
                    controller: l.controller.and_then(|c| names.get(&c).copied()),
                    alias: l.alias.clone(),
                    up: l.up,
                    addresses: addrs,
                    default_route: default_route.contains(&l.index),
                }
            })
            .collect();
        out.sort_by_key(|l| l.name);
        Ok(out)
    }

    async fn apply_link_step(&self, step: &LinkStep) -> Result<StepOutcome> {
        match step {
            LinkStep::CreateBond {
                name,
                mode,
                options,
                network,
            } => {
                if self.index_of(name).await?.is_some() {
                    return Ok(StepOutcome::Refused(format!(
                        "a link named {:?} exists",
                        name.as_str()
                    )));
                }
                let mut b = LinkBond::new(name).mode(KernelBondMode::from(mode.number()));
                if let Some(v) = options.miimon {
                    b = b.miimon(v);
                }
                if let Some(v) = options.updelay {
                    b = b.updelay(v);
                }
                if let Some(v) = options.downdelay {
                    b = b.downdelay(v);
                }
                self.create_marked(b.build(), name, network, "bond").await
            }
            LinkStep::CreateVlan {
                name,
                parent,
                id,
                network,
            } => {
                let links = self.dump_rail_links().await?;
                if links.iter().any(|l| l.name == *name) {
                    return Ok(StepOutcome::Refused(format!(
                        "a link named {:?} exists",
                        name.as_str()
                    )));
                }
                let Some(p) = links.iter().find(|l| l.name == *parent) else {
                    return Ok(StepOutcome::Refused(format!(
                        "parent {:?} does not exist",
                        parent.as_str()
                    )));
                };
                let msg = LinkVlan::new(name, p.index, *id).build();
                self.create_marked(msg, name, network, "vlan").await
            }
            LinkStep::Enslave { slave, bond } => self.enslave(slave, bond).await,
            LinkStep::MoveAddress { address, from, to } => {
                self.move_address(*address, from, to).await
            }
            LinkStep::SetUp { name } => {
                let Some(index) = self.index_of(name).await? else {
                    return Ok(StepOutcome::Refused(format!(
                        "{:?} does not exist",
                        name.as_str()
                    )));
                };
                let msg = LinkUnspec::new_with_index(index).up().build();
                self.link_request(msg, &format!("set {:?} up", name.as_str()))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::link::LinkHeader;

    #[test]
    fn a_vlan_in_the_dump_has_its_parent_and_id() {
        let mut msg = LinkMessage::default();
        msg.header = LinkHeader {
            index: 7,
            flags: LinkFlags::Up,
            ..LinkHeader::default()
        };
        msg.attributes = vec![
            LinkAttribute::IfName("rail0.42".into()),
            LinkAttribute::Link(3),
            LinkAttribute::Controller(9),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(42)])),
            ]),
        ];
        let d = dumped(&msg).expect("named");
        assert_eq!(d.vlan, Some((Some(3), 42)));
        assert_eq!(d.controller, Some(9));
        assert!(d.up && !d.bond);
    }
}
