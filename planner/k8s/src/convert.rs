//! MultiNicNetwork → the network manifest railyard stores in etcd.
//!
//! The controller stores exactly what `railyard apply` would for the same YAML, so
//! the planner cannot tell (and need not care) where a network came from; the only
//! addition is the object's UID, which lets the cleanup tell Kubernetes-made specs
//! from CLI-made ones.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use railyard_core::ifacer::{BondModeField, BondSpec, IfacerSpec};
use railyard_core::spec::{
    AttachPolicySpec, ChainPluginSpec, DevicesSpec, IpamField, Metadata, PluginSpec, RailRouteSpec,
};
use railyard_core::{NetworkManifest, NetworkSpec};

use super::crd::{MultiNicNetwork, MultiNicNetworkSpec};
use super::ANNOTATION_K8S_UID;
use railyard_core::ALLOW_RENUMBER;

/// The spec in the core's terms. Field for field: the CRD and the core accept the
/// same manifest.
pub fn core_spec(spec: &MultiNicNetworkSpec) -> NetworkSpec {
    NetworkSpec {
        subnet: spec.subnet.clone(),
        ipam: IpamField::Text(spec.ipam.clone()),
        multi_nic_ipam: spec.multi_nic_ipam,
        plugin: spec.plugin.as_ref().map(|p| PluginSpec {
            cni_version: p.cni_version.clone(),
            kind: p.kind.clone(),
            args: p.args.clone(),
        }),
        attach_policy: spec.attach_policy.as_ref().map(|a| AttachPolicySpec {
            strategy: a.strategy.clone(),
            target: a.target.clone(),
        }),
        namespaces: spec.namespaces.clone(),
        master_nets: spec.master_nets.clone(),
        fabric: spec
            .fabric
            .as_ref()
            .map(|f| railyard_core::fabric::FabricSpec {
                mode: f.mode.clone(),
                bgp: f.bgp.as_ref().map(|b| railyard_core::fabric::BgpSpec {
                    asn: b.asn,
                    peer_asn: b.peer_asn,
                    hold_time: b.hold_time,
                    unknown: Default::default(),
                }),
                unknown: Default::default(),
            }),
        ifacer: spec.ifacer.as_ref().map(|i| IfacerSpec {
            vlan_id: i.vlan_id,
            bonds: i
                .bonds
                .iter()
                .map(|b| BondSpec {
                    name: b.name.clone(),
                    interfaces: b.interfaces.clone(),
                    mode: b.mode.as_ref().map(|m| match m {
                        IntOrString::Int(n) => BondModeField::Number(i64::from(*n)),
                        IntOrString::String(s) => BondModeField::Text(s.clone()),
                    }),
                    options: b.options.clone(),
                })
                .collect(),
        }),
        routes: spec
            .routes
            .iter()
            .map(|r| RailRouteSpec {
                rail: r.rail,
                dst: r.dst.clone(),
            })
            .collect(),
        devices: spec.devices.as_ref().map(|d| DevicesSpec {
            rail_resources: d.rail_resources.clone(),
            gpu_resources: d.gpu_resources.clone(),
            pod_resources_socket: d.pod_resources_socket.clone(),
        }),
        chain: spec
            .chain
            .iter()
            .map(|c| ChainPluginSpec {
                kind: c.kind.clone(),
                args: c.args.clone(),
            })
            .collect(),
    }
}

/// The manifest stored at `keys::network(name)`. Only railyard's own annotations
/// are carried over: `kubectl.kubernetes.io/last-applied-configuration` and the
/// like would change the stored bytes, and so wake the planner, on every edit.
pub fn manifest(net: &MultiNicNetwork) -> NetworkManifest {
    let mut annotations = BTreeMap::new();
    if let Some(v) = net.annotations().get(ALLOW_RENUMBER) {
        annotations.insert(ALLOW_RENUMBER.to_string(), v.clone());
    }
    if let Some(uid) = net.uid() {
        annotations.insert(ANNOTATION_K8S_UID.to_string(), uid);
    }
    NetworkManifest {
        api_version: Some(MultiNicNetwork::api_version(&()).into_owned()),
        kind: Some(MultiNicNetwork::kind(&()).into_owned()),
        metadata: Metadata {
            name: net.name_any(),
            annotations,
        },
        spec: core_spec(&net.spec),
    }
}
