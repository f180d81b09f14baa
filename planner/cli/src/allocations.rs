//! `railyard get allocations` and `railyard who ADDRESS`: who holds which
//! address, without etcdctl.
//!
//! The source is the allocation records the route-daemons mirror to etcd
//! (`/railyard/v1/allocations/<net>/<host>/<containerID>/<ifname>`, one per
//! attachment, see docs/etcd-keys.md). The mirror trails the daemon's log by
//! at most one batch interval, so an address handed out a moment ago may not
//! show yet; the answer says where it looked. Selection and rendering are pure
//! and tested here; [`load`] is the only IO.

use std::net::IpAddr;

use railyard_core::keys;
use railyard_core::Plan;
use railyard_store::Store;
use serde::Serialize;

use crate::check::AllocationRecord;
use crate::error::Result;
use crate::table;

/// One pod interface on one rail: a row of `railyard get allocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationRow {
    pub network: String,
    pub host: String,
    /// `namespace/name`, or empty when the runtime did not say (no K8S_POD_*).
    pub pod: String,
    pub container_id: String,
    /// The attachment's interface (Multus's `net1`) and the pod interface
    /// index of this rail within it.
    pub ifname: String,
    pub rail: u32,
    /// The host NIC the pod's interface hangs off.
    pub nic: String,
    pub addresses: Vec<String>,
}

/// What `get allocations` keeps; every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub network: Option<String>,
    pub host: Option<String>,
    /// `namespace/name`, or a bare name (any namespace).
    pub pod: Option<String>,
}

impl Filter {
    fn keeps(&self, row: &AllocationRow) -> bool {
        let pod_matches = |want: &str| match want.split_once('/') {
            Some(_) => row.pod == want,
            None => row.pod.rsplit('/').next() == Some(want),
        };
        self.network.as_ref().is_none_or(|n| *n == row.network)
            && self.host.as_ref().is_none_or(|h| *h == row.host)
            && self.pod.as_deref().is_none_or(pod_matches)
    }
}

/// Records as read: `(key, record)` plus the keys that did not decode.
#[derive(Debug, Default)]
pub struct Records {
    pub records: Vec<(String, AllocationRecord)>,
    /// `(key, why)`: shown, never silently dropped: an unreadable record
    /// still holds its addresses.
    pub unreadable: Vec<(String, String)>,
}

/// Reads the records of `network`, or of every network.
pub async fn load(store: &dyn Store, network: Option<&str>) -> Result<Records> {
    let prefix = match network {
        Some(n) => keys::allocations_of(n),
        None => keys::ALLOCATIONS.to_owned(),
    };
    let mut out = Records::default();
    for kv in store.range(&prefix).await?.kvs {
        match kv.decode_json::<AllocationRecord>() {
            Ok(r) => out.records.push((kv.key, r)),
            Err(e) => out.unreadable.push((kv.key, e.to_string())),
        }
    }
    Ok(out)
}

/// One row per rail of every record `filter` keeps, sorted by network,
/// host, pod, interface and rail.
pub fn rows(records: &[(String, AllocationRecord)], filter: &Filter) -> Vec<AllocationRow> {
    let mut rows: Vec<AllocationRow> = records
        .iter()
        .flat_map(|(key, r)| {
            // /railyard/v1/allocations/<net>/<host>/<cid>/<ifname>
            let host = key
                .strip_prefix(keys::ALLOCATIONS)
                .and_then(|rest| rest.split('/').nth(1))
                .unwrap_or_default()
                .to_owned();
            let pod = if r.pod.name.is_empty() {
                String::new()
            } else {
                format!("{}/{}", r.pod.namespace, r.pod.name)
            };
            r.nics.iter().map(move |nic| AllocationRow {
                network: r.id.network.clone(),
                host: host.clone(),
                pod: pod.clone(),
                container_id: r.id.container_id.clone(),
                ifname: r.id.ifname.clone(),
                rail: nic.interface,
                nic: nic.nic.to_string(),
                addresses: nic.addresses.iter().map(|a| a.addr().to_string()).collect(),
            })
        })
        .filter(|row| filter.keeps(row))
        .collect();
    rows.sort_by(|a, b| {
        (
            &a.network,
            &a.host,
            &a.pod,
            &a.container_id,
            &a.ifname,
            a.rail,
        )
            .cmp(&(
                &b.network,
                &b.host,
                &b.pod,
                &b.container_id,
                &b.ifname,
                b.rail,
            ))
    });
    rows
}

/// Container IDs are 64 hex digits; a table shows the first 12, as
/// `crictl ps` does (JSON keeps them whole).
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

pub fn table(rows: &[AllocationRow], unreadable: &[(String, String)]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.network.clone(),
                r.host.clone(),
                if r.pod.is_empty() {
                    "-".into()
                } else {
                    r.pod.clone()
                },
                short(&r.container_id).to_owned(),
                r.ifname.clone(),
                r.rail.to_string(),
                r.nic.clone(),
                r.addresses.join(","),
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "NETWORK",
            "HOST",
            "POD",
            "CONTAINER",
            "IF",
            "RAIL",
            "NIC",
            "ADDRESSES",
        ],
        &body,
    );
    for (key, why) in unreadable {
        out.push_str(&format!("unreadable record {key}: {why}\n"));
    }
    out
}

/// The answer to `railyard who ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Who {
    pub address: IpAddr,
    /// The interfaces holding it: one, or (a defect to report) several.
    pub holders: Vec<AllocationRow>,
    /// Where the address belongs by the plans, held or not.
    pub block: Option<BlockOf>,
}

/// The planned block an address lies in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockOf {
    pub network: String,
    pub host: String,
    pub rail: u32,
    pub nic: String,
    pub cidr: String,
}

/// Who holds `address`, and which host's block it belongs to.
pub fn who(address: IpAddr, records: &[(String, AllocationRecord)], plans: &[Plan]) -> Who {
    let holders = rows(records, &Filter::default())
        .into_iter()
        .filter(|r| r.addresses.iter().any(|a| a.parse() == Ok(address)))
        .collect();
    let block = plans.iter().find_map(|p| {
        p.hosts.iter().find_map(|(host, h)| {
            let b = h.blocks.iter().find(|b| b.cidr.contains(&address))?;
            Some(BlockOf {
                network: p.network.clone(),
                host: host.clone(),
                rail: b.interface,
                nic: b.nic.to_string(),
                cidr: b.cidr.to_string(),
            })
        })
    });
    Who {
        address,
        holders,
        block,
    }
}

impl Who {
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self.holders.as_slice() {
            [] => out.push_str(&format!("nobody holds {}\n", self.address)),
            holders => {
                if holders.len() > 1 {
                    out.push_str(&format!(
                        "{} is held {} times: a duplicate, please report it\n",
                        self.address,
                        holders.len()
                    ));
                }
                for h in holders {
                    let pod = if h.pod.is_empty() {
                        "a pod the runtime did not name".to_owned()
                    } else {
                        format!("pod {}", h.pod)
                    };
                    out.push_str(&format!(
                        "{} is held by {pod} (container {}, interface {} rail {}) on host {}, \
                         NIC {}, network {}\n",
                        self.address,
                        short(&h.container_id),
                        h.ifname,
                        h.rail,
                        h.host,
                        h.nic,
                        h.network
                    ));
                }
            }
        }
        match &self.block {
            Some(b) => out.push_str(&format!(
                "it lies in block {} of host {} (rail {}, NIC {}) of network {}\n",
                b.cidr, b.host, b.rail, b.nic, b.network
            )),
            None => out.push_str("it lies in no planned block\n"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(
        net: &str,
        host: &str,
        cid: &str,
        pod: Option<(&str, &str)>,
        nics: &[(u32, &str, &[&str])],
    ) -> (String, AllocationRecord) {
        let nics: Vec<_> = nics
            .iter()
            .map(|(rail, nic, addrs)| {
                json!({"nic": nic, "interface": rail, "addresses": addrs, "gateways": [], "routes": []})
            })
            .collect();
        let pod = pod.map_or(
            json!({}),
            |(ns, name)| json!({"namespace": ns, "name": name}),
        );
        let r = json!({"id": {"network": net, "containerId": cid, "ifname": "net1"}, "pod": pod, "nics": nics});
        (
            keys::allocation(net, host, cid, "net1"),
            serde_json::from_value(r).expect("record"),
        )
    }

    fn sample() -> Vec<(String, AllocationRecord)> {
        vec![
            record(
                "n1",
                "h2",
                "bbbbbbbbbbbbbbbbbb",
                Some(("default", "web-0")),
                &[
                    (0, "eth0", &["192.168.1.3/26"]),
                    (1, "eth1", &["192.168.65.3/26", "fd00:1::3/112"]),
                ],
            ),
            record(
                "n1",
                "h1",
                "aaaaaaaaaaaaaaaaaa",
                Some(("team", "web-0")),
                &[(0, "eth0", &["192.168.0.3/26"])],
            ),
            record("n2", "h1", "cccc", None, &[(0, "eth0", &["10.9.0.3/24"])]),
        ]
    }

    #[test]
    fn rows_are_one_per_rail_sorted_and_filtered() {
        let all = rows(&sample(), &Filter::default());
        let keys: Vec<(&str, &str, u32)> = all
            .iter()
            .map(|r| (r.network.as_str(), r.host.as_str(), r.rail))
            .collect();
        assert_eq!(
            keys,
            [
                ("n1", "h1", 0),
                ("n1", "h2", 0),
                ("n1", "h2", 1),
                ("n2", "h1", 0)
            ]
        );
        assert_eq!(all[2].addresses, ["192.168.65.3", "fd00:1::3"]);

        let f = |network: Option<&str>, host: Option<&str>, pod: Option<&str>| Filter {
            network: network.map(Into::into),
            host: host.map(Into::into),
            pod: pod.map(Into::into),
        };
        assert_eq!(rows(&sample(), &f(Some("n2"), None, None)).len(), 1);
        assert_eq!(rows(&sample(), &f(None, Some("h1"), None)).len(), 2);
        assert_eq!(
            rows(&sample(), &f(None, None, Some("default/web-0"))).len(),
            2
        );
        assert_eq!(
            rows(&sample(), &f(None, None, Some("web-0"))).len(),
            3,
            "any namespace"
        );
        assert!(rows(&sample(), &f(Some("n1"), Some("h1"), Some("default/web-0"))).is_empty());
    }

    #[test]
    fn the_table_shortens_container_ids_and_lists_unreadable_records() {
        let t = table(
            &rows(&sample(), &Filter::default()),
            &[(
                "/railyard/v1/allocations/n1/h3/x/net1".into(),
                "bad json".into(),
            )],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NETWORK  HOST  POD"), "{t}");
        assert!(
            lines[1].contains("team/web-0") && lines[1].contains("aaaaaaaaaaaa "),
            "{t}"
        );
        assert!(!t.contains("aaaaaaaaaaaaa"), "{t}");
        assert!(lines[4].contains(" - ") && lines[4].contains("cccc"), "{t}");
        assert!(
            lines[5].contains("unreadable record") && lines[5].contains("h3"),
            "{t}"
        );
    }

    #[test]
    fn who_names_the_holder_and_the_block_or_nobody() {
        let plan: Plan = serde_json::from_value(json!({
            "network": "n1",
            "interfaces": [],
            "hosts": {"h2": {"index": 1, "blocks": [
                {"interface": 1, "nic": "eth1", "nicAddress": "10.0.2.12", "cidr": "192.168.65.0/26"}
            ]}}
        }))
        .expect("plan");
        let held = who(
            "192.168.65.3".parse().expect("ip"),
            &sample(),
            std::slice::from_ref(&plan),
        );
        assert_eq!(held.holders.len(), 1);
        let text = held.render();
        assert!(
            text.contains("held by pod default/web-0") && text.contains("rail 1"),
            "{text}"
        );
        assert!(text.contains("block 192.168.65.0/26 of host h2"), "{text}");

        let v6 = who("fd00:1::3".parse().expect("ip"), &sample(), &[]);
        assert_eq!(v6.holders[0].host, "h2");

        let free = who("192.168.65.9".parse().expect("ip"), &sample(), &[plan]);
        let text = free.render();
        assert!(text.starts_with("nobody holds 192.168.65.9"), "{text}");
        assert!(text.contains("block 192.168.65.0/26"), "{text}");

        let mut twice = sample();
        twice.push(record(
            "n1",
            "h9",
            "dddd",
            None,
            &[(1, "eth1", &["192.168.65.3/26"])],
        ));
        let dup = who("192.168.65.3".parse().expect("ip"), &twice, &[]);
        assert!(dup.render().contains("held 2 times"), "{}", dup.render());
        assert!(dup.render().contains("no planned block"));
    }
}
