//! External IPAM (`multiNICIPAM: false`, `spec.ipam.external`): host-local
//! allocates every pod address, once per rail, inside the host block the
//! real route-daemon names (its `choose` request), and the routes railyard
//! programs for those blocks carry the pods' traffic across hosts. The
//! daemons hold no allocation of these pods; host-local's records (one
//! `dataDir` per host) do, and a DEL frees them.

use std::net::IpAddr;

use crate::common::{spec, TestCluster};
use railyard_e2e::cluster::{cmd, pods};
use railyard_e2e::Delegate;

#[test]
fn host_local_pods_get_their_hosts_blocks_and_reach_each_other_across_hosts() {
    // Management ids are a u8 (10.254.<id>.0/24): this test's range
    // 260-269 taken modulo 256.
    let mut s = spec("e2e-extipam", 4);
    s.delegate = Delegate::Ptp;
    s.pods = 0;
    s.external_ipam = Some(serde_json::json!({"type": "host-local"}));
    let made = [(0, 0), (0, 1), (1, 0)];
    // Pods made here are not in the cluster's state: a killed earlier run
    // may have left their namespaces.
    for (i, k) in made {
        let _ = cmd::netns_del(&s.pod(i, k));
    }
    let _ = std::fs::remove_dir_all(s.state_dir.join("host-local"));
    let mut c = TestCluster::up(s.clone());
    let plan = c
        .observer()
        .expect("etcd")
        .plan(&s.network)
        .expect("read plan")
        .expect("a plan");

    let mut attached = Vec::new();
    for (i, k) in made {
        let pod = pods::attach_with(&s, i, k, None)
            .unwrap_or_else(|e| panic!("pod {i}/{k} attaches: {e}"));
        c.state.pods.push(pod.clone());
        attached.push(pod);
    }
    for p in &attached {
        assert_eq!(p.addresses.len(), s.rails, "{}: {:?}", p.name, p.addresses);
        let blocks = &plan.hosts[&p.host].blocks;
        for (rail, addr) in p.addresses.iter().enumerate() {
            let block = blocks
                .iter()
                .find(|b| b.interface == rail as u32)
                .expect("a block per rail");
            assert!(
                block.cidr.contains(addr),
                "{}: {addr} outside its host's rail-{rail} block {}",
                p.name,
                block.cidr
            );
            assert_ne!(
                *addr,
                s.block_gateway(block.cidr).expect("a gateway"),
                "never the gateway"
            );
        }
    }
    c.distinct_addresses();
    let records = c
        .observer()
        .expect("etcd")
        .allocations(&s.network)
        .expect("read allocations");
    assert!(records.is_empty(), "the daemons hold nothing: {records:?}");

    // Across hosts on every rail, and between two pods of one host.
    for (from, to) in [(0, 2), (2, 0), (1, 2), (0, 1)] {
        for dst in &attached[to].addresses {
            pods::ping(&attached[from].name, *dst).unwrap_or_else(|e| {
                panic!(
                    "{} -> {} ({dst}): {e}",
                    attached[from].name, attached[to].name
                )
            });
        }
    }

    // DEL frees host-local's records of that pod only.
    let file = |host: usize, rail: usize, addr: &IpAddr| {
        s.external_ipam_dir(host)
            .join(format!("{}.rail{rail}", s.network))
            .join(addr.to_string())
    };
    let gone = attached.remove(1);
    pods::detach(&s, 0, &gone.name).expect("DEL");
    c.state.pods.retain(|p| p.name != gone.name);
    for (rail, addr) in gone.addresses.iter().enumerate() {
        assert!(!file(0, rail, addr).exists(), "{addr} still held");
    }
    for (rail, addr) in attached[0].addresses.iter().enumerate() {
        assert!(
            file(0, rail, addr).exists(),
            "{addr} released with the other pod"
        );
    }
}

/// Whereabouts against a real kube-apiserver (its IPPool CRDs from
/// whereabouts v0.9.2, as the IPAM benchmark uses them), relayed into each
/// host's namespace: each rail's range is the host block railyard names, the
/// gateway excluded; the pods reach each other across hosts, and DEL leaves
/// no allocation in any IPPool.
#[test]
fn whereabouts_pods_get_their_hosts_blocks_through_the_api() {
    use railyard_e2e::kube::{identity, ControlPlane, PlaneOptions};
    use std::path::{Path, PathBuf};

    let mut s = spec("e2e-extipam-wb", 5);
    s.delegate = Delegate::Ptp;
    s.pods = 0;
    let made = [(0, 0), (1, 0)];
    for (i, k) in made {
        let _ = cmd::netns_del(&s.pod(i, k));
    }
    let upstream = PathBuf::from(
        std::env::var("RAILYARD_UPSTREAM_BIN")
            .unwrap_or_else(|_| "/opt/railyard-upstream/bin".into()),
    );
    let whereabouts = upstream.join("whereabouts");
    assert!(
        whereabouts.exists(),
        "{} missing: run `make deps`",
        whereabouts.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("railyard-e2e-extipam-wb-")
        .tempdir()
        .expect("a temp dir");
    // The reference plugins and Whereabouts in one CNI dir.
    let cni_dir = dir.path().join("cni");
    std::fs::create_dir_all(&cni_dir).expect("cni dir");
    for entry in std::fs::read_dir(&s.cni_dir).expect("read the CNI dir") {
        let p = entry.expect("entry").path();
        let name = p.file_name().expect("a name").to_owned();
        std::os::unix::fs::symlink(&p, cni_dir.join(name)).expect("link a plugin");
    }
    std::os::unix::fs::symlink(&whereabouts, cni_dir.join("whereabouts"))
        .expect("link whereabouts");
    s.cni_dir = cni_dir;

    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/peers/whereabouts");
    let plane = ControlPlane::up(&PlaneOptions {
        dir: dir.path().join("plane"),
        crds: None,
        tie_to_this_process: true,
    })
    .unwrap_or_else(|e| panic!("the Kubernetes control plane did not start: {e}"));
    let k = plane.admin().expect("admin kubectl");
    k.run(&["apply", "--server-side", "-f", &crds.display().to_string()])
        .expect("Whereabouts' CRDs");
    for crd in [
        "ippools.whereabouts.cni.cncf.io",
        "overlappingrangeipreservations.whereabouts.cni.cncf.io",
    ] {
        k.run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            &format!("crd/{crd}"),
        ])
        .expect("CRD established");
    }
    let manifests = identity::manifests_dir();
    identity::install_as_shipped(&plane, &manifests).expect("namespace and RBAC as shipped");
    let daemon_kubeconfig = identity::token_kubeconfig(
        &plane,
        identity::NAMESPACE,
        "railyard-route-daemon",
        "route-daemon.kubeconfig",
    )
    .expect("a token of the route-daemon's ServiceAccount");
    for i in 0..s.hosts {
        k.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n",
            s.host(i)
        ))
        .expect("a node");
    }
    // The daemons' relay of the API into each host's namespace serves
    // Whereabouts too (same server, another identity).
    s.kubeconfig = Some(daemon_kubeconfig);
    let admin = plane.state.admin_kubeconfig();
    let flat = dir.path().join("whereabouts.conf");
    std::fs::write(
        &flat,
        serde_json::json!({"datastore": "kubernetes", "kubernetes": {"kubeconfig": admin},
                           "log_file": dir.path().join("whereabouts.log"), "log_level": "error"})
        .to_string(),
    )
    .expect("whereabouts' flat file");
    s.external_ipam = Some(serde_json::json!({
        "type": "whereabouts",
        "configuration_path": flat,
        "kubernetes": {"kubeconfig": admin},
    }));
    let mut c = TestCluster::up(s.clone());
    let plan = c
        .observer()
        .expect("etcd")
        .plan(&s.network)
        .expect("read plan")
        .expect("a plan");

    let mut attached = Vec::new();
    for (i, n) in made {
        let pod = pods::attach_with(&s, i, n, None)
            .unwrap_or_else(|e| panic!("pod {i}/{n} attaches: {e}"));
        c.state.pods.push(pod.clone());
        attached.push(pod);
    }
    for p in &attached {
        assert_eq!(p.addresses.len(), s.rails, "{}: {:?}", p.name, p.addresses);
        for (rail, addr) in p.addresses.iter().enumerate() {
            let block = plan.hosts[&p.host]
                .blocks
                .iter()
                .find(|b| b.interface == rail as u32)
                .expect("a block per rail");
            assert!(block.cidr.contains(addr), "{addr} outside {}", block.cidr);
            assert_ne!(
                Some(*addr),
                s.block_gateway(block.cidr),
                "never the gateway"
            );
        }
    }
    c.distinct_addresses();
    for (from, to) in [(0, 1), (1, 0)] {
        for dst in &attached[to].addresses {
            pods::ping(&attached[from].name, *dst).unwrap_or_else(|e| {
                panic!(
                    "{} -> {} ({dst}): {e}",
                    attached[from].name, attached[to].name
                )
            });
        }
    }
    let pools = k
        .get_json(&["ippools.whereabouts.cni.cncf.io", "-A"])
        .expect("IPPools");
    let ranges: Vec<&str> = pools["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["spec"]["range"].as_str())
        .collect();
    assert_eq!(
        ranges.len(),
        s.hosts * s.rails,
        "one pool per host block: {ranges:?}"
    );

    for p in std::mem::take(&mut attached) {
        pods::detach(&s, p.host_index, &p.name).expect("DEL");
        c.state.pods.retain(|q| q.name != p.name);
    }
    let pools = k
        .get_json(&["ippools.whereabouts.cni.cncf.io", "-A"])
        .expect("IPPools");
    for pool in pools["items"].as_array().into_iter().flatten() {
        let allocations = pool["spec"]["allocations"].as_object();
        assert!(
            allocations.is_none_or(|a| a.is_empty()),
            "left in {}: {allocations:?}",
            pool["spec"]["range"]
        );
    }
}
