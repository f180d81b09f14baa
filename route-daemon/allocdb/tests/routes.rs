//! A network's own pod routes (`spec.routes`, in `NetworkConfig.routes`): each
//! allocation carries them on the rail they name, via that rail's gateway, in
//! the destination's family only.

mod common;

use common::*;
use railyard_core::spec::RailRoute;

#[tokio::test]
async fn extra_routes_go_to_their_rail_and_family_via_its_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = dual_stack();
    cfg.routes = vec![
        RailRoute {
            rail: 1,
            dst: "10.50.0.0/16".parse().unwrap(),
        },
        RailRoute {
            rail: 0,
            dst: "fd50::/64".parse().unwrap(),
        },
    ];
    let db = open_with(dir.path(), cfg).await;
    let got = db
        .add(&args("c1"), &nics(&["eth0", "eth1"]), &[])
        .await
        .unwrap();
    let routes = |rail: u32| -> Vec<String> {
        got.iter()
            .find(|n| n.interface == rail)
            .unwrap()
            .routes
            .iter()
            .map(|r| format!("{} via {}", r.dst, r.gw.expect("a gateway")))
            .collect()
    };
    assert_eq!(
        routes(0),
        [
            "192.168.0.0/18 via 192.168.1.1",
            "fd00::/48 via fd00:0:0:1::1",
            "fd50::/64 via fd00:0:0:1::1"
        ]
    );
    assert_eq!(
        routes(1),
        [
            "192.168.64.0/18 via 192.168.65.1",
            "10.50.0.0/16 via 192.168.65.1",
            "fd00:1::/48 via fd00:1:0:1::1"
        ]
    );
}
