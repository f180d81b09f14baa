//! Throwaway PKI for a TLS test etcd, made with the `openssl` command so the crate
//! needs no certificate-generation dependency just for tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::harness_error;
use crate::StoreError;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// P-256 keys: quick to generate, and understood by both etcd and rustls.
const KEY_ARGS: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl TestCerts {
    pub(super) fn generate(dir: &Path) -> Result<TestCerts, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {dir:?}: {e}")))?;
        let path = |name: &str| dir.join(name);
        let certs = TestCerts {
            ca: path("ca.crt"),
            server_cert: path("server.crt"),
            server_key: path("server.key"),
            client_cert: path("client.crt"),
            client_key: path("client.key"),
        };
        let ca_key = path("ca.key");
        openssl(&[
            &["req", "-x509", "-nodes", "-days", "2"],
            KEY_ARGS,
            &[
                "-subj",
                "/CN=railyard test CA",
                "-keyout",
                s(&ca_key)?,
                "-out",
                s(&certs.ca)?,
            ],
        ])?;
        sign(
            dir,
            &certs,
            &ca_key,
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )?;
        sign(
            dir,
            &certs,
            &ca_key,
            "client",
            "extendedKeyUsage=clientAuth\n",
        )?;
        Ok(certs)
    }
}

/// Makes `<name>.key` and `<name>.crt` signed by the CA, with `extensions`.
fn sign(
    dir: &Path,
    certs: &TestCerts,
    ca_key: &Path,
    name: &str,
    extensions: &str,
) -> Result<(), StoreError> {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let crt = dir.join(format!("{name}.crt"));
    let ext = dir.join(format!("{name}.ext"));
    let extensions = format!("basicConstraints=CA:FALSE\n{extensions}");
    std::fs::write(&ext, extensions).map_err(|e| fail(format!("cannot write {ext:?}: {e}")))?;
    openssl(&[
        &["req", "-nodes"],
        KEY_ARGS,
        &[
            "-subj",
            &format!("/CN=railyard-{name}"),
            "-keyout",
            s(&key)?,
            "-out",
            s(&csr)?,
        ],
    ])?;
    openssl(&[&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        s(&csr)?,
        "-CA",
        s(&certs.ca)?,
        "-CAkey",
        s(ca_key)?,
        "-CAcreateserial",
        "-extfile",
        s(&ext)?,
        "-out",
        s(&crt)?,
    ]])
}

fn openssl(parts: &[&[&str]]) -> Result<(), StoreError> {
    let args: Vec<&str> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let output = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run openssl (is it installed?): {e}")))?;
    if !output.status.success() {
        return Err(fail(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

fn s(path: &Path) -> Result<&str, StoreError> {
    path.to_str()
        .ok_or_else(|| fail(format!("temp path {path:?} is not UTF-8")))
}

fn fail(message: String) -> StoreError {
    harness_error(Path::new("openssl"), message)
}
