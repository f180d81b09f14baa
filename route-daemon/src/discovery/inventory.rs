//! The static inventory: an operator-written file that replaces discovery for
//! hosts whose NICs the daemon must not or cannot inspect (multi-nic-cni's
//! "unmanaged" hosts). One file may describe one host or many.

use std::path::Path;

use railyard_core::{HostInventory, InventoryFile};

use crate::error::{Error, Result};

/// This host's entry of the file at `path`. The file is YAML or JSON in one of
/// the shapes of `railyard_core::InventoryFile` (one host, a list of them, or
/// `{hosts: [...]}`).
pub fn load_inventory(path: &Path, host: &str) -> Result<HostInventory> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Inventory {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    parse_inventory(&text, host).map_err(|reason| Error::Inventory {
        path: path.to_owned(),
        reason,
    })
}

/// The pure part of [`load_inventory`]: the shapes are `InventoryFile`'s.
pub fn parse_inventory(text: &str, host: &str) -> std::result::Result<HostInventory, String> {
    // YAML is a superset of JSON, so one parser reads both.
    serde_yaml::from_str::<InventoryFile>(text)
        .map_err(|e| format!("not a host inventory: {e}"))?
        .into_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_host_yaml() {
        let inv = parse_inventory(
            "name: node-1\nnics:\n- name: ens1\n  addresses: [10.0.1.5/24, 'fd00::5/64']\n  up: false\n",
            "node-1",
        )
        .expect("parses");
        assert_eq!(inv.nics.len(), 1);
        assert_eq!(inv.nics[0].addresses.len(), 2);
        assert!(!inv.nics[0].up);
    }

    #[test]
    fn list_and_wrapped_json() {
        let list = r#"[{"name":"a","nics":[{"name":"eth1"}]},{"name":"b","interfaces":[{"name":"eth2"}]}]"#;
        assert_eq!(parse_inventory(list, "b").expect("b").nics[0].name, "eth2");
        let wrapped = r#"{"hosts":[{"name":"a","nics":[]}]}"#;
        assert_eq!(parse_inventory(wrapped, "a").expect("a").name, "a");
    }

    #[test]
    fn missing_host_and_bad_file_say_why() {
        let err = parse_inventory("[{name: a}]", "z").expect_err("absent");
        assert!(err.contains("\"z\"") && err.contains("a"), "{err}");
        let err = parse_inventory("name: a\nnics:\n- name: x\n- name: x\n", "a").expect_err("dup");
        assert!(err.contains("twice"), "{err}");
        assert!(parse_inventory("42", "a").is_err());
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let err = load_inventory(Path::new("/nonexistent/inv.yaml"), "a").expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/inv.yaml"), "{err}");
    }
}
