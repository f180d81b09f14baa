//! kubectl with one kubeconfig: how the tests and `railyard-kube` talk to the
//! API server. Going through the real client keeps the tests black-box (what a
//! user types is what is tested) and the harness free of a Kubernetes client.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    /// kubectl caches discovery per server under `~/.kube/cache` by default; every
    /// control plane gets fresh ports, so that would grow forever.
    pub cache_dir: PathBuf,
}

/// What a kubectl run that may fail returned.
#[derive(Debug, Clone)]
pub struct Answer {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(bin: &Path, kubeconfig: &Path, cache_dir: &Path) -> Kubectl {
        Kubectl {
            bin: bin.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            cache_dir: cache_dir.to_owned(),
        }
    }

    /// The command with this kubeconfig, for callers that stream its output.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.cache_dir.display()))
            .args(args)
            .env_remove("KUBECONFIG");
        cmd
    }

    /// Runs kubectl and returns stdout; an error carries the command and stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.checked(args, None)
    }

    /// Runs kubectl with `input` on stdin (`apply -f -`, `create -f -`).
    pub fn run_with(&self, args: &[&str], input: &str) -> Result<String> {
        self.checked(args, Some(input))
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        self.run_with(&["apply", "-f", "-"], yaml)
    }

    /// Runs kubectl and reports success or failure without turning a failure into
    /// an error: for the tests that expect the API server to refuse something.
    pub fn attempt(&self, args: &[&str], input: Option<&str>) -> Result<Answer> {
        let out = self.output(args, input)?;
        Ok(Answer {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `kubectl get ... -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let text = self.run(&all)?;
        serde_json::from_str(&text).map_err(|e| Error::Command {
            command: self.describe(&all),
            output: format!("not JSON ({e}): {text}"),
        })
    }

    fn checked(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let out = self.output(args, input)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(Error::Command {
            command: self.describe(args),
            output: if stderr.trim().is_empty() {
                String::from_utf8_lossy(&out.stdout).into_owned()
            } else {
                stderr.into_owned()
            },
        })
    }

    fn output(&self, args: &[&str], input: Option<&str>) -> Result<Output> {
        let mut cmd = self.command(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let cannot = |e: std::io::Error| Error::Command {
            command: self.describe(args),
            output: format!("cannot run it: {e}"),
        };
        let mut child = cmd.spawn().map_err(cannot)?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).map_err(cannot)?;
        }
        child.wait_with_output().map_err(cannot)
    }

    fn describe(&self, args: &[&str]) -> String {
        format!(
            "kubectl --kubeconfig={} {}",
            self.kubeconfig.display(),
            args.join(" ")
        )
    }
}
