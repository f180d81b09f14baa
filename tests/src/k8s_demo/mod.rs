//! The main job as a Kubernetes user sees it, on the local namespace cluster:
//! the control plane of [`kube`](crate::kube) beside the cluster, the network
//! declared as a MultiNicNetwork with `kubectl apply`, the controller
//! (`railyard-planner --kubernetes`, the cluster's planner from then on) writing
//! the NetworkAttachmentDefinition, Pod objects with the
//! `k8s.v1.cni.cncf.io/networks` annotation, and each pod attached by the real
//! Multus thin plugin calling `railyard-cni`. No kubelet: a network namespace
//! stands in for each sandbox and this code runs the CNI calls a kubelet's
//! runtime would. `railyard-local k8s-demo` and the k8s tests drive it.

mod forward;
pub mod multus;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::cmd::{netns_add, netns_del};
use crate::cluster::{Cluster, ClusterSpec};
use crate::error::{Error, Result};
use crate::kube::{identity, ControlPlane, Kubectl, PlaneOptions};
pub use multus::Multus;

/// The annotation Multus reads to pick a pod's networks.
pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// The annotation Multus writes with every attachment's interfaces and addresses.
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

#[derive(Debug)]
pub struct K8sDemo {
    pub cluster: Cluster,
    pub plane: ControlPlane,
    pub kubectl: Kubectl,
    pub multus: Multus,
    /// The namespace the pods and the NAD live in.
    pub namespace: String,
}

/// One pod as attached: its API name, host index, sandbox and container ID.
#[derive(Debug, Clone)]
pub struct DemoPod {
    pub name: String,
    pub host: usize,
    pub netns: String,
    pub container_id: String,
}

impl K8sDemo {
    /// The cluster of `spec` (its pods are made here, so `spec.pods` is
    /// ignored), a control plane in `plane_dir` (`tied`: stopped with this
    /// process, as tests want), the controller against the cluster's etcd, the
    /// network applied as a MultiNicNetwork targeting `namespace`, and the
    /// wait for its NAD.
    pub fn up(
        mut spec: ClusterSpec,
        plane_dir: PathBuf,
        tied: bool,
        namespace: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<K8sDemo> {
        spec.pods = 0;
        let started = Instant::now();
        let mut cluster = Cluster::up(spec, progress)?;
        let manifests = identity::manifests_dir();
        let mut plane = ControlPlane::up(&PlaneOptions {
            dir: plane_dir.clone(),
            crds: Some(manifests.join("crds")),
            tie_to_this_process: tied,
        })?;
        let controller = identity::install_as_shipped(&plane, &manifests)?;
        progress(&format!(
            "control plane up ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        // The controller runs only on the election's leader: the cluster's
        // planner steps aside (its lease expires after lease_ttl) so the
        // Kubernetes-enabled planner takes over the same etcd and plan.
        for n in 0..cluster.spec().planners {
            cluster.kill_planner(n);
        }
        let spec = cluster.spec().clone();
        plane.spawn_with(
            "railyard-planner",
            vec![
                spec.bin_dir.join("railyard-planner").display().to_string(),
                "--kubernetes".into(),
                format!("--etcd-endpoints={}", spec.local_endpoint()),
                format!("--identity={}k8s-controller", spec.prefix),
                format!("--lease-ttl={}", spec.lease_ttl),
                "--metrics-addr=off".into(),
            ],
            &[("KUBECONFIG", controller.display().to_string())],
        )?;
        let kubectl = plane.admin()?;
        kubectl.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"
        ))?;
        kubectl.apply(&network_manifest(&spec, namespace))?;
        wait(
            Duration::from_secs(30),
            "the NetworkAttachmentDefinition",
            || {
                let a = kubectl.attempt(
                    &["get", "net-attach-def", &spec.network, "-n", namespace],
                    None,
                )?;
                Ok(a.ok)
            },
        )?;
        progress(&format!(
            "MultiNicNetwork applied, NAD {namespace}/{} written by the controller ({:.1} s)",
            spec.network,
            started.elapsed().as_secs_f64()
        ));
        let port = plane.state.ports.apiserver;
        for i in 0..spec.hosts {
            forward::start(&spec.host(i), port)?;
        }
        let multus = Multus::new(
            &spec,
            &plane.state.admin_kubeconfig(),
            &plane_dir.join("multus"),
        )?;
        Ok(K8sDemo {
            cluster,
            plane,
            kubectl,
            multus,
            namespace: namespace.to_owned(),
        })
    }

    /// Creates Pod `name` on host `host` with `networks` as its
    /// `k8s.v1.cni.cncf.io/networks` annotation, then its sandbox, then Multus ADD.
    pub fn attach(&mut self, name: &str, host: usize, networks: &str) -> Result<DemoPod> {
        let spec = self.cluster.spec().clone();
        let node = spec.host(host);
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace,
                         "annotations": {NETWORKS: networks}},
            "spec": {"nodeName": node, "automountServiceAccountToken": false,
                     "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
        });
        // The namespace's `default` ServiceAccount, which admission wants, comes
        // from kube-controller-manager a moment after the namespace.
        let mut uid = String::new();
        wait(
            Duration::from_secs(15),
            &format!("Pod {name} created"),
            || {
                let a = self.kubectl.attempt(
                    &["apply", "-o", "json", "-f", "-"],
                    Some(&manifest.to_string()),
                )?;
                if a.ok {
                    let v: Value = serde_json::from_str(&a.stdout).unwrap_or_default();
                    uid = v["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                }
                Ok(a.ok)
            },
        )?;
        let netns = format!("{}{name}", spec.prefix);
        let container_id = format!("{netns}-{}", std::process::id());
        netns_add(&netns)?;
        self.cluster.state.add_netns(&netns);
        self.cluster.state.save()?;
        let pod = (self.namespace.as_str(), name, uid.as_str());
        if let Err(e) = self
            .multus
            .run(&spec, host, "ADD", pod, &netns, &container_id)
        {
            let _ = netns_del(&netns);
            return Err(e);
        }
        Ok(DemoPod {
            name: name.to_owned(),
            host,
            netns,
            container_id,
        })
    }

    /// `railyard check --kubernetes` of the network: the pods and their
    /// addresses from the API (Multus's network-status), the plan from the
    /// cluster's etcd, the probes from the sandboxes (named `<prefix><pod>`)
    /// and the host namespaces; the admin kubeconfig.
    pub fn check_command(&self) -> std::process::Command {
        let spec = self.cluster.spec();
        let mut cmd = std::process::Command::new(spec.bin_dir.join("railyard"));
        cmd.args(["check", &spec.network, "--kubernetes", "--namespace"])
            .arg(&self.namespace)
            .arg(format!("--pod-netns={}{{pod}}", spec.prefix))
            .arg(format!("--etcd-endpoints={}", spec.local_endpoint()))
            .env("KUBECONFIG", self.plane.state.admin_kubeconfig());
        cmd
    }

    /// The Pod's `k8s.v1.cni.cncf.io/network-status`, parsed.
    pub fn network_status(&self, pod: &str) -> Result<Value> {
        let text = self.kubectl.run(&[
            "get",
            "pod",
            pod,
            "-n",
            &self.namespace,
            "-o",
            "jsonpath={.metadata.annotations.k8s\\.v1\\.cni\\.cncf\\.io/network-status}",
        ])?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Refused(format!(
                "pod {pod}: no readable network-status ({e}): {text:?}"
            ))
        })
    }
}

/// The cluster's network as a MultiNicNetwork (ptp per rail, every NIC unless a
/// pod's cni-args select fewer) targeting `namespace`.
pub fn network_manifest(spec: &ClusterSpec, namespace: &str) -> String {
    format!(
        "apiVersion: railyard.dev/v1\nkind: MultiNicNetwork\nmetadata:\n  name: {}\nspec:\n  \
         subnet: \"{}\"\n  ipam: '{{\"type\": \"railyard-ipam\", \"hostBlock\": {}, \
         \"interfaceBlock\": {}}}'\n  multiNICIPAM: true\n  plugin:\n    cniVersion: \"1.0.0\"\n    \
         type: ptp\n  attachPolicy:\n    strategy: none\n  namespaces:\n  - {namespace}\n",
        spec.network,
        spec.subnet(),
        spec.host_block(),
        spec.interface_block()
    )
}

/// Polls `ready` every 200 ms until it holds or `timeout` passes.
fn wait(timeout: Duration, what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready()? {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs_f64(),
                detail: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
