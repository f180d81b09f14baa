//! The demo's world for a test: the local cluster (2 hosts x 2 rails), its own
//! control plane and controller, the network applied as a MultiNicNetwork
//! targeting one namespace. Torn down on drop, with log tails when the test
//! panicked. Needs root (network namespaces).

use std::path::PathBuf;

use railyard_e2e::cluster::etcd::free_port_pair;
use railyard_e2e::k8s_demo::K8sDemo;
use railyard_e2e::kube::upstream;
use railyard_e2e::{bins, Cluster, ClusterSpec};

/// The demo and the directory of its control plane.
pub struct Demo {
    demo: Option<K8sDemo>,
    _plane_dir: tempfile::TempDir,
}

impl Demo {
    /// `name` names the state dir and netns prefix; `mgmt_id` is the test's
    /// own management id; the network targets `namespace`.
    pub fn up(name: &str, mgmt_id: u8, namespace: &str) -> Demo {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the demo's tests need root (network namespaces, links, routes)"
        );
        let bin_dir = bins::for_tests().unwrap_or_else(|e| panic!("{e}"));
        let mut s = ClusterSpec::new(PathBuf::from("/tmp/railyard-e2e").join(name), bin_dir);
        s.prefix = format!("{name}-");
        s.mgmt_id = mgmt_id;
        s.etcd_port = free_port_pair().expect("two free loopback ports for etcd");
        s.hosts = 2;
        s.rails = 2;
        s.lease_ttl = 3;
        s.cni_dir = upstream::dir();
        if let Some(mut stale) = Cluster::open(&s.state_dir).expect("read old state") {
            stale.down();
        }
        let plane_dir = tempfile::Builder::new()
            .prefix(&format!("railyard-{name}-"))
            .tempdir()
            .expect("tempdir");
        let demo = K8sDemo::up(
            s,
            plane_dir.path().join("plane"),
            true,
            namespace,
            &mut |l| eprintln!("[up] {l}"),
        )
        .unwrap_or_else(|e| panic!("the demo did not come up: {e}"));
        Demo {
            demo: Some(demo),
            _plane_dir: plane_dir,
        }
    }

    pub fn get(&mut self) -> &mut K8sDemo {
        self.demo.as_mut().expect("the demo is up until dropped")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut d) = self.demo.take() {
            if std::thread::panicking() {
                eprintln!("{}\n{}", d.cluster.log_tails(30), d.plane.log_tails(20));
            }
            d.cluster.down();
            d.plane.stop();
        }
    }
}
