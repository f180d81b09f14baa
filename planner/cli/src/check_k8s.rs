//! Where `railyard check --kubernetes` finds the pods: the Kubernetes API, the
//! way a cluster's operators see them, instead of the allocation records in etcd.
//!
//! The source of truth chosen is Multus's `k8s.v1.cni.cncf.io/network-status`
//! annotation on each Pod: Multus writes it after the pod's CNI ADD succeeded,
//! with the interfaces and addresses `railyard-cni` returned, under the name
//! `<namespace>/<NAD>` of the attachment. So a pod counts once its attachment
//! is done as the kubelet saw it, and a pod whose ADD failed is absent (the
//! check then has fewer pods rather than probing addresses nobody holds). The
//! NADs of the network are the ones the controller labels
//! `railyard.dev/network=<network>` (whatever `railyard.dev/nad-name` renamed
//! them to). Each address's rail is the plan's rail whose share of the subnet
//! holds it, so a pod that picked rails with `cni-args` (its `net1-0` may be
//! rail 1) is probed on the right rails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use railyard_core::Plan;
use serde::Deserialize;

use crate::check::Pod;
use crate::error::{CliError, Result};

pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// The label the controller puts on every NAD it writes.
pub const NETWORK_LABEL: &str = "railyard.dev/network";

/// One entry of the network-status annotation (the fields the check reads).
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkStatus {
    pub name: String,
    #[serde(default)]
    pub ips: Vec<String>,
}

/// What the check needs of one Pod object.
#[derive(Debug, Clone)]
pub struct ApiPod {
    pub namespace: String,
    pub name: String,
    /// `spec.nodeName`: the host, for `--host-netns`.
    pub node: String,
    /// The raw annotation, when the pod has one.
    pub network_status: Option<String>,
}

/// The pods attached to one of `nads` (`namespace/name`), with each address put
/// on the rail of `plan` that holds it. A malformed annotation is an error
/// naming the pod: it means Multus (or someone) wrote something unexpected.
pub fn pods_from_status(plan: &Plan, nads: &BTreeSet<String>, pods: &[ApiPod]) -> Result<Vec<Pod>> {
    let mut out = Vec::new();
    for p in pods {
        let Some(text) = &p.network_status else {
            continue;
        };
        let statuses: Vec<NetworkStatus> = serde_json::from_str(text).map_err(|e| {
            CliError::Usage(format!(
                "pod {}/{}: {NETWORK_STATUS} is not a list of network statuses: {e}",
                p.namespace, p.name
            ))
        })?;
        let mut addresses: BTreeMap<u32, Vec<IpAddr>> = BTreeMap::new();
        for s in statuses.iter().filter(|s| nads.contains(&s.name)) {
            for ip in &s.ips {
                let addr: IpAddr = ip.parse().map_err(|_| {
                    CliError::Usage(format!(
                        "pod {}/{}: {NETWORK_STATUS} has {ip:?}, not an IP address",
                        p.namespace, p.name
                    ))
                })?;
                if let Some(rail) = rail_of(plan, addr) {
                    addresses.entry(rail).or_default().push(addr);
                }
            }
        }
        if !addresses.is_empty() {
            out.push(Pod {
                name: p.name.clone(),
                host: p.node.clone(),
                addresses,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The rail whose share of the subnet holds `addr`.
pub fn rail_of(plan: &Plan, addr: IpAddr) -> Option<u32> {
    plan.interfaces
        .iter()
        .find(|i| i.cidrs.iter().any(|c| c.contains(&addr)))
        .map(|i| i.index)
}

/// Reads the network's NADs and the pods (in `namespace`, or every namespace;
/// those matching label `selector` when given)
/// from the API server of the inferred client configuration (`KUBECONFIG`,
/// `~/.kube/config`, or the pod's service account in a cluster).
pub async fn pods_from_api(
    plan: &Plan,
    network: &str,
    namespace: Option<&str>,
    label_selector: Option<&str>,
) -> Result<Vec<Pod>> {
    let api_error = |what: &str, e: kube::Error| CliError::Usage(format!("{what}: {e}"));
    let client = kube::Client::try_default()
        .await
        .map_err(|e| api_error("no Kubernetes client configuration", e))?;
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions");
    let nad_api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let selector = ListParams::default().labels(&format!("{NETWORK_LABEL}={network}"));
    let nads: BTreeSet<String> = nad_api
        .list(&selector)
        .await
        .map_err(|e| api_error("list NetworkAttachmentDefinitions", e))?
        .items
        .into_iter()
        .map(|n| {
            let ns = n.metadata.namespace.unwrap_or_default();
            format!("{ns}/{}", n.metadata.name.unwrap_or_default())
        })
        .collect();
    if nads.is_empty() {
        return Err(CliError::Usage(format!(
            "no NetworkAttachmentDefinition labelled {NETWORK_LABEL}={network}: \
             is the MultiNicNetwork applied and the controller running?"
        )));
    }
    let pod_api: Api<KubePod> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let pod_params = match label_selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    let pods: Vec<ApiPod> = pod_api
        .list(&pod_params)
        .await
        .map_err(|e| api_error("list Pods", e))?
        .items
        .into_iter()
        .map(|p| ApiPod {
            namespace: p.metadata.namespace.unwrap_or_default(),
            name: p.metadata.name.unwrap_or_default(),
            node: p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            network_status: p
                .metadata
                .annotations
                .and_then(|mut a| a.remove(NETWORK_STATUS)),
        })
        .collect();
    pods_from_status(plan, &nads, &pods)
}

/// The rails of `network` from its CIDR view (`cidrs.railyard.dev`, which the
/// controller writes from the plan): what the in-cluster check needs of the
/// plan, without the etcd credentials only the railyard-system pods hold.
pub async fn rails_from_api(network: &str) -> Result<Plan> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| CliError::Usage(format!("no Kubernetes client configuration: {e}")))?;
    let gvk = GroupVersionKind::gvk("railyard.dev", "v1", "CIDR");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "cidrs");
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let view = api.get(network).await.map_err(|e| {
        CliError::Usage(format!(
            "the CIDR view {network:?} (cidrs.railyard.dev): {e}; is the controller running?"
        ))
    })?;
    rails_from_view(network, &view.data)
}

/// [`rails_from_api`]'s decoding: `spec.interfaces[]` as `{index, netAddress, cidrs}`.
pub fn rails_from_view(network: &str, data: &serde_json::Value) -> Result<Plan> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Rail {
        index: u32,
        net_address: ipnet::IpNet,
        #[serde(default)]
        cidrs: Vec<ipnet::IpNet>,
    }
    let rails: Vec<Rail> =
        serde_json::from_value(data["spec"]["interfaces"].clone()).map_err(|e| {
            CliError::Usage(format!(
                "the CIDR view {network:?}: spec.interfaces is not a list of rails: {e}"
            ))
        })?;
    Ok(Plan {
        network: network.to_owned(),
        interfaces: rails
            .into_iter()
            .map(|r| railyard_core::plan::Interface {
                index: r.index,
                net_address: r.net_address,
                cidrs: r.cidrs,
            })
            .collect(),
        ..Plan::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use railyard_core::plan::Interface;

    fn plan() -> Plan {
        let rail = |index: u32, cidr: &str| Interface {
            index,
            net_address: "10.100.0.0/24".parse().expect("cidr"),
            cidrs: vec![cidr.parse().expect("cidr")],
        };
        Plan {
            network: "rails".into(),
            interfaces: vec![rail(0, "192.168.0.0/18"), rail(1, "192.168.64.0/18")],
            ..Plan::default()
        }
    }

    fn pod(name: &str, status: Option<&str>) -> ApiPod {
        ApiPod {
            namespace: "demo".into(),
            name: name.into(),
            node: "host-0".into(),
            network_status: status.map(str::to_owned),
        }
    }

    #[test]
    fn addresses_go_to_the_rail_that_holds_them() {
        let nads = BTreeSet::from(["demo/rails".to_owned()]);
        let status = r#"[{"name": "lo", "ips": ["127.0.0.1"], "default": true},
            {"name": "demo/rails", "interface": "net1-0", "ips": ["192.168.64.2"]},
            {"name": "demo/other", "interface": "net2-0", "ips": ["192.168.0.9"]}]"#;
        let pods = pods_from_status(
            &plan(),
            &nads,
            &[pod("b", Some(status)), pod("a", None), pod("c", Some("[]"))],
        )
        .expect("valid");
        assert_eq!(pods.len(), 1, "{pods:?}");
        assert_eq!(pods[0].name, "b");
        let want: BTreeMap<u32, Vec<IpAddr>> =
            BTreeMap::from([(1, vec!["192.168.64.2".parse().expect("ip")])]);
        assert_eq!(pods[0].addresses, want);
    }

    #[test]
    fn rails_come_from_the_cidr_view_and_a_bad_one_names_the_field() {
        let view = serde_json::json!({"spec": {"network": "rails", "interfaces": [
            {"index": 0, "netAddress": "10.100.0.0/24", "cidrs": ["192.168.0.0/18"]},
            {"index": 1, "netAddress": "10.100.1.0/24", "cidrs": ["192.168.64.0/18"]}]}});
        let plan = rails_from_view("rails", &view).expect("valid");
        assert_eq!(rail_of(&plan, "192.168.64.9".parse().expect("ip")), Some(1));
        let bad = serde_json::json!({"spec": {"interfaces": [{"index": "zero"}]}});
        let e = rails_from_view("rails", &bad).expect_err("bad");
        assert!(e.to_string().contains("spec.interfaces"), "{e}");
    }

    #[test]
    fn a_malformed_annotation_names_the_pod() {
        let nads = BTreeSet::from(["demo/rails".to_owned()]);
        let e = pods_from_status(&plan(), &nads, &[pod("x", Some("{oops"))]).expect_err("bad");
        assert!(e.to_string().contains("demo/x"), "{e}");
        let bad_ip = r#"[{"name": "demo/rails", "ips": ["nope"]}]"#;
        let e = pods_from_status(&plan(), &nads, &[pod("y", Some(bad_ip))]).expect_err("bad");
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }
}
