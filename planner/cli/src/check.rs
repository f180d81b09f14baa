//! `railyard check`: every pod to every other pod on every rail, printed as a table
//! like multi-nic-cni's concheck, plus a check that cross-host traffic on rail j
//! leaves through the host's rail-j NIC.
//!
//! The pods come from the allocation records the route-daemons mirror to etcd. The
//! probes run where the pods are: this module decides what to probe and how to
//! report it (pure); `check_run` runs the probes (in the local cluster, `ping`
//! inside the pod's network namespace).

use std::collections::BTreeMap;
use std::net::IpAddr;

use petgraph::graphmap::UnGraphMap;
use petgraph::unionfind::UnionFind;
use railyard_core::keys;
use serde::Serialize;

/// An allocation record as mirrored to etcd (`/railyard/v1/allocations/...`).
pub use railyard_core::ipam::AllocationRecord;

/// One attached pod of the network being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub host: String,
    /// Rail index -> the pod's address on that rail (primary family first).
    pub addresses: BTreeMap<u32, Vec<IpAddr>>,
}

/// Pods of `network` from allocation records (`key`, record) as read from etcd.
pub fn pods_of(network: &str, records: &[(String, AllocationRecord)]) -> Vec<Pod> {
    let mut pods: Vec<Pod> = records
        .iter()
        // A retained attachment holds a StatefulSet pod's addresses while
        // no pod has them: nothing answers there.
        .filter(|(_, r)| r.id.network == network && !r.id.is_retained())
        .map(|(key, r)| {
            // /railyard/v1/allocations/<net>/<host>/<cid>/<ifname>
            let host = key
                .strip_prefix(keys::ALLOCATIONS)
                .and_then(|rest| rest.split('/').nth(1))
                .unwrap_or_default()
                .to_string();
            let name = if r.pod.name.is_empty() {
                r.id.container_id.clone()
            } else {
                r.pod.name.clone()
            };
            let mut addresses: BTreeMap<u32, Vec<IpAddr>> = BTreeMap::new();
            for nic in &r.nics {
                addresses
                    .entry(nic.interface)
                    .or_default()
                    .extend(nic.addresses.iter().map(|a| a.addr()));
            }
            Pod {
                name,
                host,
                addresses,
            }
        })
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    pods
}

/// One transfer of the throughput column: on `rail`, from pod `from` to
/// pod `to` at `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub rail: u32,
    pub from: usize,
    pub to: usize,
    pub dst: IpAddr,
}

/// One transfer per rail, between the first two pods holding the rail,
/// preferring two on different hosts: the path railyard's routes carry.
pub fn transfers(pods: &[Pod]) -> Vec<Transfer> {
    let rails: std::collections::BTreeSet<u32> = pods
        .iter()
        .flat_map(|p| p.addresses.keys().copied())
        .collect();
    let mut out = Vec::new();
    for rail in rails {
        let on: Vec<usize> = (0..pods.len())
            .filter(|&i| pods[i].addresses.contains_key(&rail))
            .collect();
        let pair = on
            .iter()
            .flat_map(|&a| on.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a != b)
            .min_by_key(|&(a, b)| pods[a].host == pods[b].host);
        let Some((from, to)) = pair else { continue };
        let Some(&dst) = pods[to].addresses.get(&rail).and_then(|a| a.first()) else {
            continue;
        };
        out.push(Transfer {
            rail,
            from,
            to,
            dst,
        });
    }
    out
}

/// One ping: from a pod to an address of another pod on one rail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Probe {
    pub from: usize,
    pub to: usize,
    pub rail: u32,
    pub dst: IpAddr,
}

/// Every (from, to, rail, family) probe; with `peers`, each pod probes only that
/// many others, which keeps a 1,000-pod check linear instead of quadratic.
///
/// The peers are the next ones in an order that deals pods out host by host
/// (h0's first pod, h1's first, ..., h0's second, ...), so with fewer peers than
/// hosts every probe crosses hosts: the paths that need railyard's routes. Name
/// order would pick mostly pods of the same host. A cyclic shift of one order
/// also means every pod is probed exactly as often as it probes.
pub fn probes(pods: &[Pod], peers: Option<usize>) -> Vec<Probe> {
    let n = pods.len();
    let k = peers
        .unwrap_or(n.saturating_sub(1))
        .min(n.saturating_sub(1));
    let order = dealt_by_host(pods);
    let mut position = vec![0; n];
    for (at, &pod) in order.iter().enumerate() {
        position[pod] = at;
    }
    let mut out = Vec::new();
    for from in 0..n {
        for step in 1..=k {
            let to = order[(position[from] + step) % n];
            for (rail, addrs) in &pods[to].addresses {
                if !pods[from].addresses.contains_key(rail) {
                    continue;
                }
                for dst in addrs {
                    out.push(Probe {
                        from,
                        to,
                        rail: *rail,
                        dst: *dst,
                    });
                }
            }
        }
    }
    out
}

/// Pod indexes round-robin over hosts (hosts and pods in name order).
fn dealt_by_host(pods: &[Pod]) -> Vec<usize> {
    let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in pods.iter().enumerate() {
        by_host.entry(p.host.as_str()).or_default().push(i);
    }
    let deepest = by_host.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|round| by_host.values().filter_map(move |v| v.get(round).copied()))
        .collect()
}

/// A row of the concheck-style table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub from: String,
    pub to: String,
    pub connected: usize,
    pub total: usize,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub network: String,
    pub rows: Vec<Row>,
    pub probes: usize,
    pub failed: usize,
    /// Per rail, the groups of pods that reach each other; one group means the
    /// rail is fully connected.
    pub partitions: BTreeMap<u32, Vec<Vec<String>>>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

/// Builds the report from probe outcomes (`results[i]` for `probes[i]`).
pub fn report(network: &str, pods: &[Pod], probes: &[Probe], results: &[bool]) -> Report {
    let mut rows: BTreeMap<(usize, usize), Row> = BTreeMap::new();
    let mut graphs: BTreeMap<u32, UnGraphMap<usize, ()>> = BTreeMap::new();
    for (p, ok) in probes.iter().zip(results) {
        let row = rows.entry((p.from, p.to)).or_insert_with(|| Row {
            from: pods[p.from].name.clone(),
            to: pods[p.to].name.clone(),
            connected: 0,
            total: 0,
            addresses: Vec::new(),
        });
        row.total += 1;
        row.addresses.push(p.dst);
        let g = graphs.entry(p.rail).or_default();
        g.add_node(p.from);
        g.add_node(p.to);
        if *ok {
            row.connected += 1;
            g.add_edge(p.from, p.to, ());
        }
    }
    let partitions = graphs
        .into_iter()
        .map(|(rail, g)| (rail, components(&g, pods)))
        .collect();
    let failed = results.iter().filter(|ok| !**ok).count();
    Report {
        network: network.to_string(),
        rows: rows.into_values().collect(),
        probes: probes.len(),
        failed,
        partitions,
    }
}

fn components(g: &UnGraphMap<usize, ()>, pods: &[Pod]) -> Vec<Vec<String>> {
    let mut uf = UnionFind::new(pods.len());
    for (a, b, _) in g.all_edges() {
        uf.union(a, b);
    }
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for n in g.nodes() {
        groups
            .entry(uf.find(n))
            .or_default()
            .push(pods[n].name.clone());
    }
    let mut out: Vec<Vec<String>> = groups.into_values().collect();
    for g in &mut out {
        g.sort();
    }
    out.sort();
    out
}

/// The table, in multi-nic-cni's concheck layout.
pub fn render(r: &Report) -> String {
    let rule = "###########################################\n";
    let mut out = format!("{rule}## Connection Check: {}\n{rule}", r.network);
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let addrs: Vec<String> = row.addresses.iter().map(ToString::to_string).collect();
            vec![
                row.from.clone(),
                row.to.clone(),
                format!("{}/{}", row.connected, row.total),
                format!("[{}]", addrs.join(" ")),
            ]
        })
        .collect();
    out.push_str(&crate::table::render(
        &["FROM", "TO", "CONNECTED/TOTAL", "IPs"],
        &rows,
    ));
    out.push_str(rule);
    for (rail, groups) in &r.partitions {
        if groups.len() > 1 {
            out.push_str(&format!(
                "rail {rail}: {} partitions: {groups:?}\n",
                groups.len()
            ));
        }
    }
    out.push_str(&format!(
        "{} of {} probes connected{}\n",
        r.probes - r.failed,
        r.probes,
        if r.ok() { "" } else { " (FAILED)" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, host: &str, rails: &[(u32, &str)]) -> Pod {
        Pod {
            name: name.into(),
            host: host.into(),
            addresses: rails
                .iter()
                .map(|(r, a)| (*r, vec![a.parse().unwrap()]))
                .collect(),
        }
    }

    #[test]
    fn retained_attachments_are_no_pods() {
        let record = |cid: &str| {
            let r: AllocationRecord = serde_json::from_value(serde_json::json!({
                "id": {"network": "n", "containerId": cid, "ifname": "net1"},
                "pod": {"namespace": "db", "name": "pg-0"},
                "nics": [{"nic": "eth0", "interface": 0, "addresses": ["10.0.0.3/24"],
                          "gateways": [], "routes": []}],
            }))
            .unwrap();
            (format!("{}n/h0/{cid}/net1", keys::ALLOCATIONS), r)
        };
        let pods = pods_of("n", &[record("c1"), record("retained:db:pg-0")]);
        assert_eq!(pods.len(), 1);
        assert_eq!(
            (pods[0].name.as_str(), pods[0].host.as_str()),
            ("pg-0", "h0")
        );
    }

    #[test]
    fn a_transfer_per_rail_prefers_two_hosts() {
        let pods = [
            pod("a", "h0", &[(0, "10.0.0.1"), (1, "10.1.0.1")]),
            pod("b", "h0", &[(0, "10.0.0.2"), (1, "10.1.0.2")]),
            pod("c", "h1", &[(1, "10.1.0.3")]),
        ];
        let t = transfers(&pods);
        // Rail 0: only a and b hold it, both on h0. Rail 1: across hosts.
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((t[0].rail, t[0].from, t[0].to), (0, 0, 1));
        assert_eq!(t[1].rail, 1);
        assert_ne!(pods[t[1].from].host, pods[t[1].to].host, "{t:?}");
        assert_eq!(t[1].dst, pods[t[1].to].addresses[&1][0]);
        assert!(
            transfers(&pods[..1]).is_empty(),
            "one pod: nothing to send to"
        );
    }

    #[test]
    fn every_pair_on_every_shared_rail() {
        let pods = vec![
            pod("a", "h0", &[(0, "192.168.0.2"), (1, "192.168.64.2")]),
            pod("b", "h1", &[(0, "192.168.1.2"), (1, "192.168.65.2")]),
            pod("c", "h2", &[(0, "192.168.2.2")]),
        ];
        let p = probes(&pods, None);
        // a->b 2, a->c 1, b->a 2, b->c 1, c->a 1, c->b 1
        assert_eq!(p.len(), 8);
        assert_eq!(probes(&pods, Some(1)).len(), 4);
    }

    #[test]
    fn few_peers_cross_hosts_and_every_pod_is_probed_equally() {
        let mut pods = Vec::new();
        for h in 0..3 {
            for k in 0..4 {
                let addr = format!("192.168.{h}.{}", k + 2);
                pods.push(pod(&format!("h{h}-p{k}"), &format!("h{h}"), &[(0, &addr)]));
            }
        }
        let p = probes(&pods, Some(2));
        assert_eq!(p.len(), 12 * 2);
        for x in &p {
            assert_ne!(
                pods[x.from].host, pods[x.to].host,
                "{x:?} stays on one host"
            );
            assert_ne!(x.from, x.to);
        }
        for (i, pod) in pods.iter().enumerate() {
            assert_eq!(p.iter().filter(|x| x.to == i).count(), 2, "{}", pod.name);
            assert_eq!(p.iter().filter(|x| x.from == i).count(), 2);
        }
        // Without a limit, every ordered pair once.
        assert_eq!(probes(&pods, None).len(), 12 * 11);
    }

    #[test]
    fn report_counts_and_finds_partitions() {
        let pods = vec![
            pod("a", "h0", &[(0, "192.168.0.2")]),
            pod("b", "h1", &[(0, "192.168.1.2")]),
            pod("c", "h2", &[(0, "192.168.2.2")]),
        ];
        let p = probes(&pods, None);
        // Only a<->b work.
        let results: Vec<bool> = p
            .iter()
            .map(|x| (x.from == 0 && x.to == 1) || (x.from == 1 && x.to == 0))
            .collect();
        let r = report("n", &pods, &p, &results);
        assert_eq!(r.failed, 4);
        assert!(!r.ok());
        assert_eq!(
            r.partitions[&0],
            vec![vec!["a".to_string(), "b".into()], vec!["c".into()]]
        );
        let text = render(&r);
        assert!(text.contains("## Connection Check: n"));
        assert!(text.contains("a     b   1/1"), "{text}");
        assert!(text.contains("2 partitions"), "{text}");
        assert!(text.contains("(FAILED)"));
    }
}
