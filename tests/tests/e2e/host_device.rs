//! host-device pods: each holds a spare link of every rail, moved in from its
//! host by the real host-device plugin (railyard-cni picks the spare,
//! `delegate.spareDevices`), sits on the rail's L2 like a macvlan pod and
//! reaches the host through the daemon's gateway shim. DEL moves the links
//! back; a host whose spares are used up refuses the next pod cleanly.

use std::collections::BTreeSet;
use std::time::Duration;

use railyard_e2e::cluster::cmd::ip_in;
use railyard_e2e::cluster::topology::{gateway_shims, host_spares};
use railyard_e2e::{ClusterSpec, Delegate, Family};

use crate::common::{spec, TestCluster};
use crate::plugin_exec::{daemon_holds, wait_mirror};

/// railyard-cni's "no free spare device" (`codes::NO_FREE_DEVICE`).
const NO_FREE_DEVICE: &str = "\"code\":103";

fn host_device_spec(name: &str, mgmt_id: u8) -> ClusterSpec {
    let mut s = spec(name, mgmt_id);
    s.delegate = Delegate::HostDevice;
    s
}

/// Every spare host `i` was made with, sorted as `host_spares` lists them.
fn all_spares(s: &ClusterSpec) -> Vec<String> {
    let mut all: Vec<String> = (0..s.rails)
        .flat_map(|j| (0..s.spare_count()).map(move |k| s.spare(j, k)))
        .collect();
    all.sort();
    all
}

/// The host link each of `pod`'s interfaces was (host-device keeps the
/// original name as the link's alias), as (pod interface, spare).
fn links_of(pod: &str) -> BTreeSet<(String, String)> {
    let text = ip_in(pod, &["-j", "link", "show"]).expect("ip link in the pod");
    let links: Vec<serde_json::Value> = serde_json::from_str(&text).expect("ip -j");
    links
        .iter()
        .filter_map(|l| {
            let name = l["ifname"].as_str()?;
            let alias = l["ifalias"].as_str()?;
            Some((name.to_owned(), alias.to_owned()))
        })
        .collect()
}

/// Two hosts of two pods, dual stack, host-device on both rails: every pod
/// reaches every other on every rail in both families (`railyard check`,
/// across hosts and within them), each pod's interfaces are spares of the
/// matching rail, and DEL returns every spare to its host and every address
/// to the daemon.
#[test]
fn host_device_pods_are_connected_on_every_rail_and_del_returns_their_links() {
    let mut s = host_device_spec("e2e-hostdev", 238);
    s.family = Family::Dual;
    let mut c = TestCluster::up(s.clone());
    let addrs = c.distinct_addresses();
    assert!(addrs.iter().any(|a| a.is_ipv4()) && addrs.iter().any(|a| a.is_ipv6()));
    c.assert_connected(None);
    c.assert_mesh();

    for i in 0..s.hosts {
        // Every spare is in a pod, and the rails' gateways are the shims'.
        assert_eq!(host_spares(&s, i), Vec::<String>::new(), "host {i}");
        assert_eq!(gateway_shims(&s, i).len(), s.rails, "host {i}");
        let mut used = BTreeSet::new();
        for k in 0..s.pods {
            let pod = s.pod(i, k);
            let links = links_of(&pod);
            for j in 0..s.rails {
                let (_, spare) = links
                    .iter()
                    .find(|(name, _)| *name == format!("net1-{j}"))
                    .unwrap_or_else(|| panic!("{pod} has no net1-{j}: {links:?}"));
                assert!(
                    spare.starts_with(&format!("spare{j}-")),
                    "{pod}'s net1-{j} is {spare}, a spare of another rail"
                );
                assert!(used.insert(spare.clone()), "{spare} is in two pods");
            }
        }
    }

    let failures = c.detach_pods(None, 4).expect("detach");
    assert!(failures.is_empty(), "{failures:?}");
    for i in 0..s.hosts {
        assert_eq!(host_spares(&s, i), all_spares(&s), "host {i}'s spares");
        for k in 0..s.pods {
            assert!(!daemon_holds(&s, i, &s.pod(i, k)), "{}", s.pod(i, k));
        }
    }
    wait_mirror(&mut c, "no allocation", Duration::from_secs(10), |m| {
        m.is_empty()
    });
}

/// One spare per rail and host: the second pod of a host fails with
/// railyard-cni's code naming the rail NIC and the pattern, keeps no
/// address, no record and no link, and the first pod is untouched. Once
/// the first pod is gone, the second attaches.
#[test]
fn a_host_without_a_free_spare_refuses_the_pod_and_keeps_nothing() {
    let mut s = host_device_spec("e2e-hdfull", 239);
    s.pods = 1;
    s.spares = Some(1);
    let mut c = TestCluster::up(s.clone());
    c.assert_connected(None);
    assert_eq!(host_spares(&s, 0), Vec::<String>::new());

    let (attached, failures) = c.try_attach_pods(&[(0, 1)], 1).expect("attach");
    assert!(attached.is_empty(), "{attached:?}");
    let [failure] = failures.as_slice() else {
        panic!("one failure expected: {failures:?}")
    };
    for part in [NO_FREE_DEVICE, "\\\"rail0\\\"", "spare{rail}-*", "spare0-*"] {
        assert!(failure.contains(part), "{part:?} missing from {failure}");
    }
    let refused = s.pod(0, 1);
    assert!(!daemon_holds(&s, 0, &refused), "its addresses were kept");
    let records: Vec<String> = std::fs::read_dir(s.host_cni_state(0))
        .expect("host 0's CNI state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{refused}@")))
        .collect();
    assert!(records.is_empty(), "record or lock left: {records:?}");
    assert_eq!(host_spares(&s, 0), Vec::<String>::new());
    // The first pod still reaches the other host's.
    c.assert_connected(None);

    // Its spares back, the refused pod attaches.
    let first = s.pod(0, 0);
    let failures = c
        .detach_pods(Some(std::slice::from_ref(&first)), 1)
        .expect("detach");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(host_spares(&s, 0), all_spares(&s));
    c.attach_pods(&[(0, 1)], 1).expect("attach after the DEL");
    c.assert_connected(None);
}
