//! The HostInterface and CIDR views, against a mocked API server.
//!
//! No kube-apiserver can be installed on these machines, so kube's `Client` runs
//! over a `tower_test::mock` service answered by `support/fake_api.rs`, which
//! records every request: the tests assert the exact server-side apply (path,
//! `fieldManager=railyard&force=true`, content type, label, spec), the DELETEs of
//! stale views, and that nothing is sent when nothing changed. etcd is the
//! in-memory store, as in `k8s_controller`, except for the last test, which runs
//! the real planner over a real etcd (started on a loopback port by `support`).

#[path = "../k8s/tests/support/fake_api.rs"]
mod fake_api;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fake_api::{
    assert_server_side_apply, controller_config, next_matching, settle, start_controller_with,
    Seen, Server, CIDRS, HOST_INTERFACES,
};
use kube::Client;
use railyard_core::{keys, HostInventory, NetworkManifest, Plan};
use railyard_k8s::crd::{CidrSpec, HostInterfaceSpec};
use railyard_k8s::ControllerConfig;
use railyard_store::{MemStore, Store};
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../../docs/examples/network.yaml");
const NET: &str = "multi-nic-sample";

/// The burst test counts coalescing windows: 100 ms ones keep it quick.
fn config() -> ControllerConfig {
    ControllerConfig {
        coalesce: Duration::from_millis(100),
        ..controller_config()
    }
}

fn start_controller(client: Client, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
    start_controller_with(client, store, None, config())
}

fn is_view_apply(collection: &'static str, name: &str) -> impl Fn(&Seen) -> bool {
    let path = format!("{collection}/{name}");
    move |s: &Seen| s.method == "PATCH" && s.path == path
}

fn is_view_write(s: &Seen) -> bool {
    s.path.starts_with(HOST_INTERFACES) || s.path.starts_with(CIDRS)
}

/// View writes, in order, until `done` holds for those collected.
async fn collect_until(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    what: &str,
    done: impl Fn(&[Seen]) -> bool,
) -> Vec<Seen> {
    let mut writes = Vec::new();
    while !done(&writes) {
        writes.push(next_matching(seen, what, is_view_write).await);
    }
    writes
}

fn find(writes: &[Seen], pred: impl Fn(&Seen) -> bool) -> Option<&Seen> {
    writes.iter().rev().find(|s| pred(s))
}

/// The sample network with room for `hosts_bits` bits of hosts per rail.
fn network(host_bits: u8) -> railyard_core::Network {
    let mut m: NetworkManifest = serde_yaml::from_str(SAMPLE).unwrap();
    m.spec.subnet = "172.16.0.0/12".into();
    m.spec.ipam = railyard_core::spec::IpamField::Text(format!(
        r#"{{"type": "multi-nic-ipam", "hostBlock": {host_bits}, "interfaceBlock": 2, "vlanMode": "l3"}}"#
    ));
    m.validate().expect("valid test network")
}

async fn register(store: &dyn Store, host: &HostInventory) {
    store
        .put(
            &keys::host(&host.name),
            serde_json::to_vec(host).unwrap(),
            None,
        )
        .await
        .unwrap();
}

/// Writes `plan` the way the planner stores it: the meta key, one key per host.
async fn store_plan(store: &dyn Store, plan: &Plan) {
    let (meta, hosts) = plan.split();
    store
        .put(
            &keys::plan_meta(&plan.network),
            serde_json::to_vec(&meta).unwrap(),
            None,
        )
        .await
        .unwrap();
    for (name, h) in hosts {
        store
            .put(
                &keys::plan_host(&plan.network, name),
                serde_json::to_vec(h).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
}

/// A view as the cluster would list it: ours (labelled) or not.
fn listed(kind: &str, name: &str, spec: Value, ours: bool) -> Value {
    let labels = if ours {
        json!({"app.kubernetes.io/managed-by": "railyard"})
    } else {
        json!({"app.kubernetes.io/managed-by": "someone-else"})
    };
    json!({
        "apiVersion": "railyard.dev/v1", "kind": kind,
        "metadata": {"name": name, "labels": labels, "resourceVersion": "7", "uid": format!("uid-{name}")},
        "spec": spec,
    })
}

fn assert_ours(apply: &Seen, kind: &str, name: &str) {
    assert_server_side_apply(apply);
    assert_eq!(apply.body["apiVersion"], "railyard.dev/v1", "{apply:?}");
    assert_eq!(apply.body["kind"], kind, "{apply:?}");
    assert_eq!(apply.body["metadata"]["name"], name, "{apply:?}");
    assert_eq!(
        apply.body["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "railyard"}),
        "{apply:?}"
    );
}

/// The HostInterface of `h` with its NICs' rails in `plan`.
fn planned_view(h: &HostInventory, plan: &Plan) -> HostInterfaceSpec {
    let mut rails: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for b in plan.hosts.get(&h.name).into_iter().flat_map(|p| &p.blocks) {
        rails
            .entry(b.nic.to_string())
            .or_default()
            .insert(plan.network.clone(), b.interface);
    }
    HostInterfaceSpec::with_rails(h, &rails)
}

#[tokio::test]
async fn hosts_and_plans_in_etcd_become_views_by_server_side_apply() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let hosts = vec![support::host("node-1", 1, 2), support::host("node-2", 2, 2)];
    for h in &hosts {
        register(store.as_ref(), h).await;
    }
    let plan = railyard_core::plan(&network(8), &hosts, None, 0, 600);
    store_plan(store.as_ref(), &plan).await;
    let (server, client, mut seen) = Server::start(Vec::new(), &["default"]);
    let task = start_controller(client, Arc::clone(&store));

    let writes = collect_until(&mut seen, "the views of node-1 and the network", |w| {
        find(w, is_view_apply(HOST_INTERFACES, "node-1")).is_some()
            && find(w, is_view_apply(CIDRS, NET)).is_some()
    })
    .await;
    let hif = find(&writes, is_view_apply(HOST_INTERFACES, "node-1")).unwrap();
    assert_ours(hif, "HostInterface", "node-1");
    assert_eq!(
        hif.body["spec"],
        serde_json::to_value(planned_view(&hosts[0], &plan)).unwrap()
    );
    assert_eq!(
        hif.body["spec"]["interfaces"][1]["addresses"],
        json!(["10.1.0.2/16"])
    );

    let cidr = find(&writes, is_view_apply(CIDRS, NET)).unwrap();
    assert_ours(cidr, "CIDR", NET);
    assert_eq!(
        cidr.body["spec"],
        serde_json::to_value(CidrSpec::from(&plan)).unwrap()
    );
    assert_eq!(cidr.body["spec"]["hosts"].as_array().map(Vec::len), Some(2));

    // Only objects carrying our label are listed (and so ever deleted).
    for collection in [HOST_INTERFACES, CIDRS] {
        let queries = server.queries_of(collection);
        assert!(
            !queries.is_empty()
                && queries
                    .iter()
                    .all(|q| q.get("labelSelector").map(String::as_str)
                        == Some("app.kubernetes.io/managed-by=railyard")),
            "{collection}: {queries:?}"
        );
    }
    task.abort();
}

#[tokio::test]
async fn nothing_is_sent_when_the_content_did_not_change() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let node = support::host("node-1", 1, 2);
    register(store.as_ref(), &node).await;
    let plan = railyard_core::plan(&network(8), std::slice::from_ref(&node), None, 0, 600);
    store_plan(store.as_ref(), &plan).await;
    // A previous leader applied both already.
    let hif = listed(
        "HostInterface",
        "node-1",
        serde_json::to_value(planned_view(&node, &plan)).unwrap(),
        true,
    );
    let cidr = listed(
        "CIDR",
        NET,
        serde_json::to_value(CidrSpec::from(&plan)).unwrap(),
        true,
    );
    let (_server, client, mut seen) =
        Server::start_with(vec![(HOST_INTERFACES, vec![hif]), (CIDRS, vec![cidr])]);
    let task = start_controller(client, Arc::clone(&store));
    let at_start = settle(&mut seen, Duration::from_millis(700)).await;
    assert!(
        !at_start.iter().any(is_view_write),
        "views already right are not re-applied: {at_start:?}"
    );

    // The daemon re-registers the same inventory (a new etcd revision, same bytes),
    // and the planner rewrites the same host plan.
    register(store.as_ref(), &node).await;
    store_plan(store.as_ref(), &plan).await;
    let after_rewrite = settle(&mut seen, Duration::from_millis(700)).await;
    assert!(
        !after_rewrite.iter().any(is_view_write),
        "{after_rewrite:?}"
    );

    // A real change is applied, once.
    let mut faster = node.clone();
    faster.nics[0].speed_mbps = Some(200_000);
    register(store.as_ref(), &faster).await;
    let apply = next_matching(
        &mut seen,
        "HostInterface re-apply",
        is_view_apply(HOST_INTERFACES, "node-1"),
    )
    .await;
    assert_ours(&apply, "HostInterface", "node-1");
    assert_eq!(apply.body["spec"]["interfaces"][0]["speedMbps"], 200_000);
    let later = settle(&mut seen, Duration::from_millis(500)).await;
    assert!(!later.iter().any(is_view_write), "{later:?}");
    task.abort();
}

#[tokio::test]
async fn views_whose_host_or_network_left_etcd_are_deleted_but_only_ours() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let node = support::host("node-1", 1, 2);
    register(store.as_ref(), &node).await;
    let hif_spec = serde_json::to_value(HostInterfaceSpec::from(&node)).unwrap();
    let lists = vec![
        (
            HOST_INTERFACES,
            vec![
                listed("HostInterface", "node-1", hif_spec.clone(), true),
                listed("HostInterface", "departed", hif_spec.clone(), true),
                listed("HostInterface", "not-ours", hif_spec, false),
            ],
        ),
        (
            CIDRS,
            vec![listed(
                "CIDR",
                "deleted-net",
                json!({"network": "deleted-net"}),
                true,
            )],
        ),
    ];
    let (server, client, mut seen) = Server::start_with(lists);
    let task = start_controller(client, Arc::clone(&store));
    let mut deletes = Vec::new();
    for _ in 0..2 {
        let d = next_matching(&mut seen, "view DELETE", |s| s.method == "DELETE").await;
        deletes.push(d.path);
    }
    deletes.sort();
    assert_eq!(
        deletes,
        vec![
            format!("{CIDRS}/deleted-net"),
            format!("{HOST_INTERFACES}/departed"),
        ]
    );
    let rest = settle(&mut seen, Duration::from_millis(500)).await;
    assert!(!rest.iter().any(is_view_write), "{rest:?}");

    // The daemon stops: its lease expires and the registration goes.
    store.delete(&keys::host("node-1")).await.unwrap();
    let gone = next_matching(&mut seen, "DELETE of node-1", |s| s.method == "DELETE").await;
    assert_eq!(gone.path, format!("{HOST_INTERFACES}/node-1"));
    let names: Vec<Value> = server
        .listed(HOST_INTERFACES)
        .iter()
        .map(|o| o["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("not-ours")]);
    task.abort();
}

#[tokio::test]
async fn a_burst_of_a_thousand_joins_applies_each_host_once_and_the_cidr_a_few_times() {
    const HOSTS: u32 = 1000;
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let (_server, client, mut seen) = Server::start(Vec::new(), &["default"]);
    let task = start_controller(client, Arc::clone(&store));
    let hosts: Vec<HostInventory> = (0..HOSTS)
        .map(|i| support::host(&format!("node-{i}"), i, 2))
        .collect();
    let net = network(10);
    // The network exists before the burst.
    let empty = railyard_core::plan(&net, &[], None, 0, 600);
    store_plan(store.as_ref(), &empty).await;
    next_matching(
        &mut seen,
        "CIDR of the empty plan",
        is_view_apply(CIDRS, NET),
    )
    .await;

    let plan = railyard_core::plan(&net, &hosts, None, 0, 600);
    let (meta, host_plans) = plan.split();
    store
        .put(
            &keys::plan_meta(NET),
            serde_json::to_vec(&meta).unwrap(),
            None,
        )
        .await
        .unwrap();
    // Registrations trickle in over a few hundred milliseconds, as daemons start;
    // the controller sees each of them (it runs between the sleeps).
    let burst = tokio::time::Instant::now();
    for (i, h) in hosts.iter().enumerate() {
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        register(store.as_ref(), h).await;
        store
            .put(
                &keys::plan_host(NET, &h.name),
                serde_json::to_vec(&host_plans[&h.name]).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    let burst = burst.elapsed();
    let mut applies: BTreeMap<String, usize> = BTreeMap::new();
    let mut cidr_applies = 0;
    let complete = |s: &Seen| {
        s.path == format!("{CIDRS}/{NET}")
            && s.body["spec"]["hosts"].as_array().map(Vec::len) == Some(HOSTS as usize)
    };
    let mut writes = collect_until(&mut seen, "the CIDR with every host", |w| {
        w.last().is_some_and(complete)
    })
    .await;
    writes.extend(settle(&mut seen, Duration::from_millis(700)).await);
    for s in &writes {
        assert_eq!(s.method, "PATCH", "{} {}", s.method, s.path);
        assert_server_side_apply(s);
        if let Some(name) = s.path.strip_prefix(&format!("{HOST_INTERFACES}/")) {
            *applies.entry(name.to_string()).or_default() += 1;
        } else {
            cidr_applies += 1;
        }
    }
    assert_eq!(applies.len(), HOSTS as usize, "every host has its view");
    assert!(
        applies.values().all(|n| *n == 1),
        "each HostInterface applied once: {:?}",
        applies.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    // At most one CIDR apply per coalescing window (plus the last batch).
    let windows = burst.as_millis() / config().coalesce.as_millis().max(1) + 2;
    assert!(
        cidr_applies as u128 <= windows && cidr_applies < 50,
        "{HOSTS} joins over {burst:?} coalesce into at most {windows} CIDR applies, got {cidr_applies}"
    );
    task.abort();
}

#[tokio::test]
async fn the_planner_over_a_real_etcd_fills_the_cidr_view() {
    let cluster = support::Cluster::start().await;
    let planner = cluster.planner(support::fast_config("planner-a", Duration::from_secs(30)));
    cluster
        .apply(
            NET,
            r#"{"hostBlock": 6, "interfaceBlock": 2, "vlanMode": "l3"}"#,
            "",
        )
        .await;
    for (i, name) in ["node-a", "node-b"].into_iter().enumerate() {
        cluster
            .register(&support::host(name, u32::try_from(i).unwrap(), 2), 30)
            .await;
    }
    let (_server, client, mut seen) = Server::start(Vec::new(), &["default"]);
    let task = start_controller(client, Arc::clone(&cluster.store));
    let both = |s: &Seen| {
        is_view_apply(CIDRS, NET)(s) && s.body["spec"]["hosts"].as_array().map(Vec::len) == Some(2)
    };
    let writes = collect_until(&mut seen, "the CIDR with both hosts and their views", |w| {
        find(w, both).is_some()
            && ["node-a", "node-b"]
                .iter()
                .all(|n| find(w, is_view_apply(HOST_INTERFACES, n)).is_some())
    })
    .await;
    let cidr = find(&writes, both).unwrap();
    assert_ours(cidr, "CIDR", NET);
    assert_eq!(cidr.body["spec"]["network"], NET);
    assert_eq!(
        cidr.body["spec"]["interfaces"].as_array().map(Vec::len),
        Some(2)
    );
    task.abort();
    planner.shutdown().await;
}
