//! Against a real cluster (ignored by default: no kube-apiserver can run on the
//! development and CI machines). Needs KUBECONFIG (or in-cluster credentials) with
//! rights to create CRDs and namespaces, and Multus's NetworkAttachmentDefinition
//! CRD installed:
//!
//! ```sh
//! KUBECONFIG=~/.kube/config cargo test -p railyard-planner --test k8s_cluster -- --ignored
//! ```
//!
//! etcd is the in-memory store: this checks the Kubernetes side (CRD accepted by a
//! real apiserver, CEL rules enforced, NAD applied, recreated and owned, status
//! written; views applied and deleted; DeviceClasses copied into etcd), not the
//! planner.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use railyard_core::{keys, HostInventory, Nic};
use railyard_k8s::controller::run_controller;
use railyard_k8s::crd::{
    self, DeviceClass, HostInterface, MultiNicNetwork, NetworkAttachmentDefinition,
};
use railyard_k8s::ControllerConfig;
use railyard_store::{MemStore, Store};
use serde_json::json;

const NS: &str = "railyard-k8s-test";
const NET: &str = "railyard-k8s-test-net";

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..120 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{what} did not happen within 60s");
}

/// A client for the cluster, with railyard's CRDs applied to it.
async fn client_with_crds() -> (Client, Api<CustomResourceDefinition>) {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG or in-cluster config");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("railyard-test").force();
    for (_, c) in crd::all() {
        let name = c.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &pp, &Patch::Apply(&c))
            .await
            .expect("CRD accepted by the apiserver");
    }
    (client, crds)
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn multinicnetwork_becomes_a_nad_that_comes_back_after_delete() {
    let (client, crds) = client_with_crds().await;
    let pp = PatchParams::apply("railyard-test").force();
    crds.get("network-attachment-definitions.k8s.cni.cncf.io")
        .await
        .expect("Multus's NetworkAttachmentDefinition CRD must be installed");
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    nss.patch(NS, &pp, &Patch::Apply(&ns)).await.unwrap();
    let nets: Api<MultiNicNetwork> = Api::all(client.clone());
    eventually("the MultiNicNetwork CRD to be served", || {
        let nets = nets.clone();
        async move { nets.list(&Default::default()).await.ok() }
    })
    .await;

    // The CEL rules are enforced by the real apiserver.
    let bad: MultiNicNetwork = serde_json::from_value(json!({
        "apiVersion": "railyard.dev/v1", "kind": "MultiNicNetwork",
        "metadata": {"name": "railyard-k8s-test-bad"},
        "spec": {"subnet": "not-a-cidr"}
    }))
    .unwrap();
    assert!(
        nets.create(&PostParams::default(), &bad).await.is_err(),
        "subnet rule"
    );

    let net: MultiNicNetwork = serde_json::from_value(json!({
        "apiVersion": "railyard.dev/v1", "kind": "MultiNicNetwork",
        "metadata": {"name": NET},
        "spec": {
            "subnet": "192.168.0.0/16",
            "ipam": "{\"type\": \"multi-nic-ipam\", \"hostBlock\": 6, \"interfaceBlock\": 2, \"vlanMode\": \"l3\"}",
            "multiNICIPAM": true,
            "plugin": {"cniVersion": "0.3.0", "type": "ipvlan", "args": {"mode": "l3"}},
            "attachPolicy": {"strategy": "none"},
            "namespaces": [NS]
        }
    }))
    .unwrap();
    nets.patch(NET, &pp, &Patch::Apply(&net)).await.unwrap();

    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let cfg = ControllerConfig::default();
    let task = {
        let client = client.clone();
        let store = Arc::clone(&store);
        tokio::spawn(async move { run_controller(client, store, None, &cfg).await })
    };

    let nads: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), NS);
    let nad = eventually("the NAD to be created", || {
        let nads = nads.clone();
        async move { nads.get_opt(NET).await.ok().flatten() }
    })
    .await;
    assert!(nad.spec.config.contains("railyard-cni"));
    let first_uid = nad.metadata.uid.clone();

    nads.delete(NET, &DeleteParams::default()).await.unwrap();
    eventually("the NAD to be recreated", || {
        let nads = nads.clone();
        let first_uid = first_uid.clone();
        async move {
            nads.get_opt(NET)
                .await
                .ok()
                .flatten()
                .filter(|n| n.metadata.uid != first_uid)
        }
    })
    .await;

    let status = eventually("the status", || {
        let nets = nets.clone();
        async move { nets.get(NET).await.ok().and_then(|n| n.status) }
    })
    .await;
    assert!(status.conditions.iter().any(|c| c.type_ == "Ready"));
    assert_eq!(status.nad_name.as_deref(), Some(NET));

    task.abort();
    nets.delete(NET, &DeleteParams::default()).await.ok();
    nss.delete(NS, &DeleteParams::default()).await.ok();
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn views_follow_etcd_and_device_classes_reach_it() {
    const HOST: &str = "railyard-k8s-test-host";
    const CLASS: &str = "railyard-k8s-test-class";
    let (client, _) = client_with_crds().await;
    let pp = PatchParams::apply("railyard-test").force();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let host = HostInventory {
        name: HOST.into(),
        nics: vec![Nic {
            name: "eth1".into(),
            addresses: vec!["10.0.1.5/24".parse().unwrap()],
            up: true,
            ..Nic::default()
        }],
    };
    store
        .put(&keys::host(HOST), serde_json::to_vec(&host).unwrap(), None)
        .await
        .unwrap();
    let classes: Api<DeviceClass> = Api::all(client.clone());
    let class: DeviceClass = serde_json::from_value(json!({
        "apiVersion": "railyard.dev/v1", "kind": "DeviceClass",
        "metadata": {"name": CLASS},
        "spec": {"rules": [{"driver": "mlx5_core"}]}
    }))
    .unwrap();
    classes
        .patch(CLASS, &pp, &Patch::Apply(&class))
        .await
        .unwrap();

    let cfg = ControllerConfig::default();
    let task = {
        let client = client.clone();
        let store = Arc::clone(&store);
        tokio::spawn(async move { run_controller(client, store, None, &cfg).await })
    };
    let hifs: Api<HostInterface> = Api::all(client.clone());
    let hif = eventually("the HostInterface", || {
        let hifs = hifs.clone();
        async move { hifs.get_opt(HOST).await.ok().flatten() }
    })
    .await;
    assert_eq!(hif.spec.interfaces[0].addresses, vec!["10.0.1.5/24"]);
    eventually("the device class in etcd", || {
        let store = Arc::clone(&store);
        async move { store.get(&keys::device_class(CLASS)).await.ok().flatten() }
    })
    .await;

    store.delete(&keys::host(HOST)).await.unwrap();
    eventually("the HostInterface deleted", || {
        let hifs = hifs.clone();
        async move { matches!(hifs.get_opt(HOST).await, Ok(None)).then_some(()) }
    })
    .await;
    classes
        .delete(CLASS, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the device class gone from etcd", || {
        let store = Arc::clone(&store);
        async move { matches!(store.get(&keys::device_class(CLASS)).await, Ok(None)).then_some(()) }
    })
    .await;
    task.abort();
}
