//! Names end up in etcd keys, Kubernetes object names and interface names; one
//! check here keeps a stray `/` from ever splitting a key.

use crate::error::{CoreError, Result};

/// RFC 1123 label: what Kubernetes requires of namespace and object names.
pub fn validate_dns_label(field: &str, value: &str) -> Result<()> {
    let bad = |reason: &str| CoreError::InvalidName {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > 63 {
        return Err(bad("must be at most 63 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("may contain only lowercase letters, digits and '-'"));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(bad("must start and end with a letter or digit"));
    }
    Ok(())
}

/// Host names are node names (RFC 1123 subdomains, up to 253 characters).
pub fn validate_host_name(field: &str, value: &str) -> Result<()> {
    let bad = |reason: &str| CoreError::InvalidName {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > 253 {
        return Err(bad("must be at most 253 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(bad("may contain only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// Key segments that are not DNS names (container IDs, interface names): anything
/// printable except the key separator.
pub fn validate_key_segment(field: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > 255
        || value.contains('/')
        || value.chars().any(char::is_control)
    {
        return Err(CoreError::InvalidName {
            field: field.to_string(),
            value: value.to_string(),
            reason: "must be 1 to 255 printable characters without '/'".to_string(),
        });
    }
    Ok(())
}
