//! Whether `CNI_NETNS` names a network namespace, checked before ADD and
//! CHECK do anything.
//!
//! Why here and not left to the delegates: the meta plugin allocates
//! before any interface plugin looks at the netns, so a runtime that
//! passes a stale path (the sandbox is already gone) would get addresses
//! reserved for a pod that cannot exist, and the error would come from
//! deep inside a delegate. A netns path is a bind mount of the namespace
//! file (nsfs) or a `/proc/<pid>/ns/net` link to one, so a missing path,
//! or a plain file left behind by a lost mount, is refused with code 4.
//! DEL is not checked: it must release the allocation even when the netns
//! is gone (the spec says so).

use std::io::ErrorKind;
use std::path::Path;

use nix::sys::statfs::{statfs, NSFS_MAGIC};

use crate::cni::env::CNI_NETNS;
use crate::cni::Attachment;
use crate::Error;

/// Refuses an attachment whose `CNI_NETNS` is not a namespace file.
pub fn require(attachment: &Attachment) -> Result<(), Error> {
    let Some(path) = &attachment.netns else {
        // The environment check makes it required for ADD and CHECK.
        return Ok(());
    };
    let refuse = |reason: String| Error::InvalidEnv {
        name: CNI_NETNS,
        value: path.display().to_string(),
        reason,
    };
    match statfs(Path::new(path)) {
        Ok(fs) if fs.filesystem_type() == NSFS_MAGIC => Ok(()),
        Ok(_) => Err(refuse(
            "is not a network namespace (not an nsfs mount); was the sandbox removed?".into(),
        )),
        Err(errno) => {
            let e = std::io::Error::from(errno);
            Err(refuse(match e.kind() {
                ErrorKind::NotFound => "does not exist; was the sandbox removed?".into(),
                _ => format!("cannot be inspected: {e}"),
            }))
        }
    }
}

/// Whether `path` is a network namespace file now (DEL's cleanup inside
/// the pod skips a netns that is already gone).
pub fn is_netns(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;

    fn at(path: &str) -> Attachment {
        Attachment {
            container_id: "c1".into(),
            ifname: "net1".into(),
            netns: Some(path.into()),
        }
    }

    #[test]
    fn a_namespace_file_passes() {
        // This process's own network namespace: always there, no root needed.
        require(&at("/proc/self/ns/net")).unwrap();
    }

    #[test]
    fn missing_paths_and_plain_files_are_code_4_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("netns-file");
        std::fs::write(&plain, b"").unwrap();
        let missing = dir.path().join("gone");
        for (path, says) in [
            (missing.to_str().unwrap(), "does not exist"),
            (plain.to_str().unwrap(), "not a network namespace"),
        ] {
            let err = require(&at(path)).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_ENVIRONMENT, "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("CNI_NETNS={path:?}")), "{msg}");
            assert!(msg.contains(says), "{msg}");
        }
    }
}
