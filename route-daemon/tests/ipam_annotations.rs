//! ADDs completed from the pod in the API, over the real socket and the real
//! allocation database: Kube-OVN's `ip_address` and `ip_pool` annotations,
//! railyard's per-network pool annotation (pod or namespace), bad annotations
//! refused naming them with nothing allocated, an API that cannot answer
//! failing the ADD (retry later), and a StatefulSet pod recreated under its
//! name getting its addresses back.
//!
//! Simulated: the API server is `MemoryPods`, which passes the same
//! conformance suite as the kube-rs source does against a real kube-apiserver
//! (`tests/tests/k8s/leak_sweep.rs`).

mod socket;

use std::net::IpAddr;

use railyard_core::ipam::{codes, Request, Response};
use socket::{me, Daemon, Setup};

const NET: &str = "rails";

/// A daemon for host h0 on network `rails` (two rails, /24 host blocks, a
/// pool `db` of offsets 10-12) with the in-memory API.
async fn start() -> Daemon {
    socket::start(Setup {
        network: NET,
        spec: "  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2, \"pools\": [{\"name\": \"db\", \"offsets\": \"10-12\"}]}'\n",
        uid: me(),
        api: true,
    })
    .await
}

fn addresses(r: &Response) -> Vec<IpAddr> {
    match r {
        Response::Added { nics } => nics
            .iter()
            .flat_map(|n| n.addresses.iter().map(|a| a.addr()))
            .collect(),
        other => panic!("expected Added, got {other:?}"),
    }
}

fn error(r: &Response) -> (u32, String) {
    match r {
        Response::Error(e) => (e.code, e.message.clone()),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn annotations_choose_addresses_and_pools() {
    let d = start().await;
    // Host h0's blocks: 192.168.0.0/26 on rail 0, 192.168.64.0/26 on rail 1.
    d.pod(
        "fixed",
        &[(
            "rails.default.kubernetes.io/ip_address",
            "192.168.0.33,192.168.64.33",
        )],
        false,
    );
    let got = addresses(&d.add("c1", "fixed").await);
    assert_eq!(got, [ip("192.168.0.33"), ip("192.168.64.33")]);

    // The pool by the pod's annotation, then by its namespace's.
    d.pod("pooled", &[("rails.railyard.dev/pool", "db")], false);
    let got = addresses(&d.add("c2", "pooled").await);
    assert_eq!(got, [ip("192.168.0.10"), ip("192.168.64.10")]);
    d.api
        .as_ref()
        .unwrap()
        .annotate_namespace("default", "rails.railyard.dev/pool", "db");
    d.pod("plain", &[], false);
    let got = addresses(&d.add("c3", "plain").await);
    assert_eq!(got, [ip("192.168.0.11"), ip("192.168.64.11")]);

    // Kube-OVN's ip_pool: the first free listed address per rail.
    d.pod(
        "listed",
        &[(
            "rails.ns.kubernetes.io/ip_pool",
            "192.168.0.40,192.168.64.40;192.168.0.41,192.168.64.41",
        )],
        false,
    );
    // The namespace's pool and the pod's list conflict: refused, naming both.
    let (code, m) = error(&d.add("c4", "listed").await);
    assert_eq!(code, codes::INVALID_CONFIG);
    assert!(
        m.contains("choose one") && m.contains("rails.railyard.dev/pool"),
        "{m}"
    );
}

#[tokio::test]
async fn a_mac_annotation_reaches_the_answer_per_rail() {
    let d = start().await;
    let key = "rails.default.kubernetes.io/mac_address";
    d.pod(
        "macs",
        &[(key, "0=02:BB:00:00:00:10,1=02:bb:00:00:00:11")],
        false,
    );
    let macs: Vec<Option<String>> = match d.add("c1", "macs").await {
        Response::Added { nics } => nics.into_iter().map(|n| n.mac).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        macs,
        [
            Some("02:bb:00:00:00:10".to_string()),
            Some("02:bb:00:00:00:11".to_string())
        ]
    );
    // One MAC for a pod that gets two rails: refused naming the annotation,
    // nothing held.
    d.pod("one", &[(key, "02:bb:00:00:00:20")], false);
    let (code, m) = error(&d.add("c2", "one").await);
    assert_eq!(code, codes::INVALID_CONFIG);
    assert!(m.contains("2 rails") && m.contains(key), "{m}");
    let gc = d
        .call(&Request::Gc {
            network: NET.into(),
            valid: vec![d.id("c1")],
        })
        .await;
    assert!(matches!(gc, Response::Collected { released: 0 }), "{gc:?}");
}

#[tokio::test]
async fn bad_annotations_and_a_silent_api_allocate_nothing() {
    let d = start().await;
    d.pod(
        "typo",
        &[("rails.default.kubernetes.io/ip_address", "192.168.0.3x")],
        false,
    );
    let (code, m) = error(&d.add("c1", "typo").await);
    assert_eq!(code, codes::INVALID_CONFIG);
    assert!(
        m.contains("rails.default.kubernetes.io/ip_address") && m.contains("192.168.0.3x"),
        "{m}"
    );
    // An address of another host's block: the engine refuses it, and the
    // message names the annotation it came from.
    d.pod(
        "elsewhere",
        &[("rails.default.kubernetes.io/ip_address", "192.168.1.7")],
        false,
    );
    let (code, m) = error(&d.add("c2", "elsewhere").await);
    assert_eq!(code, codes::INVALID_CONFIG);
    assert!(
        m.contains("192.168.1.7")
            && m.contains("from annotation rails.default.kubernetes.io/ip_address"),
        "{m}"
    );
    // An unknown pool, named.
    d.pod("nopool", &[("rails.railyard.dev/pool", "web")], false);
    let (_, m) = error(&d.add("c3", "nopool").await);
    assert!(m.contains("\"web\""), "{m}");
    // The API down: retry later, nothing allocated.
    d.pod("later", &[], false);
    d.api.as_ref().unwrap().set_down(true);
    let (code, m) = error(&d.add("c4", "later").await);
    assert_eq!(code, codes::TRY_AGAIN_LATER);
    assert!(m.contains("default/later"), "{m}");
    d.api.as_ref().unwrap().set_down(false);
    // Nothing of the refused ADDs is held: a GC that keeps only c5 finds
    // nothing else to release.
    let got = addresses(&d.add("c5", "later").await);
    assert_eq!(got.len(), 2);
    let gc = d
        .call(&Request::Gc {
            network: NET.into(),
            valid: vec![d.id("c5")],
        })
        .await;
    assert!(matches!(gc, Response::Collected { released: 0 }), "{gc:?}");
    // A pod the API does not have is served as asked (no annotations).
    let got = addresses(&d.add("c6", "not-in-the-api").await);
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn a_statefulset_pod_gets_its_addresses_back_when_recreated() {
    let d = start().await;
    d.pod("pg-0", &[], true);
    let first = addresses(&d.add("c1", "pg-0").await);
    assert!(matches!(
        d.call(&Request::Del {
            attachment: d.id("c1")
        })
        .await,
        Response::Done
    ));
    // Meanwhile another pod does not get them.
    d.pod("other", &[], false);
    let other = addresses(&d.add("c2", "other").await);
    assert!(!other.iter().any(|a| first.contains(a)), "{other:?}");
    // Recreated: a new UID, a new container, the same addresses.
    d.api.as_ref().unwrap().delete("default", "pg-0");
    d.pod("pg-0", &[], true);
    let again = addresses(&d.add("c3", "pg-0").await);
    assert_eq!(again, first);
}
