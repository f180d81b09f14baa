//! `railyard-ipam`: CNI IPAM backed by the route-daemon's allocation socket.
//!
//! Each CNI command becomes one daemon request; the daemon owns every
//! decision (which NICs, which addresses) so this side only translates. The
//! driver has already rejected malformed input, so nothing reaches the
//! daemon unless the invocation is valid.

pub mod config;

use railyard_core::ipam::{AttachmentId, NicAllocation};

use crate::client::Client;
use crate::cni::{
    AttachRequest, Attachment, CniResult, GcRequest, Handler, Interface, IpConfig, NetConf, Route,
    StatusRequest,
};
use crate::Error;

pub use config::IpamConfig;

/// The plugin; stateless, everything durable lives in the daemon.
#[derive(Debug, Default)]
pub struct IpamPlugin;

impl Handler for IpamPlugin {
    fn add(&mut self, req: &AttachRequest) -> Result<CniResult, Error> {
        let (ipam, client) = setup(&req.config)?;
        let selection = config::selection(&req.config)?;
        let master = config::standalone_master(&req.config)?;
        let pod = req.env.args.pod_ref();
        let nics = client.add(
            attachment_id(&ipam, &req.attachment),
            pod,
            selection,
            master.clone(),
        )?;
        let shown = client.socket().display().to_string();
        validate(&nics, master.as_deref(), &shown)?;
        Ok(to_result(&nics, ipam.report_nics))
    }

    fn del(&mut self, req: &AttachRequest) -> Result<(), Error> {
        let (ipam, client) = setup(&req.config)?;
        client.del(attachment_id(&ipam, &req.attachment))
    }

    fn check(&mut self, req: &AttachRequest) -> Result<(), Error> {
        let (ipam, client) = setup(&req.config)?;
        client.check(attachment_id(&ipam, &req.attachment))
    }

    fn gc(&mut self, req: &GcRequest) -> Result<(), Error> {
        let (ipam, client) = setup(&req.config)?;
        let valid = req
            .valid_attachments
            .iter()
            .map(|a| AttachmentId {
                network: ipam.network.clone(),
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            })
            .collect();
        client.gc(ipam.network, valid).map(drop)
    }

    /// A daemon that cannot be reached means ADD cannot be served: STATUS
    /// reports that as 50 ("plugin not available"), which is what a runtime
    /// reads to mark the network not ready, rather than ADD's retry code.
    fn status(&mut self, req: &StatusRequest) -> Result<(), Error> {
        let (ipam, client) = setup(&req.config)?;
        client.status(ipam.network).map_err(|e| match e {
            Error::DaemonUnreachable { socket, reason } => Error::PluginNotAvailable {
                reason: format!("railyard daemon at {socket} is unreachable ({reason})"),
            },
            other => other,
        })
    }
}

fn setup(conf: &NetConf) -> Result<(IpamConfig, Client), Error> {
    let ipam = IpamConfig::parse(conf)?;
    let client = Client::new(&ipam.socket, ipam.timeout);
    Ok((ipam, client))
}

fn attachment_id(ipam: &IpamConfig, a: &Attachment) -> AttachmentId {
    AttachmentId {
        network: ipam.network.clone(),
        container_id: a.container_id.clone(),
        ifname: a.ifname.clone(),
    }
}

/// Refuses answers that would produce a half-configured pod: the runtime
/// gets a clear error instead of an interface without an address.
fn validate(nics: &[NicAllocation], master: Option<&str>, socket: &str) -> Result<(), Error> {
    let bad = |reason: String| {
        Error::decode(
            format!("response of the railyard daemon at {socket}"),
            reason,
        )
    };
    if nics.is_empty() {
        return Err(bad("`nics` is empty: the daemon allocated nothing".into()));
    }
    for (i, nic) in nics.iter().enumerate() {
        if nic.nic.is_empty() {
            return Err(bad(format!("`nics[{i}].nic` is empty")));
        }
        if nic.addresses.is_empty() {
            return Err(bad(format!("`nics[{i}]` ({}) has no address", nic.nic)));
        }
        // One gateway per address, or none at all (`spec.ipam.gateway: none`).
        if !nic.gateways.is_empty() && nic.gateways.len() != nic.addresses.len() {
            return Err(bad(format!(
                "`nics[{i}]` ({}) has {} addresses but {} gateways (one per address, or \
                 none for a network without gateways)",
                nic.nic,
                nic.addresses.len(),
                nic.gateways.len()
            )));
        }
        if nics[..i].iter().any(|other| other.nic == nic.nic) {
            return Err(bad(format!("NIC {:?} appears twice", nic.nic)));
        }
    }
    if let Some(master) = master {
        if nics.len() != 1 || nics[0].nic != master {
            let got: Vec<&str> = nics.iter().map(|n| n.nic.as_str()).collect();
            return Err(bad(format!(
                "asked for master {master:?} only, got NICs {got:?}"
            )));
        }
    }
    Ok(())
}

/// The CNI form of an allocation. With `report_nics` the host NICs become
/// `interfaces` (no sandbox: they are host interfaces), each with its rail
/// (railyard-cni names the pod interfaces by it), and each IP points at
/// its NIC; routes stay unattributed, as CNI routes have no interface, and
/// carry the NIC's gateway, which is what lets a reader attribute them. A
/// network without gateways (`spec.ipam.gateway: none`) gets IPs without
/// `gateway` and device routes (no `gw`); those routes name their NIC by
/// railyard's own `railyardNic` key, in the `reportNics` answer only.
pub fn to_result(nics: &[NicAllocation], report_nics: bool) -> CniResult {
    let mut result = CniResult::default();
    for (index, nic) in nics.iter().enumerate() {
        if report_nics {
            result.interfaces.push(Interface {
                name: nic.nic.to_string(),
                rail: Some(nic.interface),
                pod_mac: nic.mac.clone(),
                ..Interface::default()
            });
        }
        for (k, address) in nic.addresses.iter().enumerate() {
            result.ips.push(IpConfig {
                address: *address,
                gateway: nic.gateways.get(k).copied(),
                interface: report_nics.then_some(index),
            });
        }
        for route in &nic.routes {
            result.routes.push(Route {
                nic: (report_nics && route.gw.is_none()).then_some(index),
                ..Route::new(route.dst, route.gw)
            });
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;
    use railyard_core::ipam::PodRoute;

    fn nic(name: &str, third: u8) -> NicAllocation {
        NicAllocation {
            nic: railyard_core::IfName::new(name).expect("valid name"),
            interface: u32::from(third / 64),
            addresses: vec![format!("192.168.{third}.10/24").parse().unwrap()],
            gateways: vec![format!("192.168.{third}.1").parse().unwrap()],
            routes: vec![PodRoute {
                dst: format!("192.168.{}.0/18", third / 64 * 64).parse().unwrap(),
                gw: Some(format!("192.168.{third}.1").parse().unwrap()),
            }],
            mac: None,
        }
    }

    #[test]
    fn a_network_without_gateways_gets_device_routes() {
        let mut a = nic("eth1", 3);
        a.gateways.clear();
        a.routes[0].gw = None;
        let nics = [nic("eth0", 67), a];
        validate(&nics, None, "/s").unwrap();
        let plain = to_result(&nics, false);
        assert_eq!(plain.ips[1].gateway, None);
        assert_eq!(plain.routes[1].gw, None);
        // A runtime's result carries no railyard key.
        assert_eq!(plain.routes[1].nic, None);
        let text = plain.to_value(crate::cni::CniVersion::V1_0_0).to_string();
        assert!(
            !text.contains("\"192.168.3.1\"") && !text.contains("railyardNic"),
            "{text}"
        );
        // railyard-cni's answer says which NIC each device route is for.
        let reported = to_result(&nics, true);
        assert_eq!(reported.routes[1].nic, Some(1));
        assert_eq!(reported.routes[0].nic, None);
    }

    #[test]
    fn result_lists_every_address_and_route_with_gateways() {
        let nics = [nic("eth1", 3), nic("eth2", 67)];
        let plain = to_result(&nics, false);
        assert!(plain.interfaces.is_empty());
        assert_eq!(plain.ips.len(), 2);
        assert!(plain
            .ips
            .iter()
            .all(|ip| ip.interface.is_none() && ip.gateway.is_some()));
        assert_eq!(plain.routes[1].gw, Some("192.168.67.1".parse().unwrap()));
        let reported = to_result(&nics, true);
        assert_eq!(reported.interfaces[1].name, "eth2");
        assert_eq!(reported.interfaces[1].rail, Some(1));
        assert_eq!(reported.ips[1].interface, Some(1));
    }

    #[test]
    fn inconsistent_answers_are_refused() {
        // One gateway per address, or none; not two for one address.
        let mut odd = nic("eth1", 3);
        odd.gateways.push("192.168.3.2".parse().unwrap());
        let cases: [(Vec<NicAllocation>, Option<&str>); 4] = [
            (vec![], None),
            (vec![odd], None),
            (vec![nic("eth1", 3), nic("eth1", 4)], None),
            (vec![nic("eth2", 67)], Some("eth1")),
        ];
        for (nics, master) in cases {
            let err = validate(&nics, master, "/s").unwrap_err();
            assert_eq!(err.code(), codes::DECODE_FAILURE, "{err}");
        }
        assert!(validate(&[nic("eth1", 3)], Some("eth1"), "/s").is_ok());
    }
}
