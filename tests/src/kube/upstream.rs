//! Where the upstream binaries live: `make deps` builds etcd, kube-apiserver,
//! kube-controller-manager, kubectl, Multus, the CNI plugins and cnitool from the
//! Go module proxy at the pins of `deploy/deps/upstream.list` and links them into
//! one directory. Nothing else is looked up (no `$PATH`): a test must run the
//! pinned version, never whatever happens to be installed.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The directory `deploy/deps/upstream.sh` links the binaries into.
pub const DEFAULT_DIR: &str = "/opt/railyard-upstream/bin";

/// `$RAILYARD_UPSTREAM_BIN`, else [`DEFAULT_DIR`].
pub fn dir() -> PathBuf {
    std::env::var_os("RAILYARD_UPSTREAM_BIN")
        .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// The path of each of `names` in [`dir`], or `Error::Missing` naming every
/// missing one and saying how to get them.
pub fn require<const N: usize>(names: [&str; N]) -> Result<[PathBuf; N]> {
    let dir = dir();
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !dir.join(n).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Missing(format!(
            "{} not found in {}: run `make deps` (deploy/deps/upstream.sh builds the pinned \
             upstream components), or set RAILYARD_UPSTREAM_BIN",
            missing.join(", "),
            dir.display()
        )));
    }
    Ok(names.map(|n| dir.join(n)))
}

/// The etcd the control plane stores its objects in: the one the store's tests
/// and the local cluster run (`$RAILYARD_ETCD_BIN` overrides it there too).
pub fn etcd() -> Result<PathBuf> {
    let bin = PathBuf::from(crate::cluster::etcd::bin());
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(Error::Missing(format!(
            "{} not found: {}",
            bin.display(),
            crate::cluster::etcd::MISSING_HINT
        )))
    }
}
