//! A network's own pod routes (`spec.routes`): each pod gets the destination
//! on the rail's interface via that rail's gateway, in that family only, with
//! the real planner, daemons and railyard-cni.

use crate::common::{spec, TestCluster};
use railyard_e2e::cluster::cmd::ip_in;
use railyard_e2e::Family;

#[test]
fn pods_route_a_networks_extra_destinations_over_the_rail_it_names() {
    let mut s = spec("e2e-routes", 242);
    s.family = Family::Dual;
    s.routes = vec![(1, "10.50.0.0/16".into()), (0, "fd50::/64".into())];
    let c = TestCluster::up(s.clone());
    for pod in &c.state.pods {
        let v4 = ip_in(&pod.name, &["-4", "route", "show", "10.50.0.0/16"]).expect("ip route");
        let v6 = ip_in(&pod.name, &["-6", "route", "show", "fd50::/64"]).expect("ip route");
        // The rail's gateway is the first address of the pod's block on it.
        let gw_of = |dev: &str, v6: bool| -> String {
            let out = ip_in(
                &pod.name,
                &[if v6 { "-6" } else { "-4" }, "route", "show", "dev", dev],
            )
            .expect("ip route");
            out.lines()
                .find_map(|l| {
                    l.split_once(" via ")
                        .map(|(_, r)| r.split(' ').next().unwrap_or("").to_owned())
                })
                .unwrap_or_default()
        };
        assert!(
            v4.contains("dev net1-1") && v4.contains(&format!("via {}", gw_of("net1-1", false))),
            "{}: {v4}",
            pod.name
        );
        assert!(
            v6.contains("dev net1-0") && v6.contains(&format!("via {}", gw_of("net1-0", true))),
            "{}: {v6}",
            pod.name
        );
        // Only the rail and family named.
        let other = ip_in(&pod.name, &["-4", "route", "show", "dev", "net1-0"]).expect("ip route");
        assert!(!other.contains("10.50.0.0/16"), "{other}");
    }
    c.assert_connected(None);
}
