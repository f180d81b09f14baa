//! Whereabouts' side: the local control plane (`railyard-kube up`, a real
//! etcd and kube-apiserver on the loopback), Whereabouts' CRDs applied to it
//! (copied from whereabouts v0.9.2's doc/crds into benches/peers/whereabouts),
//! and its CNI binary with an admin kubeconfig. Its store is its IPPool CRs:
//! after every DEL, no pool may hold an allocation.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{rail_subnet, Ipam};

/// The control plane `railyard-kube up --state DIR` started; `down` on drop.
#[derive(Debug)]
pub struct Plane {
    kube_bin: PathBuf,
    kubectl: PathBuf,
    state: PathBuf,
}

impl Plane {
    pub fn up(kube_bin: PathBuf, kubectl: PathBuf, state: &Path) -> Result<Plane, String> {
        let plane = Plane {
            kube_bin,
            kubectl,
            state: state.to_path_buf(),
        };
        // Bounded by railyard-kube's own start timeouts.
        run(Command::new(&plane.kube_bin)
            .args(["up", "--state"])
            .arg(state))?;
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/whereabouts");
        plane.kubectl(&["apply", "--server-side", "-f", &crds.display().to_string()])?;
        for crd in [
            "ippools.whereabouts.cni.cncf.io",
            "overlappingrangeipreservations.whereabouts.cni.cncf.io",
        ] {
            plane.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                &format!("crd/{crd}"),
            ])?;
        }
        Ok(plane)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.state.join("admin.kubeconfig")
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args))
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = Command::new(&self.kube_bin)
            .args(["down", "--state"])
            .arg(&self.state)
            .output();
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Whereabouts against the plane: one network (and IPPool) per rail.
#[derive(Debug)]
pub struct Whereabouts<'a> {
    pub bin: PathBuf,
    pub plane: &'a Plane,
    /// Its flat file (`configuration_path`): Whereabouts refuses to run
    /// without one ("config file not found") even when the network config
    /// holds everything; its DaemonSet writes it on every node.
    pub flat_file: PathBuf,
}

impl<'a> Whereabouts<'a> {
    pub fn new(bin: PathBuf, plane: &'a Plane, work: &Path) -> Result<Self, String> {
        let flat_file = work.join("whereabouts.conf");
        let text = format!(
            r#"{{"datastore":"kubernetes","kubernetes":{{"kubeconfig":"{}"}},"log_file":"{}","log_level":"error"}}"#,
            plane.kubeconfig().display(),
            work.join("whereabouts.log").display()
        );
        std::fs::write(&flat_file, text).map_err(|e| format!("{}: {e}", flat_file.display()))?;
        Ok(Whereabouts {
            bin,
            plane,
            flat_file,
        })
    }
}

impl Ipam for Whereabouts<'_> {
    fn name(&self) -> &str {
        "whereabouts"
    }
    fn binary(&self) -> &Path {
        &self.bin
    }
    fn calls_per_pod(&self, rails: usize) -> usize {
        rails
    }
    fn config(&self, _rails: usize, call: usize) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"rail{call}","type":"macvlan","master":"eth{call}","ipam":{{"type":"whereabouts","range":"{}","configuration_path":"{}","kubernetes":{{"kubeconfig":"{}"}}}}}}"#,
            rail_subnet(call),
            self.flat_file.display(),
            self.plane.kubeconfig().display()
        )
    }
    fn leftovers(&self, _rails: usize) -> Result<Vec<String>, String> {
        let mut left = vec![];
        for kind in [
            "ippools.whereabouts.cni.cncf.io",
            "overlappingrangeipreservations.whereabouts.cni.cncf.io",
        ] {
            let json = self.plane.kubectl(&["get", kind, "-A", "-o", "json"])?;
            let v: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| format!("{kind}: {e}"))?;
            for item in v["items"].as_array().into_iter().flatten() {
                let name = item["metadata"]["name"].as_str().unwrap_or("?");
                if kind.starts_with("ippools") {
                    let allocs = item["spec"]["allocations"].as_object();
                    for (offset, a) in allocs.into_iter().flatten() {
                        left.push(format!("IPPool {name} offset {offset}: {a}"));
                    }
                } else {
                    left.push(format!("OverlappingRangeIPReservation {name}"));
                }
            }
        }
        Ok(left)
    }
}
