//! Calling another CNI plugin the way a runtime does.
//!
//! The meta plugin runs a real interface plugin once per NIC, and a chained
//! setup may run an IPAM plugin; both need the runtime's half of the
//! protocol: find the binary in `CNI_PATH`, agree on a version, pass the
//! environment and config, and read a result or an error back.
//!
//! Version agreement is per delegate, from its own `VERSION` answer: we may be
//! called with 1.1.0 while the installed reference plugins stop at 1.0.0, so
//! the config (and its prevResult) is rewritten to the highest version both
//! speak, and the delegate's result is read back into the canonical form for
//! the caller to answer in its own version.
//!
//! A delegate is usually a binary, but one this crate implements itself
//! (`railyard-ipam`) can run in-process: the same driver, the same bytes in
//! and out, without a fork, an exec and a VERSION exchange on every call.

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::cni::{decode, driver, CniEnv, CniResult, CniVersion, Command, Handler, VersionInfo};
use crate::error::ErrorReply;
use crate::Error;

pub mod builtin;
mod versions;

pub use versions::VersionCache;

/// How much of a crashed delegate's stderr goes into our error details.
const STDERR_TAIL: usize = 2048;

/// A plugin binary located in `CNI_PATH`, or one of ours run in-process.
#[derive(Debug)]
pub struct Delegate {
    plugin: String,
    binary: PathBuf,
    /// Set for a plugin of this crate: its handler, run by the same driver
    /// its binary's `main` runs, so the bytes exchanged are identical.
    in_process: Option<fn() -> Box<dyn Handler>>,
    /// Where `VERSION` answers outlive this process, when the caller keeps
    /// state (see [`VersionCache`]).
    remembered: Option<VersionCache>,
    /// Asked once: the meta plugin calls the same delegate once per NIC
    /// (from one thread per NIC, hence a lock).
    supported: OnceLock<Vec<String>>,
}

impl Delegate {
    /// Looks `plugin` up in `cni_path`, first match wins (as in libcni).
    pub fn find(plugin: &str, cni_path: &[PathBuf]) -> Result<Delegate, Error> {
        if plugin.is_empty() || plugin == "." || plugin == ".." || plugin.contains('/') {
            return Err(Error::invalid_config(
                "type",
                format!("= {plugin:?}: must be a plain file name"),
            ));
        }
        let binary = cni_path
            .iter()
            .map(|dir| dir.join(plugin))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| Error::PluginNotFound {
                plugin: plugin.to_owned(),
                cni_path: join_path(cni_path),
            })?;
        Ok(Delegate::at(plugin, binary))
    }

    /// A delegate at a known path (tests, or a caller with its own lookup).
    pub fn at(plugin: &str, binary: PathBuf) -> Delegate {
        Delegate {
            plugin: plugin.to_owned(),
            binary,
            in_process: None,
            remembered: None,
            supported: OnceLock::new(),
        }
    }

    /// Plugin `plugin`, served by `handler` in this process through the CNI
    /// driver (environment and stdin in, stdout and exit code out): what a
    /// caller sees is what the binary would have printed, errors included.
    pub fn in_process(plugin: &str, handler: fn() -> Box<dyn Handler>) -> Delegate {
        Delegate {
            plugin: plugin.to_owned(),
            binary: PathBuf::from(format!("(in-process) {plugin}")),
            in_process: Some(handler),
            remembered: None,
            supported: OnceLock::new(),
        }
    }

    /// Keeps this binary's `VERSION` answer in `cache` between invocations.
    pub fn remembering(mut self, cache: VersionCache) -> Delegate {
        self.remembered = Some(cache);
        self
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The delegate's `supportedVersions`, verbatim (it may list versions we
    /// don't know).
    pub fn supported_versions(&self, env: &CniEnv) -> Result<&[String], Error> {
        if let Some(cached) = self.supported.get() {
            return Ok(cached);
        }
        let remembered = self.remembered.as_ref();
        if let Some(known) = remembered.and_then(|c| c.load(&self.binary)) {
            return Ok(self.supported.get_or_init(|| known));
        }
        let stdin = json!({ "cniVersion": CniVersion::LATEST.as_str() }).to_string();
        // Like libcni: VERSION concerns the binary, not an attachment.
        let version_env = CniEnv {
            command: Command::Version,
            attachment: None,
            args: Default::default(),
            path: env.path.clone(),
        };
        let stdout = self.exec(&version_env, stdin.as_bytes())?;
        let what = format!("VERSION output of plugin {:?}", self.plugin);
        let value: Value = serde_json::from_slice(&stdout).map_err(|e| Error::decode(&what, e))?;
        let info: VersionInfo = decode::typed(&what, "", &value)?;
        if let Some(cache) = remembered {
            cache.store(&self.binary, &info.supported_versions);
        }
        Ok(self.supported.get_or_init(|| info.supported_versions))
    }

    /// The version to talk to this delegate in, given the caller's.
    pub fn negotiate(&self, env: &CniEnv, wanted: CniVersion) -> Result<CniVersion, Error> {
        let offered = self.supported_versions(env)?;
        CniVersion::negotiate(wanted, offered).ok_or_else(|| Error::NoCommonVersion {
            plugin: self.plugin.clone(),
            wanted,
            offered: offered.to_vec(),
        })
    }

    /// ADD; `config` is the delegate's config in the caller's version.
    pub fn add(&self, env: &CniEnv, config: &Map<String, Value>) -> Result<CniResult, Error> {
        let Some((version, stdout)) = self.invoke(env, Command::Add, config)? else {
            return Err(Error::Internal {
                reason: "ADD exists in every version".into(),
            });
        };
        let what = format!("result of plugin {:?}", self.plugin);
        CniResult::from_slice(&stdout, &what, version).map(|(_, result)| result)
    }

    pub fn del(&self, env: &CniEnv, config: &Map<String, Value>) -> Result<(), Error> {
        self.invoke(env, Command::Del, config).map(drop)
    }

    /// Skipped (Ok) when the delegate predates CHECK (< 0.4.0): nothing
    /// can be checked, and failing would make every CHECK of ours fail.
    pub fn check(&self, env: &CniEnv, config: &Map<String, Value>) -> Result<(), Error> {
        self.invoke(env, Command::Check, config).map(drop)
    }

    /// Skipped (Ok) when the delegate predates 1.1.0, as libcni skips it:
    /// such a plugin was cleaned up by the DELs the runtime already sent.
    pub fn gc(&self, env: &CniEnv, config: &Map<String, Value>) -> Result<(), Error> {
        self.invoke(env, Command::Gc, config).map(drop)
    }

    /// Skipped (Ok) when the delegate predates 1.1.0, as libcni does.
    pub fn status(&self, env: &CniEnv, config: &Map<String, Value>) -> Result<(), Error> {
        self.invoke(env, Command::Status, config).map(drop)
    }

    /// Negotiates, rewrites the config for the agreed version and runs the
    /// command. `None` when the agreed version has no such command.
    fn invoke(
        &self,
        env: &CniEnv,
        command: Command,
        config: &Map<String, Value>,
    ) -> Result<Option<(CniVersion, Vec<u8>)>, Error> {
        let wanted = config_version(config)?;
        let version = self.negotiate(env, wanted)?;
        if command.since().is_some_and(|since| version < since) {
            return Ok(None);
        }
        let mut conf = config.clone();
        conf.insert("cniVersion".into(), version.as_str().into());
        if let Some(prev) = config.get("prevResult").filter(|v| !v.is_null()) {
            let (_, result) = CniResult::from_value(prev, "prevResult", wanted)?;
            conf.insert("prevResult".into(), result.to_value(version));
        }
        let stdin = serde_json::to_vec(&conf).map_err(|e| Error::Internal {
            reason: format!("serializing config for {:?}: {e}", self.plugin),
        })?;
        let stdout = self.exec(&env.with_command(command), &stdin)?;
        Ok(Some((version, stdout)))
    }

    /// Runs the binary with exactly our `CNI_*` variables (inherited ones are
    /// removed so a stale `CNI_NETNS` of our own caller cannot leak through)
    /// and returns stdout on success, the delegate's error otherwise.
    fn exec(&self, env: &CniEnv, stdin: &[u8]) -> Result<Vec<u8>, Error> {
        if let Some(handler) = self.in_process {
            let vars: HashMap<String, String> = env
                .to_vars()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let output = driver::run(&vars, stdin, handler().as_mut());
            if output.exit_code == 0 {
                return Ok(output.stdout);
            }
            return Err(self.failed(
                &output.stdout,
                || format!("exit code {}", output.exit_code),
                &[],
            ));
        }
        let mut process = Process::new(&self.binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CNI_") {
                process.env_remove(key);
            }
        }
        process
            .envs(env.to_vars())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = process.spawn().map_err(|source| Error::Io {
            context: format!("starting plugin {}", self.binary.display()),
            source,
        })?;
        let pipe = child.stdin.take();
        // Write stdin from a second thread so a plugin that prints before it
        // has read everything cannot deadlock us on a full pipe.
        let (written, output) = std::thread::scope(|s| {
            let writer = s.spawn(move || match pipe {
                Some(mut p) => p.write_all(stdin),
                None => Ok(()),
            });
            let output = child.wait_with_output();
            (writer.join(), output)
        });
        let output = output.map_err(|source| Error::Io {
            context: format!("running plugin {}", self.binary.display()),
            source,
        })?;
        match written {
            // A plugin may legitimately exit without reading stdin (VERSION).
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == ErrorKind::BrokenPipe => {}
            Ok(Err(source)) => {
                return Err(Error::Io {
                    context: format!("writing config to plugin {:?}", self.plugin),
                    source,
                })
            }
            Err(_) => {
                return Err(Error::Internal {
                    reason: "stdin writer thread panicked".into(),
                })
            }
        }
        if !output.stderr.is_empty() {
            // The delegate's logs belong in our log stream, which the runtime keeps.
            let _ = std::io::stderr().write_all(&output.stderr);
        }
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(self.failed(&output.stdout, || output.status.to_string(), &output.stderr))
    }

    /// The error of a failed call: the plugin's error reply, or a crash when
    /// stdout is not one.
    fn failed(&self, stdout: &[u8], status: impl FnOnce() -> String, stderr: &[u8]) -> Error {
        match serde_json::from_slice::<ErrorReply>(stdout) {
            Ok(reply) => Error::Delegate {
                plugin: self.plugin.clone(),
                code: reply.code,
                msg: reply.msg,
                details: reply.details,
            },
            Err(_) => Error::DelegateCrashed {
                plugin: self.plugin.clone(),
                status: status(),
                stderr: tail(stderr),
            },
        }
    }
}

fn config_version(config: &Map<String, Value>) -> Result<CniVersion, Error> {
    match config.get("cniVersion") {
        Some(Value::String(s)) => CniVersion::parse(s).ok_or_else(|| Error::IncompatibleVersion {
            field: "cniVersion".into(),
            version: s.clone(),
        }),
        Some(other) => Err(Error::decode(
            "delegate config",
            format!("field `cniVersion`: expected a string, got {other}"),
        )),
        None => Err(Error::invalid_config("cniVersion", "is missing")),
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn join_path(cni_path: &[PathBuf]) -> String {
    let parts: Vec<_> = cni_path.iter().map(|p| p.to_string_lossy()).collect();
    parts.join(":")
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.len().saturating_sub(STDERR_TAIL);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        let long = "é".repeat(STDERR_TAIL);
        let t = tail(long.as_bytes());
        assert!(t.len() <= STDERR_TAIL && t.chars().all(|c| c == 'é'));
        assert_eq!(tail(b"  short\n"), "short");
    }

    #[test]
    fn find_rejects_paths_and_reports_missing() {
        let err = Delegate::find("../sh", &[PathBuf::from("/usr/lib/cni")]).unwrap_err();
        assert_eq!(err.code(), crate::error::codes::INVALID_NETWORK_CONFIG);
        let err = Delegate::find(
            "no-such-plugin",
            &[PathBuf::from("/a"), PathBuf::from("/b")],
        )
        .unwrap_err();
        assert_eq!(err.code(), crate::error::codes::IO_FAILURE);
        assert_eq!(
            err.to_string(),
            "plugin \"no-such-plugin\" not found in CNI_PATH \"/a:/b\""
        );
    }
}
