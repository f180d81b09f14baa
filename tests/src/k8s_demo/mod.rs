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
mod node_view;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::cmd::netns_add;
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
    /// A token of the `railyard-check` ServiceAccount
    /// (deploy/kubernetes/check-rbac.yaml): what the check runs as.
    pub check_kubeconfig: PathBuf,
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
        let rbac = manifests.join("check-rbac.yaml");
        let text = std::fs::read_to_string(&rbac)
            .map_err(|e| Error::io("read the check's RBAC", &rbac, e))?;
        kubectl.apply(&text)?;
        let check_kubeconfig = identity::token_kubeconfig(
            &plane,
            identity::NAMESPACE,
            "railyard-check",
            "check.kubeconfig",
        )?;
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
            &spec.cni_state().join("multus"),
        )?;
        Ok(K8sDemo {
            cluster,
            plane,
            kubectl,
            multus,
            namespace: namespace.to_owned(),
            check_kubeconfig,
        })
    }

    /// Creates Pod `name` on host `host` with `networks` as its
    /// `k8s.v1.cni.cncf.io/networks` annotation, then its sandbox, then Multus ADD.
    pub fn attach(&mut self, name: &str, host: usize, networks: &str) -> Result<DemoPod> {
        let (mut pods, _) = self.attach_many(&[(name.to_owned(), host, networks.to_owned())], 1)?;
        Ok(pods.remove(0))
    }

    /// Pods `(name, host, networks annotation)`: all created in the API with one
    /// `kubectl apply`, then their sandboxes, then Multus ADD for `parallel` at a
    /// time, as a node's runtime starts several sandboxes at once. Returns the
    /// pods and how long the Multus ADDs took (the figure of
    /// docs/benchmarks.md: API writes excluded, as a kubelet's are).
    pub fn attach_many(
        &mut self,
        wanted: &[(String, usize, String)],
        parallel: usize,
    ) -> Result<(Vec<DemoPod>, Duration)> {
        let pods: Vec<(Value, usize)> = wanted
            .iter()
            .map(|(name, host, networks)| {
                let pod = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": self.namespace,
                                 "annotations": {NETWORKS: networks}},
                    "spec": {"automountServiceAccountToken": false,
                             "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
                });
                (pod, *host)
            })
            .collect();
        self.attach_pods(pods, parallel)
    }

    /// Pod objects as given (a DaemonSet's template, say), each bound to its
    /// host (`spec.nodeName`, in the demo's namespace): created in the API
    /// with one `kubectl apply` (so admission, Pod Security included, sees them
    /// as written), then their sandboxes, then Multus ADD, `parallel` at a time.
    pub fn attach_pods(
        &mut self,
        pods: Vec<(Value, usize)>,
        parallel: usize,
    ) -> Result<(Vec<DemoPod>, Duration)> {
        let spec = self.cluster.spec().clone();
        let mut wanted = Vec::new();
        let items: Vec<Value> = pods
            .into_iter()
            .map(|(mut pod, host)| {
                pod["metadata"]["namespace"] = Value::from(self.namespace.as_str());
                pod["spec"]["nodeName"] = Value::from(spec.host(host));
                let name = pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                wanted.push((name, host));
                pod
            })
            .collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        // The namespace's `default` ServiceAccount, which admission wants, comes
        // from kube-controller-manager a moment after the namespace.
        let mut uids = std::collections::HashMap::new();
        wait(Duration::from_secs(15), "the Pods created", || {
            let a = self
                .kubectl
                .attempt(&["apply", "-o", "json", "-f", "-"], Some(&list.to_string()))?;
            if a.ok {
                let v: Value = serde_json::from_str(&a.stdout).unwrap_or_default();
                let applied = v["items"].as_array().cloned().unwrap_or_else(|| vec![v]);
                for item in applied {
                    let m = &item["metadata"];
                    if let (Some(n), Some(u)) = (m["name"].as_str(), m["uid"].as_str()) {
                        uids.insert(n.to_owned(), u.to_owned());
                    }
                }
            }
            Ok(a.ok)
        })?;
        let pods: Vec<DemoPod> = wanted
            .iter()
            .map(|(name, host)| {
                let netns = format!("{}{name}", spec.prefix);
                DemoPod {
                    name: name.clone(),
                    host: *host,
                    container_id: format!("{netns}-{}", std::process::id()),
                    netns,
                }
            })
            .collect();
        for p in &pods {
            netns_add(&p.netns)?;
            self.cluster.state.add_netns(&p.netns);
        }
        self.cluster.state.save()?;
        let started = Instant::now();
        let (multus, namespace) = (&self.multus, self.namespace.as_str());
        let failures: Vec<Error> = std::thread::scope(|scope| {
            let chunk = pods.len().div_ceil(parallel.max(1));
            let workers: Vec<_> = pods
                .chunks(chunk.max(1))
                .map(|batch| {
                    let (spec, uids) = (&spec, &uids);
                    scope.spawn(move || {
                        batch
                            .iter()
                            .filter_map(|p| {
                                let uid = uids.get(&p.name).map(String::as_str).unwrap_or("");
                                let pod = (namespace, p.name.as_str(), uid);
                                multus
                                    .run(spec, p.host, "ADD", pod, &p.netns, &p.container_id)
                                    .err()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        let took = started.elapsed();
        match failures.into_iter().next() {
            Some(e) => Err(e),
            None => Ok((pods, took)),
        }
    }

    /// `railyard check --kubernetes` of the network: the pods and their
    /// addresses from the API (Multus's network-status), the plan from the
    /// cluster's etcd, the probes from the sandboxes (named `<prefix><pod>`)
    /// and the host namespaces; as the `railyard-check` ServiceAccount, so its
    /// RBAC is what is tested.
    pub fn check_command(&self) -> std::process::Command {
        let spec = self.cluster.spec();
        let mut cmd = std::process::Command::new(spec.bin_dir.join("railyard"));
        cmd.args([
            "check",
            &spec.network,
            "--kubernetes",
            "--throughput",
            "--namespace",
        ])
        .arg(&self.namespace)
        .arg(format!("--pod-netns={}{{pod}}", spec.prefix))
        .arg(format!("--etcd-endpoints={}", spec.local_endpoint()))
        .env("KUBECONFIG", &self.check_kubeconfig);
        cmd
    }

    /// Makes the API server reachable from network namespace `netns` (a pod's,
    /// say) at the address the kubeconfigs name, as a pod reaches it through
    /// the cluster's Service in a real cluster.
    pub fn reach_api_from(&self, netns: &str) -> Result<()> {
        forward::start(netns, self.plane.state.ports.apiserver)
    }

    /// A kubeconfig with a token of ServiceAccount `namespace/account`: what
    /// a pod running as that account authenticates with.
    pub fn kubeconfig_of(&self, namespace: &str, account: &str) -> Result<PathBuf> {
        identity::token_kubeconfig(
            &self.plane,
            namespace,
            account,
            &format!("{namespace}-{account}.kubeconfig"),
        )
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

/// The cluster's network as a MultiNicNetwork targeting `namespace` (ptp per
/// rail by default; macvlan in bridge mode for a `--delegate macvlan` cluster,
/// whose route-daemons then make the gateway shims), every NIC unless a pod's
/// cni-args select fewer. The `ipam` field is a JSON string, as multi-nic-cni
/// writes it.
pub fn network_manifest(spec: &ClusterSpec, namespace: &str) -> String {
    let plugin = match spec.delegate {
        crate::cluster::Delegate::Macvlan => "type: macvlan\n    args:\n      mode: bridge",
        _ => "type: ptp",
    };
    format!(
        "apiVersion: railyard.dev/v1\nkind: MultiNicNetwork\nmetadata:\n  name: {}\nspec:\n  \
         subnet: \"{}\"\n  ipam: '{{\"type\": \"railyard-ipam\", \"hostBlock\": {}, \
         \"interfaceBlock\": {}}}'\n  multiNICIPAM: true\n  plugin:\n    cniVersion: \"1.0.0\"\n    \
         {plugin}\n  attachPolicy:\n    strategy: none\n  namespaces:\n  - {namespace}\n",
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
