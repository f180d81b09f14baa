//! The control plane's throwaway PKI, made with the `openssl` command (as the
//! store's TLS test etcd makes its own) so the harness needs no certificate
//! library: one CA; the API server's serving certificate; client certificates
//! for the admin (group `system:masters`) and for kube-controller-manager (user
//! `system:kube-controller-manager`, which the API server's bootstrap RBAC
//! binds); and the service-account signing key pair.
//!
//! P-256 keys throughout: quick to make, and kube-apiserver signs service-account
//! tokens with them (ES256) as readily as with RSA.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Paths of everything [`Pki::generate`] made.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub kcm_cert: PathBuf,
    pub kcm_key: PathBuf,
    /// The service-account token signing key (private) and its public half,
    /// which the API server verifies tokens with.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

const KEY_ARGS: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// The API server's names: the loopback it listens on, and the in-cluster names a
/// pod would use (the `kubernetes` Service's first address of 10.96.0.0/24).
const APISERVER_SAN: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,\
     DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n\
     extendedKeyUsage=serverAuth\n";

impl Pki {
    /// Makes the PKI in `dir` (created, mode 0700: it holds private keys).
    pub fn generate(dir: &Path) -> Result<Pki> {
        crate::cluster::process::private_dir(dir)
            .map_err(|e| Error::io("create PKI dir", dir, e))?;
        let p = |n: &str| dir.join(n);
        let pki = Pki {
            ca: p("ca.crt"),
            ca_key: p("ca.key"),
            apiserver_cert: p("apiserver.crt"),
            apiserver_key: p("apiserver.key"),
            admin_cert: p("admin.crt"),
            admin_key: p("admin.key"),
            kcm_cert: p("kcm.crt"),
            kcm_key: p("kcm.key"),
            sa_key: p("sa.key"),
            sa_pub: p("sa.pub"),
        };
        openssl(&[
            &["req", "-x509", "-nodes", "-days", "7"],
            KEY_ARGS,
            &[
                "-subj",
                "/CN=railyard-kube-ca",
                "-keyout",
                s(&pki.ca_key)?,
                "-out",
                s(&pki.ca)?,
            ],
        ])?;
        pki.sign(dir, "apiserver", "/CN=kube-apiserver", APISERVER_SAN)?;
        pki.sign(
            dir,
            "admin",
            "/O=system:masters/CN=railyard-admin",
            "extendedKeyUsage=clientAuth\n",
        )?;
        pki.sign(
            dir,
            "kcm",
            "/CN=system:kube-controller-manager",
            "extendedKeyUsage=clientAuth\n",
        )?;
        openssl(&[&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            s(&pki.sa_key)?,
        ]])?;
        openssl(&[&[
            "pkey",
            "-in",
            s(&pki.sa_key)?,
            "-pubout",
            "-out",
            s(&pki.sa_pub)?,
        ]])?;
        Ok(pki)
    }

    /// Makes `<name>.key` and `<name>.crt` for `subject`, signed by the CA.
    fn sign(&self, dir: &Path, name: &str, subject: &str, extensions: &str) -> Result<()> {
        let key = dir.join(format!("{name}.key"));
        let csr = dir.join(format!("{name}.csr"));
        let crt = dir.join(format!("{name}.crt"));
        let ext = dir.join(format!("{name}.ext"));
        std::fs::write(&ext, format!("basicConstraints=CA:FALSE\n{extensions}"))
            .map_err(|e| Error::io("write certificate extensions", &ext, e))?;
        openssl(&[
            &["req", "-nodes"],
            KEY_ARGS,
            &["-subj", subject, "-keyout", s(&key)?, "-out", s(&csr)?],
        ])?;
        openssl(&[&[
            "x509",
            "-req",
            "-days",
            "7",
            "-in",
            s(&csr)?,
            "-CA",
            s(&self.ca)?,
            "-CAkey",
            s(&self.ca_key)?,
            "-CAcreateserial",
            "-extfile",
            s(&ext)?,
            "-out",
            s(&crt)?,
        ]])
    }
}

fn openssl(parts: &[&[&str]]) -> Result<()> {
    let args: Vec<&str> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let command = format!("openssl {}", args.join(" "));
    let out = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Missing(format!("cannot run openssl (run `make deps`): {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command,
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn s(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::Refused(format!("{} is not UTF-8", path.display())))
}
