//! Kubeconfig files: the admin's and kube-controller-manager's (client
//! certificates) and the controller's (a service-account token). Written by hand
//! rather than with `kubectl config`, which would take four runs per file. JSON
//! is YAML, so serde_json writes them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};

/// How a kubeconfig's user proves who it is.
pub enum Credentials<'a> {
    Certificate { cert: &'a Path, key: &'a Path },
    Token(&'a str),
}

/// Writes a kubeconfig for `server` (trusting `ca`) as `user`, mode 0600 (it
/// holds a key path or a bearer token).
pub fn write(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    creds: Credentials<'_>,
) -> Result<()> {
    let user_entry = match creds {
        Credentials::Certificate { cert, key } => json!({
            "client-certificate": cert, "client-key": key,
        }),
        Credentials::Token(token) => json!({ "token": token }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "railyard-local", "cluster": {
            "server": server, "certificate-authority": ca,
        }}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": "railyard-local", "context": {
            "cluster": "railyard-local", "user": user,
        }}],
        "current-context": "railyard-local",
    });
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Refused(format!("kubeconfig {}: {e}", path.display())))?;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::File::options()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("write kubeconfig", path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io("write kubeconfig", path, e))
}
