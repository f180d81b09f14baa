//! The controller's identity: the ServiceAccount and RBAC of
//! `deploy/kubernetes/rbac.yaml` (and the namespace they live in), applied as
//! they are, and a kubeconfig holding a token of that account. The planner run
//! with it can do exactly what a Deployment's pod could, no more.

use std::path::{Path, PathBuf};

use super::kubeconfig::{self, Credentials};
use super::plane::ControlPlane;
use crate::error::{Error, Result};

/// The manifests of this source tree (`deploy/kubernetes`).
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("kubernetes")
}

/// Where the planner's account lives (`namespace.yaml`, `rbac.yaml`).
pub const NAMESPACE: &str = "railyard-system";
pub const SERVICE_ACCOUNT: &str = "railyard-planner";

/// Applies `namespace.yaml` and `rbac_yaml` (the text of `rbac.yaml`, or a
/// changed copy of it), then writes `<dir>/<file>` with a fresh token of the
/// planner's ServiceAccount. Returns the kubeconfig's path.
pub fn install(
    plane: &ControlPlane,
    manifests: &Path,
    rbac_yaml: &str,
    file: &str,
) -> Result<PathBuf> {
    let kubectl = plane.admin()?;
    let namespace = manifests.join("namespace.yaml");
    let text = std::fs::read_to_string(&namespace)
        .map_err(|e| Error::io("read the namespace manifest", &namespace, e))?;
    kubectl.apply(&text)?;
    kubectl.apply(rbac_yaml)?;
    token_kubeconfig(plane, NAMESPACE, SERVICE_ACCOUNT, file)
}

/// [`install`] with `deploy/kubernetes/rbac.yaml` as it is.
pub fn install_as_shipped(plane: &ControlPlane, manifests: &Path) -> Result<PathBuf> {
    let rbac = manifests.join("rbac.yaml");
    let text = std::fs::read_to_string(&rbac)
        .map_err(|e| Error::io("read the RBAC manifest", &rbac, e))?;
    install(plane, manifests, &text, "controller.kubeconfig")
}

/// A kubeconfig in the plane's dir authenticating as `namespace/account` with a
/// token from the TokenRequest API (`kubectl create token`), valid one day.
pub fn token_kubeconfig(
    plane: &ControlPlane,
    namespace: &str,
    account: &str,
    file: &str,
) -> Result<PathBuf> {
    let token = plane.admin()?.run(&[
        "create",
        "token",
        account,
        "-n",
        namespace,
        "--duration=24h",
    ])?;
    let path = plane.state.dir.join(file);
    kubeconfig::write(
        &path,
        &plane.state.server(),
        &plane.state.ca(),
        &format!("system:serviceaccount:{namespace}:{account}"),
        Credentials::Token(token.trim()),
    )?;
    Ok(path)
}
