//! Attaching a pod as a container runtime with Multus does: the real Multus thin
//! plugin (`make deps`), run in the host's network namespace with the CNI
//! environment a kubelet would give it. Multus reads the pod's
//! `k8s.v1.cni.cncf.io/networks` annotation and the NetworkAttachmentDefinition
//! from the API server, runs the default network (the upstream `loopback`: no
//! kubelet, so no cluster network is needed for eth0) and then `railyard-cni`
//! with the NAD's config, and writes `k8s.v1.cni.cncf.io/network-status` on the
//! Pod.
//!
//! Each call runs in its host's node view (`node_view.rs`): the host's network namespace and
//! a mount namespace in which the NAD's default paths (railyard-ipam's socket,
//! railyard-cni's state dir) are that host's, as on a real node.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};

use super::node_view::NodeView;
use crate::cluster::ClusterSpec;
use crate::error::{Error, Result};
use crate::kube::upstream;

/// Where Debian's `loopback` plugin is (`make deps` builds the others).
const DEBIAN_CNI: &str = "/usr/lib/cni";

#[derive(Debug)]
pub struct Multus {
    bin: PathBuf,
    conf: Value,
    cni_path: String,
    /// One per host of the cluster, made once (see [`NodeView`]).
    views: Vec<NodeView>,
}

/// What one ADD gave: the container ID used and Multus's result.
#[derive(Debug, Clone)]
pub struct Attached {
    pub container_id: String,
    pub result: Value,
}

impl Multus {
    /// Multus with `kubeconfig`, its cache and log under `dir`.
    pub fn new(spec: &ClusterSpec, kubeconfig: &Path, dir: &Path) -> Result<Multus> {
        let [bin] = upstream::require(["multus"])?;
        let loopback = Path::new(DEBIAN_CNI).join("loopback");
        if !loopback.is_file() {
            return Err(Error::Missing(format!(
                "{} not found (Debian's containernetworking-plugins; run make deps)",
                loopback.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("make the Multus dir", dir, e))?;
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": "multus-cni-network",
            "type": "multus",
            "kubeconfig": kubeconfig,
            "cniDir": dir.join("cache"),
            "binDir": spec.bin_dir,
            "logFile": dir.join("multus.log"),
            "logLevel": "verbose",
            "delegates": [{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}],
        });
        // The NAD's state dir, railyard-cni's default, becomes the
        // cluster's, so `down` removes the attachments' state with the cluster.
        let views = (0..spec.hosts)
            .map(|host| {
                let sockets = spec.socket(host).parent().map(Path::to_path_buf);
                NodeView::new(
                    &spec.host(host),
                    &sockets.unwrap_or_default(),
                    &spec.cni_state(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Multus {
            bin,
            conf,
            cni_path: format!("{}:{}", upstream::dir().display(), DEBIAN_CNI),
            views,
        })
    }

    /// CNI `command` (ADD or DEL) for pod `namespace/pod` (uid `uid`) whose sandbox
    /// is network namespace `netns`, on host `host` of `spec`.
    pub fn run(
        &self,
        spec: &ClusterSpec,
        host: usize,
        command: &str,
        (namespace, pod, uid): (&str, &str, &str),
        netns: &str,
        container_id: &str,
    ) -> Result<Value> {
        let view = self.views.get(host).ok_or_else(|| {
            Error::Refused(format!(
                "host {host}: the cluster has {} hosts",
                self.views.len()
            ))
        })?;
        let mut cmd = view.command(&self.bin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", format!("/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};\
                     K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("multus {command} {namespace}/{pod} on {}", spec.host(host));
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("run multus", &self.bin, e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(self.conf.to_string().as_bytes())
                .map_err(|e| Error::io("write multus's config", &self.bin, e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io("wait for multus", &self.bin, e))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(Error::Command {
                command: what,
                output: format!("{stdout} {}", String::from_utf8_lossy(&out.stderr)),
            });
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout).map_err(|e| Error::Command {
            command: what,
            output: format!("result is not JSON ({e}): {stdout}"),
        })
    }
}
