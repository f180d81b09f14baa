//! External IPAM's `choose` over the real socket, server and allocation
//! database: the NICs an ADD would give the pod and this host's blocks on
//! them, nothing recorded; and, with the Kubernetes API, a pod whose
//! annotations ask for addresses (Kube-OVN's `ip_address`, a pool) is
//! refused naming why, not silently given dynamic ones by the external IPAM.
//!
//! Simulated: the API server is `MemoryPods` (see `ipam_annotations.rs`).

mod socket;

use railyard_core::ipam::{codes, Request, Response, Selection};
use socket::{me, pod_ref, Daemon, Setup};

/// A daemon for host h0 on `rails` (two rails, /24 host blocks, an external
/// host-local IPAM and an excluded CIDR) with the in-memory API.
async fn start() -> Daemon {
    socket::start(Setup {
        network: "rails",
        spec: "  subnet: 192.168.0.0/16\n  multiNICIPAM: false\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2, \"excludeCIDRs\": [\"192.168.0.0/28\"], \"external\": {\"type\": \"host-local\"}}'\n",
        uid: me(),
        api: true,
    })
    .await
}

async fn choose(d: &Daemon, cid: &str, pod: &str, selection: Selection) -> Response {
    d.call(&Request::Choose {
        attachment: d.id(cid),
        pod: pod_ref(pod),
        selection,
    })
    .await
}

#[tokio::test]
async fn choose_names_the_blocks_records_nothing_and_refuses_address_annotations() {
    let d = start().await;
    d.pod("plain", &[], false);
    match choose(&d, "c1", "plain", Selection::default()).await {
        Response::Chosen { nics } => {
            let got: Vec<(String, u32, String, Vec<String>)> = nics
                .iter()
                .map(|n| {
                    (
                        n.nic.to_string(),
                        n.interface,
                        n.blocks[0].cidr.to_string(),
                        n.blocks[0]
                            .excludes
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    (
                        "eth0".into(),
                        0,
                        "192.168.0.0/24".into(),
                        vec!["192.168.0.0/28".into()]
                    ),
                    ("eth1".into(), 1, "192.168.64.0/24".into(), vec![]),
                ]
            );
            assert_eq!(
                nics[1].blocks[0].gateway,
                Some("192.168.64.1".parse().unwrap())
            );
        }
        other => panic!("{other:?}"),
    }
    // Nothing recorded: the daemon knows no such attachment.
    match d
        .call(&Request::Check {
            attachment: d.id("c1"),
        })
        .await
    {
        Response::Error(e) => assert_eq!(e.code, codes::UNKNOWN_CONTAINER, "{}", e.message),
        other => panic!("{other:?}"),
    }
    // The pod's selection narrows it as it narrows an ADD.
    let one = Selection {
        masters: vec!["eth1".into()],
        ..Selection::default()
    };
    assert!(matches!(
        choose(&d, "c1", "plain", one).await,
        Response::Chosen { nics } if nics.len() == 1 && nics[0].nic.as_str() == "eth1"
    ));

    // Annotations that ask for addresses are railyard-ipam's: refused.
    d.pod(
        "fixed",
        &[(
            "rails.default.kubernetes.io/ip_address",
            "192.168.0.33,192.168.64.33",
        )],
        false,
    );
    match choose(&d, "c2", "fixed", Selection::default()).await {
        Response::Error(e) => {
            assert_eq!(e.code, codes::INVALID_CONFIG, "{}", e.message);
            assert!(
                e.message.contains("static addresses") && e.message.contains("external IPAM"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
}
