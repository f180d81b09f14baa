//! TLS material for the etcd connection, read once at connect time.

use std::path::Path;

use etcd_client as ec;

use super::EtcdConfig;
use crate::StoreError;

pub(super) async fn tls_options(config: &EtcdConfig) -> Result<Option<ec::TlsOptions>, StoreError> {
    if config.ca.is_none() && config.cert.is_none() && config.key.is_none() {
        return Ok(None);
    }
    let mut tls = ec::TlsOptions::new();
    if let Some(ca) = &config.ca {
        tls = tls.ca_certificate(ec::Certificate::from_pem(read_pem(ca, "CA").await?));
    }
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let cert = read_pem(cert, "client certificate").await?;
            let key = read_pem(key, "client key").await?;
            tls = tls.identity(ec::Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::InvalidRequest {
                reason: "etcd client certificate and key must be given together".to_string(),
            })
        }
    }
    Ok(Some(tls))
}

async fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, StoreError> {
    tokio::fs::read(path).await.map_err(|e| StoreError::Other {
        context: format!("reading etcd {what} {}", path.display()),
        message: e.to_string(),
    })
}
