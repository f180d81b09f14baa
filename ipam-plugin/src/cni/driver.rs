//! One CNI invocation: environment and stdin in, stdout bytes and exit code out.
//!
//! The runtime only ever sees stdout and the exit code, so [`run`] owns the
//! whole contract: validation order (environment, then config, then
//! version gates, then for ADD and CHECK that `CNI_NETNS` is a namespace),
//! the result's version, the error JSON, and the guarantee
//! that nothing — malformed input or a panicking handler — escapes as
//! anything but the spec's error object.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use serde_json::Value;

use crate::cni::config::VALID_ATTACHMENTS;
use crate::cni::{
    netns, Attachment, CniEnv, CniResult, CniVersion, Command, GcAttachment, NetConf, VersionInfo,
};
use crate::Error;

/// What a plugin implements; the driver has already validated everything the
/// spec defines, so handlers deal only with their own semantics.
pub trait Handler {
    /// Returns the result in canonical form; the driver writes it in the
    /// config's version.
    fn add(&mut self, req: &AttachRequest) -> Result<CniResult, Error>;
    /// Should succeed when the resources are already gone (the spec asks DEL
    /// to be idempotent).
    fn del(&mut self, req: &AttachRequest) -> Result<(), Error>;
    fn check(&mut self, req: &AttachRequest) -> Result<(), Error>;
    /// Release everything not in `req.valid_attachments`.
    fn gc(&mut self, req: &GcRequest) -> Result<(), Error>;
    /// Fail (codes 50/51, or 11) when an ADD could not be served now.
    fn status(&mut self, req: &StatusRequest) -> Result<(), Error>;
}

/// An ADD, DEL or CHECK.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub attachment: Attachment,
    /// The whole environment, for passing on to delegates.
    pub env: CniEnv,
    pub config: NetConf,
}

#[derive(Debug, Clone)]
pub struct GcRequest {
    pub env: CniEnv,
    pub config: NetConf,
    pub valid_attachments: Vec<GcAttachment>,
}

#[derive(Debug, Clone)]
pub struct StatusRequest {
    pub env: CniEnv,
    pub config: NetConf,
}

/// What the process should print and exit with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub exit_code: u8,
}

/// Runs one invocation. Never panics: a handler panic becomes error 999.
pub fn run<H: Handler + ?Sized>(
    vars: &HashMap<String, String>,
    stdin: &[u8],
    handler: &mut H,
) -> Output {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| dispatch(vars, stdin, handler)));
    let result = outcome.unwrap_or_else(|payload| {
        Err(Error::Internal {
            reason: format!("plugin panicked: {}", panic_message(payload.as_ref())),
        })
    });
    match result {
        Ok(None) => Output {
            stdout: Vec::new(),
            exit_code: 0,
        },
        Ok(Some(value)) => Output {
            stdout: to_line(&value),
            exit_code: 0,
        },
        Err(err) => {
            // The config's version when it is one we speak (the spec: "the same
            // value as provided by the configuration"), else our newest.
            let version = sniff_version(stdin).unwrap_or(CniVersion::LATEST);
            let reply = serde_json::to_value(err.to_reply(version)).unwrap_or(Value::Null);
            Output {
                stdout: to_line(&reply),
                exit_code: 1,
            }
        }
    }
}

/// [`run`] on the real process: environment, stdin and stdout. For `main`.
pub fn run_main<H: Handler + ?Sized>(handler: &mut H) -> ExitCode {
    // vars_os: one non-UTF-8 variable anywhere must not abort the plugin.
    let vars: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .collect();
    let mut stdin = Vec::new();
    let output = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&vars, &stdin, handler),
        Err(source) => {
            let err = Error::Io {
                context: "reading the network config from stdin".into(),
                source,
            };
            let reply = serde_json::to_value(err.to_reply(CniVersion::LATEST));
            Output {
                stdout: to_line(&reply.unwrap_or(Value::Null)),
                exit_code: 1,
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    // Nothing useful is left to do if stdout is gone; the exit code still tells.
    let _ = stdout
        .write_all(&output.stdout)
        .and_then(|()| stdout.flush());
    ExitCode::from(output.exit_code)
}

fn dispatch<H: Handler + ?Sized>(
    vars: &HashMap<String, String>,
    stdin: &[u8],
    handler: &mut H,
) -> Result<Option<Value>, Error> {
    let env = CniEnv::from_map(vars)?;
    if env.command == Command::Version {
        // VERSION must answer whatever stdin holds: it is how a runtime finds
        // out what to send, so failing it helps nobody.
        let info = VersionInfo::ours(sniff_version(stdin));
        return Ok(Some(serde_json::to_value(info).unwrap_or(Value::Null)));
    }
    let config = NetConf::parse(stdin)?;
    if let Some(since) = env.command.since() {
        if config.cni_version < since {
            return Err(Error::CommandNotInVersion {
                command: env.command,
                version: config.cni_version,
                since,
            });
        }
    }
    let version = config.cni_version;
    match env.command {
        Command::Add | Command::Del | Command::Check => {
            let req = AttachRequest {
                attachment: env.attachment.clone().ok_or_else(|| Error::Internal {
                    reason: format!("{} parsed without an attachment", env.command),
                })?,
                env,
                config,
            };
            if req.env.command != Command::Del {
                netns::require(&req.attachment)?;
            }
            match req.env.command {
                Command::Add => Ok(Some(handler.add(&req)?.to_value(version))),
                Command::Del => handler.del(&req).map(|()| None),
                _ => handler.check(&req).map(|()| None),
            }
        }
        Command::Gc => {
            // An absent list must not read as "nothing is valid": that would
            // release every address on the host.
            let valid_attachments = config
                .valid_attachments
                .clone()
                .ok_or_else(|| Error::invalid_config(VALID_ATTACHMENTS, "is missing"))?;
            let req = GcRequest {
                env,
                config,
                valid_attachments,
            };
            handler.gc(&req).map(|()| None)
        }
        Command::Status => handler
            .status(&StatusRequest { env, config })
            .map(|()| None),
        Command::Version => Ok(None),
    }
}

/// The config's `cniVersion`, if stdin is JSON and names one we speak.
fn sniff_version(stdin: &[u8]) -> Option<CniVersion> {
    let value: Value = serde_json::from_slice(stdin).ok()?;
    CniVersion::parse(value.get("cniVersion")?.as_str()?)
}

fn to_line(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    bytes.push(b'\n');
    bytes
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
