//! What a node's CNI plugins see of the filesystem, made once per host.
//!
//! The local cluster's hosts share one filesystem and keep each daemon's
//! socket in `/run/railyard/<host>/`, but the NADs name railyard-ipam's
//! default socket, `/run/railyard/ipam.sock`, as on a real node, and
//! railyard-cni's default state dir `/var/lib/cni/railyard`. So each host gets
//! a private mount namespace, made once, with that host's socket directory
//! bound over `/run/railyard` and the cluster's CNI state dir over
//! `/var/lib/cni/railyard`, and every Multus call enters it (and the host's
//! network namespace) with one `nsenter`.
//!
//! Making the namespace per call instead (`ip netns exec`, `unshare`, `sh`,
//! `mkdir` and two `mount`s) cost six processes per pod, a visible share of the
//! pods-per-second figure on two cores.
//!
//! Its mounts are slaves of the root namespace's: the pods' network
//! namespaces (`ip netns add` bind-mounts each under `/run/netns`) appear in
//! it as they are made, while its own binds stay its own.
//!
//! The namespace lives as long as a holder process: `sh` making the binds,
//! then `cat` reading a pipe whose other end only this process holds. When
//! the [`NodeView`] is dropped, or this process dies however it dies, the
//! pipe closes, `cat` exits and the kernel frees the namespace and its binds.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result};

/// One host's mount namespace, held open by a child process.
#[derive(Debug)]
pub struct NodeView {
    holder: Child,
}

impl NodeView {
    /// A mount namespace inside network namespace `netns` with `sockets`
    /// bound over `/run/railyard` and `cni_state` over `/var/lib/cni/railyard`.
    pub fn new(netns: &str, sockets: &Path, cni_state: &Path) -> Result<NodeView> {
        let script = r#"mkdir -p /run/railyard /var/lib/cni/railyard "$1" &&
            mount --bind "$0" /run/railyard &&
            mount --bind "$1" /var/lib/cni/railyard && echo ready && exec cat"#;
        let what = format!("the node view of {netns}");
        let mut holder = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(["unshare", "--mount", "--propagation", "slave", "sh", "-c"])
            .arg(script)
            .arg(sockets)
            .arg(cni_state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::io("start the node view's holder", Path::new("ip"), e))?;
        let mut line = String::new();
        if let Some(out) = holder.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| Error::io("read the node view's holder", Path::new("ip"), e))?;
        }
        if line.trim() != "ready" {
            let _ = holder.kill();
            let status = holder.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(Error::Command {
                command: what,
                output: format!("the holder exited ({status}) before its binds were made"),
            });
        }
        Ok(NodeView { holder })
    }

    /// `program` to run inside this view: mount and network namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.holder.id()))
            .args(["--mount", "--net", "--"])
            .arg(program);
        cmd
    }
}

impl Drop for NodeView {
    fn drop(&mut self) {
        // Closing stdin ends `cat`; kill as well in case it is stuck.
        drop(self.holder.stdin.take());
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
