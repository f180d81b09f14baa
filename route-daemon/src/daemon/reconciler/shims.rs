//! The gateway shims of macvlan (and host-device) networks: which this host
//! needs (pure, unit tested below) and keeping the kernel's equal to them.
//!
//! A macvlan pod's gateway is an address of its host block IPAM never hands
//! out (`BlockAllocator::gateway`: the first one, or the network's
//! `spec.ipam.gateway` offset), and a macvlan parent cannot
//! reach its own children. So on every rail NIC where this host has a block of
//! such a network, a sibling macvlan holds that gateway: the pods' way to the
//! host and, through its connected route, the host's way back to the pods.
//! host-device pods, on a spare link of the rail, are on the same L2 and need
//! the same (see [`needs_shim`]).
//! Why a shim rather than routes in the pods is in `docs/design/data-paths.md`.
//!
//! The plugin and the gateway come from the accepted spec in the plan meta
//! (`spec.plugin.type`, `spec.ipam.gateway`), as the planner publishes it; the
//! `/networks` key decides nothing here either.

use std::collections::BTreeMap;

use ipnet::IpNet;
use railyard_core::{Gateway, IfName, Plan, PlanMeta, MAX_IFNAME};
use railyard_store::{KeyValue, WatchEvent, WatchUpdate};
use tracing::{info, warn};

use super::Reconciler;
use crate::kernel::{Ensured, Kernel, Shim, SHIM_PREFIX};
use crate::view::{parse_plan_key, PlanKey};

/// The delegate plugin (`spec.plugin.type`, "" when none) and the gateway
/// (`spec.ipam.gateway`) of every network whose plan meta the watch delivered.
#[derive(Debug, Default)]
pub(super) struct Delegates(BTreeMap<String, Delegate>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Delegate {
    kind: String,
    gateway: Gateway,
}

impl Delegates {
    /// Folds a plan watch update in; true when some network's plugin changed.
    /// An unreadable meta keeps what was known, as the view does.
    pub(super) fn apply(&mut self, update: &WatchUpdate) -> bool {
        match update {
            WatchUpdate::Snapshot(range) => {
                let mut now = BTreeMap::new();
                for kv in &range.kvs {
                    if let Some(PlanKey::Meta { network }) = parse_plan_key(&kv.key) {
                        let kind = delegate_of(kv).or_else(|| self.0.get(network).cloned());
                        now.insert(network.to_owned(), kind.unwrap_or_default());
                    }
                }
                let changed = now != self.0;
                self.0 = now;
                changed
            }
            WatchUpdate::Events(events) => {
                let mut changed = false;
                for event in events {
                    let Some(PlanKey::Meta { network }) = parse_plan_key(event.key()) else {
                        continue;
                    };
                    changed |= match event {
                        WatchEvent::Put(kv) => match delegate_of(kv) {
                            Some(kind) => {
                                self.0.insert(network.to_owned(), kind.clone()) != Some(kind)
                            }
                            None => false,
                        },
                        WatchEvent::Delete { .. } => self.0.remove(network).is_some(),
                    };
                }
                changed
            }
        }
    }

    pub(super) fn plugin(&self, network: &str) -> &str {
        self.0.get(network).map_or("", |d| d.kind.as_str())
    }

    /// The network's gateway choice (the default when its meta said none).
    pub(super) fn gateway(&self, network: &str) -> Gateway {
        self.0.get(network).map(|d| d.gateway).unwrap_or_default()
    }
}

fn delegate_of(kv: &KeyValue) -> Option<Delegate> {
    let meta: PlanMeta = kv.decode_json().ok()?;
    let spec = meta.spec.unwrap_or_default();
    // The planner accepted this spec, so its gateway parses; one that does
    // not (a newer planner's?) is read as the default, as a missing one is.
    let gateway = spec
        .ipam_spec()
        .ok()
        .and_then(|i| Gateway::parse(i.gateway.as_ref()).ok())
        .unwrap_or_default();
    Some(Delegate {
        kind: spec.plugin.map(|p| p.kind).unwrap_or_default(),
        gateway,
    })
}

/// Whether pods of a network with this delegate plugin need a shim: those that
/// sit on the rail's L2 segment with an address of this host's block, whose
/// gateway nobody else holds and to which the host has no route of its own.
///
/// - macvlan: a child of the rail NIC, which its parent never talks to.
/// - host-device: a spare link of the rail moved into the pod. It is on the
///   rail's L2 like a macvlan child (through the switch rather than the
///   parent), so without a shim its gateway answers nowhere and a peer's
///   packet for its block, routed to this host's rail NIC, has no way on.
///
/// ptp and ipvlan l3/l3s pods reach the host through their own link or the
/// parent's L3 stack, so the host routes them already; ipvlan l2 would need one
/// too, but the spec validation refuses it (`spec.plugin.args.mode`). sriov VFs
/// are on the rail's L2 as well, but railyard-cni does not run them per rail
/// yet, so they get none until it does.
pub fn needs_shim(plugin: &str) -> bool {
    matches!(plugin, "macvlan" | "host-device")
}

/// The shim's name for `network` on rail `rail` (NIC `nic`): `ry-<rail>-<hash>`,
/// the hash an FNV-1a of network and NIC names in hex, as many digits (up to 8)
/// as IFNAMSIZ leaves. Stable across restarts and hosts, distinct per network
/// on one rail, and it tells an operator the rail at a glance.
pub fn shim_name(network: &str, nic: &str, rail: u32) -> IfName {
    let mut h: u32 = 0x811c_9dc5;
    for b in network.bytes().chain([0]).chain(nic.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let head = format!("{SHIM_PREFIX}{rail}-");
    let digits = MAX_IFNAME.saturating_sub(head.len()).clamp(1, 8);
    let hex = format!("{h:08x}");
    let name = format!("{head}{}", &hex[..digits]);
    IfName::new(&name[..name.len().min(MAX_IFNAME)])
        .unwrap_or_else(|_| unreachable!("ASCII letters, digits and '-', at most 15 bytes"))
}

/// The shim's MAC address: locally administered unicast (`02:` first), the
/// other five bytes an FNV-1a hash of network, NIC and the gateway addresses.
/// The addresses are this host's blocks', so shims of different hosts on one
/// rail differ; the same inputs give the same MAC, so a shim made again keeps
/// the one the pods' neighbour caches hold (see [`Shim::mac`]).
pub fn shim_mac(network: &str, nic: &str, addresses: &[IpNet]) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    let parts = [network, nic]
        .into_iter()
        .chain(text.iter().map(String::as_str));
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let b = h.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

/// The shims host `me` needs, sorted by name: for every network (name, its
/// delegate plugin, its gateway choice, its plan) whose plugin [`needs_shim`],
/// one per NIC where `me` has a block, holding the gateway of each of those
/// blocks (one per family) with the block's prefix length. A network without
/// gateways gets none (validation refuses `none` for these plugins anyway).
/// Two shims hashing to one name (a 1-in-4-billion chance per rail) keep the
/// first network's; the other is logged.
pub fn wanted_shims<'a>(
    me: &str,
    networks: impl IntoIterator<Item = (&'a str, &'a str, Gateway, &'a Plan)>,
) -> Vec<Shim> {
    let mut out: BTreeMap<IfName, Shim> = BTreeMap::new();
    for (network, plugin, gateway, plan) in networks {
        if !needs_shim(plugin) {
            continue;
        }
        let Some(mine) = plan.hosts.get(me) else {
            continue;
        };
        let mut per_nic: BTreeMap<IfName, (u32, Vec<IpNet>)> = BTreeMap::new();
        for b in &mine.blocks {
            let Some(gateway) = gateway.address(b.cidr) else {
                continue;
            };
            let entry = per_nic.entry(b.nic).or_insert((b.interface, Vec::new()));
            if let Ok(net) = IpNet::new(gateway, b.cidr.prefix_len()) {
                entry.1.push(net);
            }
        }
        for (nic, (rail, mut addresses)) in per_nic {
            addresses.sort_unstable();
            let shim = Shim {
                name: shim_name(network, &nic, rail),
                parent: nic,
                mac: shim_mac(network, &nic, &addresses),
                network: network.to_owned(),
                addresses,
            };
            match out.get(&shim.name) {
                Some(first) => warn!(
                    shim = %shim.name,
                    network,
                    kept = %first.network,
                    "two networks' gateway shims hash to one name; this network's pods on that rail cannot reach the host"
                ),
                None => {
                    out.insert(shim.name, shim);
                }
            }
        }
    }
    out.into_values().collect()
}

impl<K: Kernel + 'static> Reconciler<K> {
    /// Makes the kernel hold exactly the wanted shims of ours: ensures each
    /// (creating, repairing), removes our others. A link of someone else's is
    /// never touched (a conflict, logged on every pass). True when all went
    /// through; a refusal (the parent NIC missing) or an error is retried.
    pub(super) async fn sync_shims(&self) -> bool {
        let networks: Vec<(&str, &str, Gateway, &Plan)> = self
            .view
            .networks()
            .filter_map(|n| {
                let plan = self.view.plan(n)?;
                Some((n, self.delegates.plugin(n), self.delegates.gateway(n), plan))
            })
            .collect();
        let want = wanted_shims(&self.cfg.node_name, networks);
        let owned = match self.kernel.owned_shims().await {
            Ok(owned) => owned,
            Err(e) => {
                warn!(error = %e, "cannot list gateway shims");
                return false;
            }
        };
        let mut ok = true;
        for shim in &want {
            match self.kernel.ensure_shim(shim).await {
                Ok(Ensured::Unchanged) => {}
                Ok(Ensured::Created) => info!(%shim, "gateway shim created"),
                Ok(Ensured::Repaired) => info!(%shim, "gateway shim repaired"),
                Ok(Ensured::Conflict) => warn!(
                    %shim,
                    "a link that is not railyard's (no railyard: alias) holds the gateway shim's name; left alone, so this network's pods on that rail cannot reach the host"
                ),
                Ok(Ensured::Refused(why)) => {
                    warn!(%shim, reason = %why, "gateway shim refused; retrying");
                    ok = false;
                }
                Err(e) => {
                    warn!(%shim, error = %e, "cannot make gateway shim; retrying");
                    ok = false;
                }
            }
        }
        for gone in owned
            .iter()
            .filter(|s| !want.iter().any(|w| w.name == s.name))
        {
            match self.kernel.remove_shim(&gone.name).await {
                Ok(true) => info!(shim = %gone.name, "gateway shim removed"),
                Ok(false) => {}
                Err(e) => {
                    warn!(shim = %gone.name, error = %e, "cannot remove gateway shim; retrying");
                    ok = false;
                }
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use railyard_core::{Block, HostPlan};

    fn block(rail: u32, nic: &str, cidr: &str) -> Block {
        Block {
            interface: rail,
            nic: nic.parse().expect("nic"),
            nic_address: "10.0.0.1".parse().expect("addr"),
            cidr: cidr.parse().expect("cidr"),
        }
    }

    fn plan(network: &str, hosts: &[(&str, Vec<Block>)]) -> Plan {
        Plan {
            network: network.to_owned(),
            hosts: hosts
                .iter()
                .map(|(h, blocks)| {
                    // Through JSON: the entry's other fields keep their defaults.
                    let entry: HostPlan =
                        serde_json::from_value(serde_json::json!({"index": 0, "blocks": blocks}))
                            .expect("host plan");
                    ((*h).to_owned(), entry)
                })
                .collect(),
            ..Plan::default()
        }
    }

    fn addrs(shim: &Shim) -> Vec<String> {
        shim.addresses.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_macvlan_network_gets_one_shim_per_rail_with_each_blocks_gateway() {
        let p = plan(
            "mv",
            &[
                (
                    "me",
                    vec![
                        block(0, "eth1", "192.168.1.0/24"),
                        block(0, "eth1", "fd00:0:0:1::/64"),
                        block(1, "eth2", "192.168.65.0/24"),
                    ],
                ),
                ("peer", vec![block(0, "eth1", "192.168.2.0/24")]),
            ],
        );
        let shims = wanted_shims("me", [("mv", "macvlan", Gateway::default(), &p)]);
        let by_parent: BTreeMap<String, &Shim> =
            shims.iter().map(|s| (s.parent.to_string(), s)).collect();
        assert_eq!(shims.len(), 2, "{shims:?}");
        assert_eq!(
            addrs(by_parent["eth1"]),
            ["192.168.1.1/24", "fd00:0:0:1::1/64"]
        );
        assert_eq!(addrs(by_parent["eth2"]), ["192.168.65.1/24"]);
        assert!(by_parent["eth1"].name.starts_with("ry-0-"));
        assert!(by_parent["eth2"].name.starts_with("ry-1-"));
        assert!(shims
            .iter()
            .all(|s| s.network == "mv" && s.alias() == "railyard:mv"));
        // The gateway is the one IPAM hands the pods.
        let cidr = "192.168.1.0/24".parse().expect("cidr");
        assert_eq!(
            Some(by_parent["eth1"].addresses[0].addr()),
            railyard_core::BlockAllocator::new(cidr, &[]).gateway()
        );
    }

    #[test]
    fn a_chosen_gateway_is_what_the_shim_holds() {
        let p = plan(
            "mv",
            &[(
                "me",
                vec![
                    block(0, "eth1", "192.168.1.0/24"),
                    block(0, "eth1", "fd00:0:0:1::/64"),
                ],
            )],
        );
        let shims = wanted_shims("me", [("mv", "macvlan", Gateway::Offset(-2), &p)]);
        assert_eq!(
            addrs(&shims[0]),
            ["192.168.1.254/24", "fd00::1:ffff:ffff:ffff:fffe/64"]
        );
        // Same IPAM as the pods': the allocator reserves exactly that address.
        let cidr = "192.168.1.0/24".parse().expect("cidr");
        assert_eq!(
            Some(shims[0].addresses[0].addr()),
            railyard_core::BlockAllocator::with_gateway(cidr, &[], Gateway::Offset(-2)).gateway()
        );
        // Another MAC than the default gateway's shim: a new address, a new shim.
        let default = wanted_shims("me", [("mv", "macvlan", Gateway::default(), &p)]);
        assert_eq!(default[0].name, shims[0].name);
        assert_ne!(default[0].mac, shims[0].mac);
        assert!(wanted_shims("me", [("mv", "macvlan", Gateway::None, &p)]).is_empty());
    }

    #[test]
    fn the_gateway_comes_from_the_accepted_spec_in_the_meta() {
        let mut d = Delegates::default();
        let spec = serde_json::json!({
            "subnet": "10.0.0.0/16",
            "ipam": {"hostBlock": 8, "interfaceBlock": 0, "gateway": {"offset": 9}},
            "plugin": {"type": "macvlan"},
        });
        let meta = serde_json::json!({"network": "g", "interfaces": [], "spec": spec});
        let kv = kv(
            railyard_core::keys::plan_meta("g"),
            serde_json::to_vec(&meta).expect("json"),
        );
        assert!(d.apply(&WatchUpdate::Events(vec![WatchEvent::Put(kv)])));
        assert_eq!(
            (d.plugin("g"), d.gateway("g")),
            ("macvlan", Gateway::Offset(9))
        );
        assert_eq!(d.gateway("unknown"), Gateway::default());
    }

    #[test]
    fn only_l2_networks_and_only_this_hosts_blocks_get_shims() {
        let p = plan("n", &[("peer", vec![block(0, "eth1", "10.9.0.0/24")])]);
        assert!(
            wanted_shims("me", [("n", "macvlan", Gateway::default(), &p)]).is_empty(),
            "no block here"
        );
        let mine = plan("n", &[("me", vec![block(0, "eth1", "10.9.1.0/24")])]);
        for plugin in ["", "ipvlan", "ptp", "sriov", "railyard-cni"] {
            assert!(
                wanted_shims("me", [("n", plugin, Gateway::default(), &mine)]).is_empty(),
                "{plugin}"
            );
        }
        for plugin in ["macvlan", "host-device"] {
            assert_eq!(
                wanted_shims("me", [("n", plugin, Gateway::default(), &mine)]).len(),
                1,
                "{plugin}"
            );
        }
    }

    #[test]
    fn two_networks_on_one_rail_get_two_shims() {
        let a = plan("a", &[("me", vec![block(0, "eth1", "10.1.0.0/24")])]);
        let b = plan("b", &[("me", vec![block(0, "eth1", "10.2.0.0/24")])]);
        let shims = wanted_shims(
            "me",
            [
                ("a", "macvlan", Gateway::default(), &a),
                ("b", "macvlan", Gateway::default(), &b),
            ],
        );
        assert_eq!(shims.len(), 2);
        assert_ne!(shims[0].name, shims[1].name);
        assert!(shims.iter().all(|s| s.parent == "eth1"));
    }

    #[test]
    fn macs_are_stable_local_unicast_and_differ_between_hosts() {
        let gw = |s: &str| vec![s.parse::<IpNet>().expect("net")];
        let a = shim_mac("rails", "eth1", &gw("192.168.0.1/24"));
        assert_eq!(
            a,
            shim_mac("rails", "eth1", &gw("192.168.0.1/24")),
            "stable"
        );
        assert_eq!(a[0], 0x02, "locally administered, unicast");
        assert_ne!(
            a,
            shim_mac("rails", "eth1", &gw("192.168.1.1/24")),
            "another host"
        );
        assert_ne!(a, shim_mac("other", "eth1", &gw("192.168.0.1/24")));
    }

    #[test]
    fn names_are_stable_short_and_distinct() {
        let n = shim_name("rails", "eth1", 0);
        assert_eq!(n, shim_name("rails", "eth1", 0), "stable");
        assert_eq!(n.len(), 13, "{n}");
        assert_ne!(n, shim_name("rails", "eth2", 0));
        assert_ne!(n, shim_name("other", "eth1", 0));
        for rail in [9, 99, 999, 9_999, 4_000_000_000] {
            let long = shim_name(
                "a-network-name-of-sixty-three-characters-is-allowed-by-dns-rule",
                "enp175s0f1np1",
                rail,
            );
            assert!(
                long.len() <= MAX_IFNAME && long.starts_with(&format!("ry-{rail}-")),
                "{long}"
            );
        }
    }

    fn kv(key: String, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            value,
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        }
    }

    fn meta_kv(network: &str, plugin: Option<&str>) -> KeyValue {
        let spec = serde_json::json!({
            "subnet": "10.0.0.0/16",
            "plugin": plugin.map(|p| serde_json::json!({"type": p})),
        });
        let meta = serde_json::json!({"network": network, "interfaces": [], "spec": spec});
        kv(
            railyard_core::keys::plan_meta(network),
            serde_json::to_vec(&meta).expect("json"),
        )
    }

    #[test]
    fn delegates_follow_the_plan_metas() {
        let mut d = Delegates::default();
        let snapshot = WatchUpdate::Snapshot(railyard_store::Range {
            kvs: vec![meta_kv("a", Some("macvlan")), meta_kv("b", None)],
            ..railyard_store::Range::default()
        });
        assert!(d.apply(&snapshot));
        assert_eq!(
            (d.plugin("a"), d.plugin("b"), d.plugin("c")),
            ("macvlan", "", "")
        );
        assert!(!d.apply(&snapshot), "the same listing changes nothing");

        let put = |kv| WatchUpdate::Events(vec![WatchEvent::Put(kv)]);
        assert!(d.apply(&put(meta_kv("b", Some("macvlan")))));
        assert!(!d.apply(&put(meta_kv("b", Some("macvlan")))));
        let mut garbage = meta_kv("b", None);
        garbage.value = b"{".to_vec();
        assert!(
            !d.apply(&put(garbage)),
            "an unreadable meta keeps what was known"
        );
        assert_eq!(d.plugin("b"), "macvlan");
        let host_key = kv(railyard_core::keys::plan_host("a", "me"), b"{}".to_vec());
        assert!(!d.apply(&put(host_key)), "host entries are not metas");

        let delete = WatchUpdate::Events(vec![WatchEvent::Delete {
            key: railyard_core::keys::plan_meta("a"),
            mod_revision: 2,
        }]);
        assert!(d.apply(&delete));
        assert_eq!(d.plugin("a"), "");
    }
}
