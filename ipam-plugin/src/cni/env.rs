//! The `CNI_*` environment: which command, for which attachment.
//!
//! Parsed from an injected map instead of the process environment so tests
//! (and the proptest over `run`) can exercise every combination without
//! touching global state. Which variables are required follows the spec's
//! per-command lists, not the Go skel's stricter ones (which also demand
//! `CNI_PATH` for ADD/DEL/CHECK): a plugin that needs no delegate should not
//! fail on a runtime that omits it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use crate::cni::CniVersion;
use crate::Error;

pub const CNI_COMMAND: &str = "CNI_COMMAND";
pub const CNI_CONTAINERID: &str = "CNI_CONTAINERID";
pub const CNI_NETNS: &str = "CNI_NETNS";
pub const CNI_IFNAME: &str = "CNI_IFNAME";
pub const CNI_ARGS: &str = "CNI_ARGS";
pub const CNI_PATH: &str = "CNI_PATH";

/// The CNI operation requested by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Gc,
        Command::Status,
        Command::Version,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    pub fn parse(s: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The first spec version that has this command. A config of an older
    /// version asking for it is answered with code 1, as libcni's skel does.
    pub fn since(self) -> Option<CniVersion> {
        match self {
            Command::Check => Some(CniVersion::V0_4_0),
            Command::Gc | Command::Status => Some(CniVersion::V1_1_0),
            Command::Add | Command::Del | Command::Version => None,
        }
    }

    /// Whether the command concerns one container attachment (and so needs
    /// `CNI_CONTAINERID` and `CNI_IFNAME`).
    pub fn is_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &[CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME],
            Command::Del => &[CNI_CONTAINERID, CNI_IFNAME],
            Command::Gc => &[CNI_PATH],
            Command::Status | Command::Version => &[],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which container interface an ADD/DEL/CHECK is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    /// Always present for ADD and CHECK; DEL may omit it (the netns can
    /// already be gone when the runtime cleans up).
    pub netns: Option<PathBuf>,
}

/// The pod a Kubernetes runtime says it is attaching (from `CNI_ARGS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
    pub infra_container_id: Option<&'a str>,
}

/// `CNI_ARGS`, kept in order so it round-trips to delegates unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(Vec<(String, String)>);

impl CniArgs {
    pub const K8S_POD_NAMESPACE: &'static str = "K8S_POD_NAMESPACE";
    pub const K8S_POD_NAME: &'static str = "K8S_POD_NAME";
    pub const K8S_POD_UID: &'static str = "K8S_POD_UID";
    pub const K8S_POD_INFRA_CONTAINER_ID: &'static str = "K8S_POD_INFRA_CONTAINER_ID";

    /// `K=V;K=V`. Empty segments (a trailing `;`) are tolerated because
    /// runtimes produce them; a segment without `=` or with an empty key is
    /// rejected since it cannot mean anything.
    pub fn parse(raw: &str) -> Result<CniArgs, Error> {
        let mut pairs = Vec::new();
        for segment in raw.split(';').filter(|s| !s.is_empty()) {
            let Some((key, value)) = segment.split_once('=') else {
                return Err(invalid_args(raw, format!("segment {segment:?} has no '='")));
            };
            if key.is_empty() {
                return Err(invalid_args(
                    raw,
                    format!("segment {segment:?} has an empty key"),
                ));
            }
            pairs.push((key.to_owned(), value.to_owned()));
        }
        Ok(CniArgs(pairs))
    }

    /// The last value wins, matching how Go's `types.LoadArgs` assigns.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These args without `keys` (every occurrence).
    pub fn without(&self, keys: &[&str]) -> CniArgs {
        CniArgs(
            self.0
                .iter()
                .filter(|(k, _)| !keys.contains(&k.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// The pod as the daemon's protocol names it (empty outside Kubernetes).
    pub fn pod_ref(&self) -> railyard_core::ipam::PodRef {
        self.pod()
            .map(|p| railyard_core::ipam::PodRef {
                namespace: p.namespace.to_owned(),
                name: p.name.to_owned(),
                uid: p.uid.unwrap_or_default().to_owned(),
                ..Default::default()
            })
            .unwrap_or_default()
    }

    /// The pod identity, when the runtime is Kubernetes (namespace and name
    /// both set and non-empty).
    pub fn pod(&self) -> Option<PodRef<'_>> {
        let non_empty = |k| self.get(k).filter(|v| !v.is_empty());
        Some(PodRef {
            namespace: non_empty(Self::K8S_POD_NAMESPACE)?,
            name: non_empty(Self::K8S_POD_NAME)?,
            uid: non_empty(Self::K8S_POD_UID),
            infra_container_id: non_empty(Self::K8S_POD_INFRA_CONTAINER_ID),
        })
    }
}

impl fmt::Display for CniArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

fn invalid_args(raw: &str, reason: String) -> Error {
    Error::InvalidEnv {
        name: CNI_ARGS,
        value: raw.to_owned(),
        reason,
    }
}

/// The parsed and validated `CNI_*` variables of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    /// `Some` exactly for ADD, DEL and CHECK.
    pub attachment: Option<Attachment>,
    pub args: CniArgs,
    /// `CNI_PATH` split on ':'; empty entries dropped.
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Parses and validates; an empty variable counts as missing, as in the
    /// Go skel, because runtimes set unused ones to "".
    pub fn from_map(vars: &HashMap<String, String>) -> Result<CniEnv, Error> {
        let get = |name: &str| vars.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let command = match get(CNI_COMMAND) {
            None => {
                return Err(Error::InvalidEnv {
                    name: CNI_COMMAND,
                    value: String::new(),
                    reason: format!("is not set; expected one of {}", command_list()),
                })
            }
            Some(raw) => Command::parse(raw).ok_or_else(|| Error::InvalidEnv {
                name: CNI_COMMAND,
                value: raw.to_owned(),
                reason: format!("expected one of {}", command_list()),
            })?,
        };
        let path: Vec<PathBuf> = get(CNI_PATH)
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        // A CNI_PATH of separators only (":") names no directory: missing,
        // as an empty one is (found by the cni_invocation fuzz target: such
        // a GC was accepted, but the environment handed to a delegate then
        // had no CNI_PATH and was refused).
        let missing: Vec<&'static str> = command
            .required()
            .iter()
            .copied()
            .filter(|name| get(name).is_none() || (*name == CNI_PATH && path.is_empty()))
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingEnv {
                command,
                names: missing,
            });
        }
        if !command.is_attachment() {
            // GC, STATUS and VERSION concern no attachment; whatever else the
            // runtime left in the environment is not ours to judge.
            return Ok(CniEnv {
                command,
                attachment: None,
                args: CniArgs::default(),
                path,
            });
        }
        let container_id = get(CNI_CONTAINERID).unwrap_or_default();
        validate_container_id(container_id)?;
        let ifname = get(CNI_IFNAME).unwrap_or_default();
        validate_ifname(ifname)?;
        Ok(CniEnv {
            command,
            attachment: Some(Attachment {
                container_id: container_id.to_owned(),
                ifname: ifname.to_owned(),
                netns: get(CNI_NETNS).map(PathBuf::from),
            }),
            args: get(CNI_ARGS)
                .map(CniArgs::parse)
                .transpose()?
                .unwrap_or_default(),
            path,
        })
    }

    /// The same invocation with another command, for delegating.
    pub fn with_command(&self, command: Command) -> CniEnv {
        CniEnv {
            command,
            ..self.clone()
        }
    }

    /// The variables to hand to a delegate, exactly as a runtime would set
    /// them (unset ones omitted rather than empty).
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![(CNI_COMMAND, self.command.as_str().to_owned())];
        if let Some(a) = &self.attachment {
            vars.push((CNI_CONTAINERID, a.container_id.clone()));
            vars.push((CNI_IFNAME, a.ifname.clone()));
            if let Some(netns) = &a.netns {
                vars.push((CNI_NETNS, netns.to_string_lossy().into_owned()));
            }
        }
        if !self.args.is_empty() {
            vars.push((CNI_ARGS, self.args.to_string()));
        }
        if !self.path.is_empty() {
            let joined: Vec<_> = self.path.iter().map(|p| p.to_string_lossy()).collect();
            vars.push((CNI_PATH, joined.join(":")));
        }
        vars
    }
}

fn command_list() -> String {
    Command::ALL.map(Command::as_str).join(", ")
}

/// The spec: "Must start with an alphanumeric character, optionally followed
/// by any combination of one or more alphanumeric characters, underscore,
/// dot or hyphen." Checked here because the ID becomes part of keys and file
/// names downstream.
fn validate_container_id(id: &str) -> Result<(), Error> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        return Ok(());
    }
    Err(Error::InvalidEnv {
        name: CNI_CONTAINERID,
        value: id.to_owned(),
        reason:
            "must start with an alphanumeric character followed by alphanumerics, '_', '.' or '-'"
                .into(),
    })
}

/// Linux interface name rules (as libcni's `ValidateInterfaceName`): an
/// invalid name would only fail later, deep inside netlink, with a worse message.
fn validate_ifname(name: &str) -> Result<(), Error> {
    let reason = if name.len() > 15 {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "must not be '.' or '..'"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "must not contain '/', ':' or whitespace"
    } else {
        return Ok(());
    };
    Err(Error::InvalidEnv {
        name: CNI_IFNAME,
        value: name.to_owned(),
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const FULL: &[(&str, &str)] = &[
        (CNI_CONTAINERID, "abc123"),
        (CNI_NETNS, "/var/run/netns/x"),
        (CNI_IFNAME, "eth0"),
        (CNI_PATH, "/opt/cni/bin::/usr/lib/cni"),
        (
            CNI_ARGS,
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_UID=u-1;K8S_POD_INFRA_CONTAINER_ID=abc123;",
        ),
    ];

    fn with_command(cmd: &str, base: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m = env(base);
        m.insert(CNI_COMMAND.into(), cmd.into());
        m
    }

    #[test]
    fn add_parses_everything() {
        let parsed = CniEnv::from_map(&with_command("ADD", FULL)).unwrap();
        assert_eq!(parsed.command, Command::Add);
        let a = parsed.attachment.as_ref().unwrap();
        assert_eq!(a.container_id, "abc123");
        assert_eq!(a.ifname, "eth0");
        assert_eq!(a.netns, Some(PathBuf::from("/var/run/netns/x")));
        assert_eq!(
            parsed.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        let pod = parsed.args.pod().unwrap();
        assert_eq!(
            pod,
            PodRef {
                namespace: "ns",
                name: "web-0",
                uid: Some("u-1"),
                infra_container_id: Some("abc123")
            }
        );
        assert_eq!(parsed.args.get("IgnoreUnknown"), Some("1"));
    }

    #[test]
    fn required_variables_per_command() {
        let cases: &[(&str, &[&str])] = &[
            ("ADD", &[CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME]),
            ("CHECK", &[CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME]),
            ("DEL", &[CNI_CONTAINERID, CNI_IFNAME]),
            ("GC", &[CNI_PATH]),
            ("STATUS", &[]),
            ("VERSION", &[]),
        ];
        for (cmd, required) in cases {
            match CniEnv::from_map(&with_command(cmd, &[])) {
                Ok(_) => assert!(required.is_empty(), "{cmd} accepted an empty env"),
                Err(Error::MissingEnv { names, .. }) => assert_eq!(&names, required, "{cmd}"),
                Err(other) => panic!("{cmd}: unexpected {other}"),
            }
            // And the full set is always enough.
            assert!(CniEnv::from_map(&with_command(cmd, FULL)).is_ok(), "{cmd}");
        }
    }

    #[test]
    fn del_tolerates_missing_netns() {
        let mut m = with_command("DEL", FULL);
        m.remove(CNI_NETNS);
        let parsed = CniEnv::from_map(&m).unwrap();
        assert_eq!(parsed.attachment.unwrap().netns, None);
    }

    #[test]
    fn empty_counts_as_missing_and_message_names_variables() {
        let mut m = with_command("ADD", FULL);
        m.insert(CNI_NETNS.into(), String::new());
        m.remove(CNI_IFNAME);
        let err = CniEnv::from_map(&m).unwrap_err();
        assert_eq!(err.code(), codes::INVALID_ENVIRONMENT);
        assert_eq!(
            err.to_string(),
            "missing required environment variables for ADD: CNI_NETNS, CNI_IFNAME"
        );
    }

    #[test]
    fn bad_command_is_code_4_with_value() {
        for (value, needle) in [("add", "CNI_COMMAND=\"add\""), ("", "is not set")] {
            let err = CniEnv::from_map(&with_command(value, FULL)).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_ENVIRONMENT);
            assert!(err.to_string().contains(needle), "{err}");
        }
        let err = CniEnv::from_map(&env(FULL)).unwrap_err();
        assert!(err.to_string().contains("CNI_COMMAND"), "{err}");
    }

    #[test]
    fn invalid_container_id_ifname_and_args_are_code_4() {
        let cases = [
            (CNI_CONTAINERID, "-leading-dash"),
            (CNI_CONTAINERID, "has space"),
            (CNI_IFNAME, "a-very-long-ifname0"),
            (CNI_IFNAME, "eth/0"),
            (CNI_IFNAME, ".."),
            (CNI_ARGS, "K8S_POD_NAME"),
            (CNI_ARGS, "=v"),
        ];
        for (name, value) in cases {
            let mut m = with_command("ADD", FULL);
            m.insert(name.into(), value.into());
            let err = CniEnv::from_map(&m).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_ENVIRONMENT, "{name}={value}");
            assert!(
                err.to_string().contains(&format!("{name}={value:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn gc_and_status_ignore_attachment_variables() {
        let mut m = with_command("GC", FULL);
        m.insert(CNI_IFNAME.into(), "not/valid".into());
        let parsed = CniEnv::from_map(&m).unwrap();
        assert_eq!(parsed.attachment, None);
        assert_eq!(parsed.path.len(), 2);
        // A CNI_PATH naming no directory is missing, as an empty one is.
        m.insert(CNI_PATH.into(), ":".into());
        assert!(matches!(
            CniEnv::from_map(&m),
            Err(Error::MissingEnv { names, .. }) if names == [CNI_PATH]
        ));
    }

    #[test]
    fn pod_needs_namespace_and_name() {
        assert!(CniArgs::parse("K8S_POD_NAME=a").unwrap().pod().is_none());
        assert!(CniArgs::parse("K8S_POD_NAMESPACE=;K8S_POD_NAME=a")
            .unwrap()
            .pod()
            .is_none());
        let args = CniArgs::parse("K8S_POD_NAMESPACE=n;K8S_POD_NAME=a;K8S_POD_NAME=b").unwrap();
        assert_eq!(args.pod().unwrap().name, "b");
        assert_eq!(
            args.to_string(),
            "K8S_POD_NAMESPACE=n;K8S_POD_NAME=a;K8S_POD_NAME=b"
        );
    }

    #[test]
    fn to_vars_round_trips() {
        let parsed = CniEnv::from_map(&with_command("ADD", FULL)).unwrap();
        let vars: HashMap<String, String> = parsed
            .with_command(Command::Del)
            .to_vars()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(vars[CNI_COMMAND], "DEL");
        let again = CniEnv::from_map(&vars).unwrap();
        assert_eq!(again.with_command(Command::Add), parsed);
    }
}
