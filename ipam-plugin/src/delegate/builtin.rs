//! macvlan and ipvlan served inside railyard-cni: the link made and
//! configured with two `ip -batch` runs instead of two Go plugin processes
//! (the interface plugin and the `static` IPAM it runs) per NIC.
//!
//! Why: a pod with 8 rails costs 16 Go processes with the reference plugins,
//! each several milliseconds of CPU, and on a small node they queue for the
//! cores however they are started (issue 14 measured 8 NICs at about 3 times
//! one NIC on 2 cores). `ip` is a small C program; the work is the same
//! netlink requests the plugins send.
//!
//! Opt-in (`"inProcessDelegates": true` in railyard-cni's config): the
//! reference plugins stay the default, because they are what users run and
//! what the CNI project tests. What is served here is the subset railyard-cni
//! hands a delegate: `master`, `mode`, `mtu` and `static` IPAM (addresses
//! with gateways, routes). Anything else in the delegate section is refused
//! with the field's name, so a config never silently loses a setting.
//!
//! What a pod sees matches the reference plugins: the interface is created in
//! the pod's namespace under its final name (`ip link add ... netns`), gets
//! its addresses and routes, and comes up; the result names it with its MAC
//! and sandbox, and every address points at it. Two differences: the macvlan
//! MAC is not random but derived from container ID and interface name
//! (locally administered), so the result is known without a read back; and
//! IPv6 duplicate address detection is off on the pod interface (see
//! `no_dad`) where the reference plugins wait for it to finish.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::cni::driver::{AttachRequest, GcRequest, Handler, StatusRequest};
use crate::cni::{netns, CniResult, Interface, IpConfig, NetConf, Route};
use crate::meta::routing::{in_netns, ip_binary, run};
use crate::Error;

/// The plugin types served here.
pub const SERVED: [&str; 2] = ["macvlan", "ipvlan"];

/// Heads this module's errors.
const WHAT: &str = "in-process delegate";

/// The delegate section's keys this module understands; the rest are refused.
const KNOWN: [&str; 7] = [
    "cniVersion",
    "name",
    "type",
    "master",
    "mode",
    "mtu",
    "ipam",
];

/// The handler [`crate::delegate::Delegate::in_process`] runs.
pub fn handler() -> Box<dyn Handler> {
    Box::new(Builtin)
}

struct Builtin;

/// What kind of link and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// `macvlan` or `ipvlan`.
    pub kind: String,
    pub master: String,
    pub mode: String,
    pub mtu: Option<u32>,
    /// `runtimeConfig.mac` (macvlan only): the pod's chosen MAC.
    pub mac: Option<String>,
    pub addresses: Vec<(IpNet, Option<IpAddr>)>,
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

impl LinkSpec {
    /// Reads the delegate config railyard-cni wrote, refusing what is not
    /// served here by name.
    pub fn parse(conf: &NetConf) -> Result<LinkSpec, Error> {
        let kind = conf.plugin_type.clone();
        if !SERVED.contains(&kind.as_str()) {
            return Err(Error::invalid_config(
                "type",
                format!("= {kind:?}: served in process are {}", SERVED.join(", ")),
            ));
        }
        refuse_unserved(&kind, conf.extra.keys().map(String::as_str), "")?;
        let text = |key: &str| conf.extra.get(key).and_then(Value::as_str);
        let master = text("master")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| Error::invalid_config("master", "is required"))?
            .to_owned();
        let modes: &[&str] = if kind == "macvlan" {
            &["bridge", "private", "vepa", "passthru"]
        } else {
            &["l2", "l3", "l3s"]
        };
        let mode = text("mode").unwrap_or(modes[0]).to_owned();
        if !modes.contains(&mode.as_str()) {
            return Err(Error::invalid_config(
                "mode",
                format!("= {mode:?}: {kind} takes one of {}", modes.join(", ")),
            ));
        }
        let mtu = match conf.extra.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .filter(|m| *m >= 68)
                    .ok_or_else(|| {
                        Error::invalid_config(
                            "mtu",
                            format!("= {v}: must be a number of at least 68"),
                        )
                    })?,
            ),
        };
        let ipam = conf.ipam.clone().unwrap_or_default();
        if let Some(t) = ipam
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| *t != "static")
        {
            return Err(Error::invalid_config(
                "ipam.type",
                format!("= {t:?}: the in-process {kind} takes static IPAM only"),
            ));
        }
        let mac = conf
            .runtime_config
            .as_ref()
            .and_then(|rc| rc.get("mac"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if mac.is_some() && kind != "macvlan" {
            return Err(Error::invalid_config(
                "runtimeConfig.mac",
                format!("{kind} shares its master's MAC; only macvlan takes one"),
            ));
        }
        Ok(LinkSpec {
            kind,
            master,
            mode,
            mtu,
            mac,
            addresses: pairs(&ipam, "addresses", "address", "gateway")?,
            routes: pairs(&ipam, "routes", "dst", "gw")?,
        })
    }

    /// The host-side command: the link, made in the pod's namespace under
    /// its final name (a name taken there fails the ADD, as it should).
    pub fn host_batch(&self, ifname: &str, netns: &Path, mac: Option<&str>) -> String {
        let mut line = format!(
            "link add link {} name {ifname} netns {}",
            self.master,
            netns.display()
        );
        if let Some(mac) = mac {
            line.push_str(&format!(" address {mac}"));
        }
        if let Some(mtu) = self.mtu {
            line.push_str(&format!(" mtu {mtu}"));
        }
        line.push_str(&format!(" type {} mode {}\n", self.kind, self.mode));
        line
    }

    /// The pod-side commands: addresses, up, routes (after up: a route
    /// through a down link is refused).
    pub fn pod_batch(&self, ifname: &str) -> String {
        let mut out = String::new();
        for (address, _) in &self.addresses {
            out.push_str(&format!("addr add {address} dev {ifname}\n"));
        }
        out.push_str(&format!("link set {ifname} up\n"));
        for (dst, gw) in &self.routes {
            match gw {
                Some(gw) => out.push_str(&format!("route add {dst} via {gw} dev {ifname}\n")),
                None => out.push_str(&format!("route add {dst} dev {ifname}\n")),
            }
        }
        out
    }

    /// The result the reference plugin would print.
    fn result(&self, ifname: &str, mac: Option<String>, netns: &Path) -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: ifname.to_owned(),
                mac,
                mtu: self.mtu,
                sandbox: Some(netns.display().to_string()),
                ..Interface::default()
            }],
            ips: self
                .addresses
                .iter()
                .map(|(address, gateway)| IpConfig {
                    address: *address,
                    gateway: *gateway,
                    interface: Some(0),
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|(dst, gw)| Route::new(*dst, *gw))
                .collect(),
            ..CniResult::default()
        }
    }
}

/// Refuses the first key of a delegate section (`prefix` before its name in
/// the error) that the in-process `kind` does not serve. railyard-cni calls
/// this on its config before any address is allocated.
pub fn refuse_unserved<'a>(
    kind: &str,
    mut keys: impl Iterator<Item = &'a str>,
    prefix: &str,
) -> Result<(), Error> {
    match keys.find(|k| !KNOWN.contains(k)) {
        None => Ok(()),
        Some(key) => Err(Error::invalid_config(
            format!("{prefix}{key}"),
            format!(
                "is not served by the in-process {kind} (it takes {}); \
                 set inProcessDelegates to false to run the {kind} binary",
                KNOWN[3..6].join(", ")
            ),
        )),
    }
}

/// `ipam.<list>[i].<a>` (required, a CIDR for addresses or destinations) with
/// its optional `<b>` (an address).
fn pairs(
    ipam: &Map<String, Value>,
    list: &str,
    a: &str,
    b: &str,
) -> Result<Vec<(IpNet, Option<IpAddr>)>, Error> {
    let items = match ipam.get(list) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(Error::invalid_config(
                format!("ipam.{list}"),
                format!("= {other}: must be a list"),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |k: &str| format!("ipam.{list}[{i}].{k}");
            let raw = item.get(a).and_then(Value::as_str).unwrap_or_default();
            let net: IpNet = raw.parse().map_err(|_| {
                Error::invalid_config(
                    field(a),
                    format!("= {raw:?}: is not an address with its prefix length"),
                )
            })?;
            let via = match item.get(b).and_then(Value::as_str) {
                None => None,
                Some(g) => Some(g.parse().map_err(|_| {
                    Error::invalid_config(field(b), format!("= {g:?}: is not an IP address"))
                })?),
            };
            Ok((net, via))
        })
        .collect()
}

/// A locally administered unicast MAC from container ID and interface name:
/// stable for one attachment, distinct across attachments (FNV-1a, 40 bits).
pub fn derived_mac(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[3], b[4], b[5], b[6], b[7]
    )
}

/// Turns IPv6 duplicate address detection off on the pod interfaces that get
/// an IPv6 address, before the addresses go on. Why: an address under DAD is
/// unusable for a second or two (the reference plugins wait that long before
/// they answer), and railyard's IPAM already hands each address to one pod
/// only. Runs in the pod's namespace (its `/proc/sys/net`).
fn no_dad(specs: &[(&LinkSpec, &str)]) -> Result<(), Error> {
    for (spec, ifname) in specs {
        if spec.addresses.iter().any(|(a, _)| a.addr().is_ipv6()) {
            let path = format!("/proc/sys/net/ipv6/conf/{ifname}/accept_dad");
            std::fs::write(&path, "0").map_err(|source| Error::Io {
                context: format!("{WHAT}: writing {path}"),
                source,
            })?;
        }
    }
    Ok(())
}

/// The MAC an ipvlan shares with its master, from sysfs.
fn master_mac(master: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{master}/address"))
        .ok()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
}

fn pod_netns(req: &AttachRequest) -> Result<&Path, Error> {
    req.attachment
        .netns
        .as_deref()
        .ok_or_else(|| Error::Internal {
            reason: format!("{WHAT}: the driver passed an ADD or CHECK without CNI_NETNS"),
        })
}

impl Handler for Builtin {
    fn add(&mut self, req: &AttachRequest) -> Result<CniResult, Error> {
        let a = &req.attachment;
        let ns = pod_netns(req)?;
        let config = req.config.to_map();
        match add_all(&a.container_id, ns, &[(a.ifname.as_str(), &config)]) {
            Ok(mut results) => results.pop().ok_or_else(|| Error::Internal {
                reason: format!("{WHAT}: no result for {}", a.ifname),
            }),
            Err(e) => {
                // Leave nothing behind: the link goes, and its addresses with it.
                let _ = del_all(&a.container_id, ns, &[a.ifname.as_str()]);
                Err(e)
            }
        }
    }

    fn del(&mut self, req: &AttachRequest) -> Result<(), Error> {
        let Some(ns) = req.attachment.netns.as_deref() else {
            return Ok(());
        };
        let a = &req.attachment;
        del_all(&a.container_id, ns, &[a.ifname.as_str()])
    }

    fn check(&mut self, req: &AttachRequest) -> Result<(), Error> {
        let spec = LinkSpec::parse(&req.config)?;
        let ns = pod_netns(req)?;
        let ifname = &req.attachment.ifname;
        let ip = ip_binary(WHAT)?;
        let shown = in_netns(WHAT, ns, || {
            run(WHAT, &ip, &["-j", "-d", "addr", "show", "dev", ifname], "")
        })?;
        check_shown(&spec, ifname, &shown)
    }

    fn gc(&mut self, _req: &GcRequest) -> Result<(), Error> {
        // Links live in pod namespaces, which go with their pods.
        Ok(())
    }

    fn status(&mut self, _req: &StatusRequest) -> Result<(), Error> {
        Ok(())
    }
}

/// ADD of every interface of one pod at once: one `ip -batch` in the host
/// namespace makes all the links, one in the pod's sets addresses, links and
/// routes. Per NIC that is a few lines of a batch, not two processes, so a
/// pod with 8 rails costs little more than one with 1. `members` are
/// (interface name, delegate config as railyard-cni wrote it). On an error
/// the links already made stay for the caller's rollback, which deletes
/// them ([`del_all`]).
pub fn add_all(
    container_id: &str,
    netns: &Path,
    members: &[(&str, &Map<String, Value>)],
) -> Result<Vec<CniResult>, Error> {
    let specs = members
        .iter()
        .map(|(_, config)| {
            let bytes = serde_json::to_vec(config).map_err(|e| Error::Internal {
                reason: format!("{WHAT}: serializing a delegate config: {e}"),
            })?;
            LinkSpec::parse(&NetConf::parse(&bytes)?)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let macs: Vec<Option<String>> = specs
        .iter()
        .zip(members)
        .map(|(spec, (ifname, _))| match spec.kind.as_str() {
            "macvlan" => Some(
                spec.mac
                    .clone()
                    .unwrap_or_else(|| derived_mac(container_id, ifname)),
            ),
            _ => master_mac(&spec.master),
        })
        .collect();
    let mut host = String::new();
    let mut pod = String::new();
    for ((spec, (ifname, _)), mac) in specs.iter().zip(members).zip(&macs) {
        let made = mac.as_deref().filter(|_| spec.kind == "macvlan");
        host.push_str(&spec.host_batch(ifname, netns, made));
        pod.push_str(&spec.pod_batch(ifname));
    }
    let ip = ip_binary(WHAT)?;
    run(WHAT, &ip, &["-batch", "-"], &host)?;
    let dad: Vec<(&LinkSpec, &str)> = specs
        .iter()
        .zip(members)
        .map(|(s, (n, _))| (s, *n))
        .collect();
    in_netns(WHAT, netns, || {
        no_dad(&dad)?;
        run(WHAT, &ip, &["-batch", "-"], &pod).map(drop)
    })?;
    Ok(specs
        .iter()
        .zip(members)
        .zip(macs)
        .map(|((spec, (ifname, _)), mac)| spec.result(ifname, mac, netns))
        .collect())
}

/// DEL of the named interfaces of one pod at once, those still there. They
/// are put in one link group and deleted with it: the kernel then waits for
/// one RCU grace period for all of them instead of one per link (deleting a
/// link costs about 25 ms here, nearly all of it that wait). The group number
/// comes from the container ID, so another attachment's links in the same
/// namespace are never in it. A namespace that is gone has nothing left.
pub fn del_all(container_id: &str, netns: &Path, ifnames: &[&str]) -> Result<(), Error> {
    if !netns::is_netns(netns) {
        return Ok(());
    }
    let ip = ip_binary(WHAT)?;
    in_netns(WHAT, netns, || {
        let shown = run(WHAT, &ip, &["-o", "link", "show"], "")?;
        let present: BTreeSet<&str> = shown
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n))
            .collect();
        let gone: Vec<&&str> = ifnames.iter().filter(|n| present.contains(**n)).collect();
        if gone.is_empty() {
            return Ok(());
        }
        let group = del_group(container_id);
        let mut batch = String::new();
        for name in gone {
            batch.push_str(&format!("link set {name} group {group}\n"));
        }
        batch.push_str(&format!("link del group {group}\n"));
        run(WHAT, &ip, &["-batch", "-"], &batch).map(drop)
    })
}

/// A link group for [`del_all`]: never 0, the group every link starts in,
/// and below 2^31, as iproute2 reads the number as a signed int.
fn del_group(container_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in container_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x3fff_ffff) | 0x4000_0000
}

/// CHECK's comparison of `ip -j -d addr show dev IFNAME` with the spec: the
/// link is of the kind asked, up, and holds every address.
pub fn check_shown(spec: &LinkSpec, ifname: &str, shown: &str) -> Result<(), Error> {
    let fail = |why: String| Error::Delegate {
        plugin: spec.kind.clone(),
        code: crate::error::codes::INTERNAL,
        msg: format!("CHECK of {ifname}: {why}"),
        details: None,
    };
    let links: Value = serde_json::from_str(shown)
        .map_err(|e| fail(format!("cannot read `ip -j addr show`: {e}")))?;
    let link = links
        .as_array()
        .and_then(|l| l.first())
        .ok_or_else(|| fail("the interface is missing".into()))?;
    let kind = link["linkinfo"]["info_kind"].as_str().unwrap_or_default();
    if kind != spec.kind {
        return Err(fail(format!("it is a {kind:?} link, not {}", spec.kind)));
    }
    let flags = link["flags"].as_array().into_iter().flatten();
    if !flags.filter_map(Value::as_str).any(|f| f == "UP") {
        return Err(fail("it is down".into()));
    }
    let held: BTreeSet<String> = link["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect();
    if let Some((missing, _)) = spec
        .addresses
        .iter()
        .find(|(a, _)| !held.contains(&a.to_string()))
    {
        return Err(fail(format!("address {missing} is missing")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: Value) -> NetConf {
        NetConf::parse(&serde_json::to_vec(&v).expect("json")).expect("conf")
    }

    fn macvlan() -> Value {
        json!({
            "cniVersion": "1.0.0", "name": "n", "type": "macvlan",
            "master": "rail0", "mode": "bridge",
            "ipam": {"type": "static",
                "addresses": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}, {"address": "fd00::5/64"}],
                "routes": [{"dst": "10.0.0.0/8", "gw": "10.9.0.1"}]}
        })
    }

    #[test]
    fn the_delegate_config_becomes_two_batches() {
        let spec = LinkSpec::parse(&conf(macvlan())).expect("spec");
        assert_eq!(
            spec.host_batch("net1-0", Path::new("/run/netns/p"), Some("02:00:00:00:00:01")),
            "link add link rail0 name net1-0 netns /run/netns/p address 02:00:00:00:00:01 type macvlan mode bridge\n"
        );
        assert_eq!(
            spec.pod_batch("net1-0"),
            "addr add 10.9.0.5/24 dev net1-0\naddr add fd00::5/64 dev net1-0\nlink set net1-0 up\n\
             route add 10.0.0.0/8 via 10.9.0.1 dev net1-0\n"
        );
        let r = spec.result(
            "net1-0",
            Some("02:00:00:00:00:01".into()),
            Path::new("/run/netns/p"),
        );
        assert_eq!(r.interfaces[0].sandbox.as_deref(), Some("/run/netns/p"));
        assert!(r.ips.iter().all(|ip| ip.interface == Some(0)));
        assert_eq!(r.ips[0].gateway, Some("10.9.0.1".parse().expect("ip")));
    }

    #[test]
    fn ipvlan_defaults_to_l2_as_the_reference_plugin_and_takes_mtu() {
        let mut v = macvlan();
        v["type"] = json!("ipvlan");
        v.as_object_mut().expect("object").remove("mode");
        v["mtu"] = json!(9000);
        let spec = LinkSpec::parse(&conf(v)).expect("spec");
        assert_eq!(spec.mode, "l2");
        assert!(spec
            .host_batch("net1-0", Path::new("/p"), None)
            .ends_with("mtu 9000 type ipvlan mode l2\n"));
    }

    #[test]
    fn what_is_not_served_is_refused_by_name() {
        let cases = [
            ("linkInContainer", json!(true), "`linkInContainer`"),
            ("mode", json!("l9"), "`mode`"),
            ("mtu", json!(12), "`mtu`"),
            ("master", json!(""), "`master`"),
        ];
        for (key, value, named) in cases {
            let mut v = macvlan();
            v[key] = value;
            let err = LinkSpec::parse(&conf(v)).expect_err(key).to_string();
            assert!(err.contains(named), "{key}: {err}");
        }
        let mut v = macvlan();
        v["ipam"]["addresses"][1]["address"] = json!("fd00::5");
        let err = LinkSpec::parse(&conf(v)).expect_err("prefix").to_string();
        assert!(err.contains("ipam.addresses[1].address"), "{err}");
        let mut v = macvlan();
        v["ipam"]["type"] = json!("host-local");
        assert!(LinkSpec::parse(&conf(v)).is_err());
        let mut v = macvlan();
        v["type"] = json!("bridge");
        assert!(LinkSpec::parse(&conf(v)).is_err());
    }

    #[test]
    fn derived_macs_are_local_unicast_stable_and_distinct() {
        let a = derived_mac("c1", "net1-0");
        assert!(a.starts_with("02:"), "{a}");
        assert_eq!(a, derived_mac("c1", "net1-0"));
        assert_ne!(a, derived_mac("c1", "net1-1"));
        assert_ne!(a, derived_mac("c2", "net1-0"));
    }

    #[test]
    fn check_reads_kind_state_and_addresses() {
        let spec = LinkSpec::parse(&conf(macvlan())).expect("spec");
        let shown = |kind: &str, flags: Value, addrs: Value| {
            json!([{"ifname": "net1-0", "flags": flags, "linkinfo": {"info_kind": kind},
                    "addr_info": addrs}])
            .to_string()
        };
        let both =
            json!([{"local": "10.9.0.5", "prefixlen": 24}, {"local": "fd00::5", "prefixlen": 64}]);
        assert!(check_shown(
            &spec,
            "net1-0",
            &shown("macvlan", json!(["UP"]), both.clone())
        )
        .is_ok());
        let err = check_shown(
            &spec,
            "net1-0",
            &shown("ipvlan", json!(["UP"]), both.clone()),
        );
        assert!(err.expect_err("kind").to_string().contains("not macvlan"));
        let err = check_shown(&spec, "net1-0", &shown("macvlan", json!([]), both));
        assert!(err.expect_err("down").to_string().contains("down"));
        let one = json!([{"local": "10.9.0.5", "prefixlen": 24}]);
        let err = check_shown(&spec, "net1-0", &shown("macvlan", json!(["UP"]), one));
        assert!(err.expect_err("addr").to_string().contains("fd00::5/64"));
        assert!(check_shown(&spec, "net1-0", "[]").is_err());
    }
}
