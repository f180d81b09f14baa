//! Shared by the process-level tests: the stand-in daemon, running a plugin
//! binary as a runtime does, and network namespaces.
//!
//! Each test binary uses a different subset, hence the dead_code allowance.
#![allow(dead_code)]

pub mod daemon;
pub mod netns;
pub mod world;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// A netns that exists wherever the tests run (the plugin's own), for
/// tests that never reach an interface plugin: ADD and CHECK refuse a
/// `CNI_NETNS` that is not a namespace.
pub const NETNS: &str = "/proc/self/ns/net";

pub fn ipam_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_railyard-ipam"))
}

pub fn meta_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_railyard-cni"))
}

/// A CNI_PATH with our two binaries first, then the reference plugins.
pub struct CniPath {
    dir: tempfile::TempDir,
}

impl CniPath {
    pub fn new() -> CniPath {
        let dir = tempfile::tempdir().expect("tempdir for CNI_PATH");
        for (name, target) in [("railyard-ipam", ipam_bin()), ("railyard-cni", meta_bin())] {
            std::os::unix::fs::symlink(&target, dir.path().join(name))
                .expect("symlink a plugin into CNI_PATH");
        }
        for plugin in ["macvlan", "ipvlan", "ptp", "host-device", "static"] {
            let p = Path::new(REFERENCE_DIR).join(plugin);
            assert!(
                p.exists(),
                "{} missing: install Debian's containernetworking-plugins",
                p.display()
            );
        }
        CniPath { dir }
    }

    /// Takes plugin `name` out of the directory (a node that installed
    /// railyard-cni alone).
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).expect("remove a plugin from CNI_PATH");
    }

    /// Puts an executable `name` first in the path, with `script` as its
    /// body (a wrapper around a reference plugin, say).
    pub fn add_script(&self, name: &str, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, script).expect("write a plugin script");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .expect("make the plugin script executable");
        std::fs::rename(&tmp, &path).expect("install the plugin script");
        path
    }

    /// Puts upstream's current build of each plugin first in the path
    /// (`make deps` builds them into `$RAILYARD_UPSTREAM_BIN`, default
    /// `/opt/railyard-upstream/bin`): Debian's are 1.1.1, whose tuning
    /// CHECK does not substitute `IFNAME` in sysctl keys.
    pub fn link_upstream(&self, plugins: &[&str]) {
        let dir = std::env::var_os("RAILYARD_UPSTREAM_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/railyard-upstream/bin"));
        for plugin in plugins {
            let p = dir.join(plugin);
            assert!(p.exists(), "{} missing: run `make deps`", p.display());
            std::os::unix::fs::symlink(&p, self.dir.path().join(plugin))
                .expect("symlink an upstream plugin into CNI_PATH");
        }
    }

    pub fn value(&self) -> String {
        format!("{}:{REFERENCE_DIR}", self.dir.path().display())
    }
}

/// What a runtime sees of one invocation.
#[derive(Debug)]
pub struct Outcome {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// stdout as JSON (`null` when empty, as after DEL).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// Asserts success and returns stdout as JSON.
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.exit, 0,
            "plugin failed: stdout {} stderr {}",
            self.stdout, self.stderr
        );
        self.json()
    }

    /// Asserts failure and returns the CNI error code and message.
    pub fn err(&self) -> (u64, String) {
        assert_ne!(
            self.exit, 0,
            "plugin unexpectedly succeeded: {}",
            self.stdout
        );
        let v = self.json();
        let code = v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {v}"));
        (code, v["msg"].as_str().unwrap_or_default().to_owned())
    }
}

/// Runs `binary` with exactly `env` (nothing inherited, as runtimes do)
/// and `stdin`, inside network namespace `netns` if given.
pub fn exec(binary: &Path, env: &[(&str, String)], stdin: &[u8], netns: Option<&str>) -> Outcome {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new(netns::ip_binary());
            c.args(["netns", "exec", ns]).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn plugin");
    {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin pipe");
        // A plugin may exit before reading (VERSION, bad env): ignore EPIPE.
        let _ = pipe.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait for plugin");
    Outcome {
        exit: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The usual runtime environment for an attachment command.
pub fn attach_env(
    command: &str,
    container: &str,
    ifname: &str,
    netns: &str,
    cni_path: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.into()),
        ("CNI_CONTAINERID", container.into()),
        ("CNI_NETNS", netns.into()),
        ("CNI_IFNAME", ifname.into()),
        ("CNI_PATH", cni_path.into()),
        (
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=ml;K8S_POD_NAME=pod-{container};K8S_POD_UID=uid-{container}"),
        ),
    ]
}

/// GC, STATUS and VERSION carry no attachment.
pub fn plain_env(command: &str, cni_path: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.into()),
        ("CNI_PATH", cni_path.into()),
    ]
}
