//! A route-daemon restarted with an empty `--state-dir` while its pods run
//! (the directory was on a wiped disk, a new node image, a mistyped path).
//!
//! What must hold: the daemon does not believe the empty log. It serves nothing
//! until it has adopted what etcd's mirror holds for its host, says loudly that
//! it did, deletes none of those records, and the next pod gets addresses no
//! running pod holds. Also: the log and its directory are owner-only.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use railyard_e2e::cluster::pods::wait_ready;

use crate::common::{spec, TestCluster, CONVERGE};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_daemon_with_an_emptied_state_dir_recovers_its_pods_from_etcd() {
    let mut s = spec("e2e-stateloss", 220);
    s.hosts = 2;
    s.pods = 3;
    let mut c = TestCluster::up(s);
    let spec = c.spec().clone();
    let network = spec.network.clone();

    let state = spec.daemon_state(0);
    assert_eq!(mode(&state.join("allocations")), 0o700, "log dir");
    assert_eq!(
        mode(&state.join("allocations").join("allocations.log")),
        0o600,
        "allocation log"
    );
    assert_eq!(mode(&spec.log(&spec.host(0))), 0o600, "daemon log");

    let running: Vec<_> = c
        .state
        .pods
        .iter()
        .filter(|p| p.host_index == 0)
        .cloned()
        .collect();
    assert_eq!(running.len(), 3);
    let held: BTreeSet<IpAddr> = running.iter().flat_map(|p| p.addresses.clone()).collect();
    let before: BTreeSet<String> = c
        .observer()
        .expect("observer")
        .allocations(&network)
        .expect("allocations")
        .iter()
        .map(|r| r.id.container_id.clone())
        .collect();
    for p in &running {
        assert!(before.contains(&p.name), "{} not mirrored", p.name);
    }

    // The state dir is lost while the pods run.
    c.stop_daemon(0);
    std::fs::remove_dir_all(&state).expect("remove the daemon's state dir");
    c.start_daemon(0).expect("restart the daemon");
    wait_ready(&spec, 0, CONVERGE).expect("ready once recovered");

    let after: BTreeSet<String> = c
        .observer()
        .expect("observer")
        .allocations(&network)
        .expect("allocations")
        .iter()
        .map(|r| r.id.container_id.clone())
        .collect();
    assert_eq!(after, before, "the mirror lost records");
    let log = std::fs::read_to_string(spec.log(&spec.host(0))).unwrap_or_default();
    assert!(
        log.contains("recovered them from etcd"),
        "the daemon did not say it recovered allocations from etcd"
    );

    // The next pod on the host gets fresh addresses.
    let new = c.attach_pods(&[(0, 3)], 1).expect("attach a new pod");
    for a in new.iter().flat_map(|p| p.addresses.iter()) {
        assert!(
            !held.contains(a),
            "{a} handed out again while a running pod holds it"
        );
    }
    // The recovered pods are released normally.
    let first = running[0].name.clone();
    let failed = c
        .detach_pods(Some(std::slice::from_ref(&first)), 1)
        .expect("detach a recovered pod");
    assert!(failed.is_empty(), "DEL failed: {failed:?}");
    let start = std::time::Instant::now();
    loop {
        let now: BTreeSet<String> = c
            .observer()
            .expect("observer")
            .allocations(&network)
            .unwrap_or_default()
            .iter()
            .map(|r| r.id.container_id.clone())
            .collect();
        if !now.contains(&first) {
            break;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "{first} still mirrored after DEL"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
