//! etcd down for 10 s: pods stay connected (routes live in the kernel) and a new
//! pod still gets addresses (its host's blocks are planned and the daemon
//! allocates from its local log); everything is mirrored once etcd is back.

use std::time::{Duration, Instant};

use crate::common::{spec, TestCluster, CONVERGE};

#[test]
fn an_etcd_outage_keeps_connectivity_and_new_pods_get_addresses() {
    let mut c = TestCluster::up(spec("e2e-outage", 207));
    c.stop_etcd();
    let start = Instant::now();
    c.assert_mesh();
    let new = c
        .attach_pods(&[(0, 2)], 1)
        .expect("a pod attaches while etcd is down");
    assert!(!new[0].addresses.is_empty());
    c.assert_mesh();
    while start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    c.assert_mesh();
    c.start_etcd().expect("etcd restarts");
    c.wait_mirrored(CONVERGE)
        .expect("the new pod is mirrored after the outage");
    c.wait_converged(&[0, 1], CONVERGE).expect("plan unchanged");
    c.distinct_addresses();
    c.assert_connected(None);
}
