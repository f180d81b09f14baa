//! The network config a runtime writes to a plugin's stdin: `NetConf::parse`,
//! its `prevResult`, and the two plugins' own sections (railyard-cni's
//! `MetaConfig::parse`, railyard-ipam's `IpamConfig::parse` and selection).
//!
//! Properties: nothing panics; every error has a code, is not internal and
//! names its field; a parsed config written out and parsed again is the same
//! config; a decoded prevResult written in its version reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use railyard_fuzz::{check_cni_error, same_json};
use railyard_ipam_plugin::cni::{CniResult, NetConf};
use railyard_ipam_plugin::ipam::config as ipam_config;
use railyard_ipam_plugin::ipam::IpamConfig;
use railyard_ipam_plugin::meta::config::MetaConfig;

fuzz_target!(|data: &[u8]| {
    let conf = match NetConf::parse(data) {
        Ok(c) => c,
        Err(e) => return check_cni_error(&e),
    };

    // decode(encode(v)) == v
    let written = serde_json::to_vec(&conf.to_value()).expect("a config serializes");
    let again = NetConf::parse(&written).expect("a written config parses again");
    assert_eq!(again.cni_version, conf.cni_version);
    assert_eq!(again.name, conf.name);
    assert_eq!(again.plugin_type, conf.plugin_type);
    assert_eq!(again.valid_attachments, conf.valid_attachments);
    assert!(
        same_json(&again.to_value(), &conf.to_value()),
        "config changed on a round trip:\n{}\n{}",
        conf.to_value(),
        again.to_value()
    );

    match conf.prev_result() {
        Err(e) => check_cni_error(&e),
        Ok(None) => {}
        Ok(Some(result)) => {
            let v = conf.cni_version;
            let out = result.to_value(v);
            let (read_v, read) =
                CniResult::from_value(&out, "prevResult", v).expect("a result we wrote reads back");
            assert_eq!(read_v, v);
            // Canonical: writing what was read gives the same JSON.
            assert!(same_json(&read.to_value(v), &out), "{out}");
        }
    }

    match MetaConfig::parse(&conf) {
        Err(e) => check_cni_error(&e),
        Ok(meta) => {
            assert!(!meta.ipam_type.is_empty() && !meta.delegate_type.is_empty());
            assert!(meta.state_dir.is_absolute());
            assert_eq!(
                meta.delegate.get("type").and_then(|t| t.as_str()),
                Some(meta.delegate_type.as_str())
            );
        }
    }

    match IpamConfig::parse(&conf) {
        Err(e) => check_cni_error(&e),
        Ok(ipam) => {
            assert!(!ipam.network.is_empty());
            assert!(!ipam.timeout.is_zero());
        }
    }
    if let Err(e) = ipam_config::selection(&conf) {
        check_cni_error(&e);
    }
    if let Err(e) = ipam_config::standalone_master(&conf) {
        check_cni_error(&e);
    }
});
