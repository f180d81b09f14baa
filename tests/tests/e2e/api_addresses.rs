//! Addresses chosen through the Kubernetes API, with the real route-daemons
//! reading a real kube-apiserver (as their shipped ServiceAccount, relayed
//! into each host's namespace): a pod annotated with a workload pool gets the
//! pool's addresses on every rail, a Kube-OVN `ip_address` annotation gets
//! exactly those (one naming another host's address is refused, naming it,
//! with nothing left), and a StatefulSet pod recreated under its name gets its
//! addresses back on its host, and fresh ones on another host, whose old
//! ones the first host's leak sweep then frees. Connected after every step,
//! no address held twice.
//!
//! Simulated: no kubelet runs; the pods exist in the API (bound to the hosts
//! by `spec.nodeName`) and the harness plays the runtime, calling
//! railyard-cni with the pod's name in CNI_ARGS as a kubelet would.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{spec, TestCluster};
use railyard_e2e::cluster::pods;
use railyard_e2e::kube::{identity, ControlPlane, Kubectl, PlaneOptions};

/// The address at `offset` of the /24 host block holding `a` (the harness's
/// IPv4 layout: /16 subnet, 2 interface bits, 6 host bits).
fn at(a: IpAddr, offset: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let mut o = v.octets();
            o[3] = offset;
            IpAddr::from(o)
        }
        IpAddr::V6(_) => panic!("this test runs IPv4"),
    }
}

fn last_octet(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(v) => v.octets()[3],
        IpAddr::V6(_) => panic!("this test runs IPv4"),
    }
}

/// A pod in namespace `default` bound to `node`, with `annotations` and a
/// StatefulSet controller when `sts`. Retried: a new namespace's default
/// ServiceAccount appears a moment after the plane starts.
fn create_pod(k: &Kubectl, node: &str, name: &str, annotations: &[(String, String)], sts: bool) {
    let mut meta = String::new();
    if !annotations.is_empty() {
        meta.push_str("  annotations:\n");
        for (key, v) in annotations {
            meta.push_str(&format!("    {key}: \"{v}\"\n"));
        }
    }
    if sts {
        meta.push_str(
            "  ownerReferences:\n  - apiVersion: apps/v1\n    kind: StatefulSet\n    name: pg\n    uid: 3f0c2a9e-5b1d-4c7e-8a6f-2d4b6c8e0a1f\n    controller: true\n",
        );
    }
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n{meta}spec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n"
    );
    let started = Instant::now();
    while let Err(e) = k.apply(&yaml) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "create pod {name}: {e}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn delete_pod(k: &Kubectl, name: &str) {
    k.run(&[
        "delete",
        "pod",
        name,
        "-n",
        "default",
        "--grace-period=0",
        "--force",
        "--wait=true",
    ])
    .unwrap_or_else(|e| panic!("delete pod {name}: {e}"));
}

#[test]
fn pools_annotations_and_statefulset_pods_through_the_api_stay_connected() {
    let mut s = spec("e2e-api-addr", 120);
    s.pods = 1;
    s.pools = vec![("db".into(), "10-12".into())];
    let sts = format!("{}pg-0", s.prefix);
    for name in [s.pod(0, 5), s.pod(0, 6), s.pod(1, 5), sts.clone()] {
        let _ = railyard_e2e::cluster::cmd::netns_del(&name);
    }
    let dir = tempfile::Builder::new()
        .prefix("railyard-e2e-api-addr-")
        .tempdir()
        .expect("a temp dir");
    let plane = ControlPlane::up(&PlaneOptions {
        dir: dir.path().join("plane"),
        crds: None,
        tie_to_this_process: true,
    })
    .unwrap_or_else(|e| panic!("the Kubernetes control plane did not start: {e}"));
    let manifests = identity::manifests_dir();
    identity::install_as_shipped(&plane, &manifests).expect("namespace and RBAC as shipped");
    let kubeconfig: PathBuf = identity::token_kubeconfig(
        &plane,
        identity::NAMESPACE,
        "railyard-route-daemon",
        "route-daemon.kubeconfig",
    )
    .expect("a token of the route-daemon's ServiceAccount");
    let k = plane.admin().expect("admin kubectl");
    for i in 0..s.hosts {
        k.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n",
            s.host(i)
        ))
        .expect("a node");
    }
    s.kubeconfig = Some(kubeconfig);
    let net = s.network.clone();
    let mut c = TestCluster::up(s.clone());
    let first = |i: usize| {
        c.state
            .pods
            .iter()
            .find(|p| p.host_index == i)
            .expect("pod")
            .addresses
            .clone()
    };
    let (host0, host1) = (first(0), first(1));

    // A pool by the pod's annotation: offset 10 of each of host 0's blocks.
    create_pod(
        &k,
        &s.host(0),
        &s.pod(0, 5),
        &[(format!("{net}.railyard.dev/pool"), "db".into())],
        false,
    );
    let pooled = pods::attach_with(&s, 0, 5, None).expect("pooled pod attaches");
    assert_eq!(
        pooled.addresses,
        host0.iter().map(|a| at(*a, 10)).collect::<Vec<_>>()
    );
    c.state.pods.push(pooled);

    // Kube-OVN's ip_address: offset 40 of each of host 1's blocks.
    let wanted: Vec<IpAddr> = host1.iter().map(|a| at(*a, 40)).collect();
    let list = wanted
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    create_pod(
        &k,
        &s.host(1),
        &s.pod(1, 5),
        &[(format!("{net}.default.kubernetes.io/ip_address"), list)],
        false,
    );
    let fixed = pods::attach_with(&s, 1, 5, None).expect("annotated pod attaches");
    assert_eq!(fixed.addresses, wanted);
    c.state.pods.push(fixed);

    // An annotation asking for host 1's address on host 0: refused naming the
    // annotation and the address, nothing left (no namespace, no record).
    let bad = s.pod(0, 6);
    let key = format!("{net}.default.kubernetes.io/ip_address");
    create_pod(
        &k,
        &s.host(0),
        &bad,
        &[(key.clone(), wanted[0].to_string())],
        false,
    );
    let before = c
        .observer()
        .expect("etcd")
        .allocations(&net)
        .expect("records")
        .len();
    let err = pods::attach_with(&s, 0, 6, None).expect_err("another host's address");
    let text = err.to_string();
    assert!(
        text.contains(&key) && text.contains(&wanted[0].to_string()),
        "{text}"
    );
    assert!(!std::path::Path::new("/run/netns").join(&bad).exists());
    let after = c
        .observer()
        .expect("etcd")
        .allocations(&net)
        .expect("records")
        .len();
    assert_eq!(after, before, "the refused pod holds nothing");
    c.distinct_addresses();
    c.assert_connected(None);

    // A StatefulSet pod on host 0, deleted and recreated under its name.
    create_pod(&k, &s.host(0), &sts, &[], true);
    let a = pods::attach_named(&s, 0, &sts, None).expect("pg-0 attaches");
    assert!(
        !a.addresses
            .iter()
            .any(|x| (10..=12).contains(&last_octet(x))),
        "pool kept: {a:?}"
    );
    pods::detach(&s, 0, &sts).expect("DEL pg-0");
    delete_pod(&k, &sts);
    create_pod(&k, &s.host(0), &sts, &[], true);
    let again = pods::attach_named(&s, 0, &sts, None).expect("pg-0 recreated");
    assert_eq!(
        again.addresses, a.addresses,
        "same host: the same addresses"
    );
    c.state.pods.push(again);
    c.distinct_addresses();
    c.assert_connected(None);

    // Recreated on host 1: fresh addresses of host 1's blocks, connected.
    pods::detach(&s, 0, &sts).expect("DEL pg-0 on host 0");
    c.state.pods.retain(|p| p.name != sts);
    delete_pod(&k, &sts);
    create_pod(&k, &s.host(1), &sts, &[], true);
    let moved = pods::attach_named(&s, 1, &sts, None).expect("pg-0 on host 1");
    for (x, h) in moved.addresses.iter().zip(&host1) {
        assert_eq!(at(*x, 0), at(*h, 0), "{x} is in host 1's block");
    }
    c.state.pods.push(moved);
    c.distinct_addresses();
    c.assert_connected(None);

    // Host 0's leak sweep frees what it kept for pg-0 (bound elsewhere now).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = c
            .observer()
            .expect("etcd")
            .allocations(&net)
            .expect("records");
        let kept: Vec<_> = records
            .iter()
            .filter(|r| r.id.container_id.starts_with("retained:"))
            .collect();
        if kept.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "host 0 still keeps pg-0's addresses 20 s after it moved: {kept:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for name in [s.pod(0, 5), s.pod(1, 5)] {
        let i = usize::from(name == s.pod(1, 5));
        pods::detach(&s, i, &name).expect("DEL");
    }
    pods::detach(&s, 1, &sts).expect("DEL");
}
