//! `delegate` against the real reference plugins (containernetworking-plugins
//! 1.1.1 in /usr/lib/cni, CNI up to 1.0.0) and against scripted fakes for the
//! cases the real ones cannot produce on demand.
//!
//! IPAM plugins need no network namespace, so these run unprivileged.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use railyard_ipam_plugin::cni::{CniArgs, CniEnv, CniVersion, Command};
use railyard_ipam_plugin::delegate::Delegate;
use railyard_ipam_plugin::error::codes;
use railyard_ipam_plugin::Error;
use serde_json::{json, Map, Value};

const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Serializes the tests: a script written by one test while another forks
/// can fail to exec with ETXTBSY (the child briefly holds the write fd).
static EXEC_LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    EXEC_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reference_path() -> Vec<PathBuf> {
    for plugin in ["host-local", "static"] {
        let p = Path::new(REFERENCE_DIR).join(plugin);
        assert!(
            p.exists(),
            "{} missing: install Debian's containernetworking-plugins",
            p.display()
        );
    }
    vec![PathBuf::from(REFERENCE_DIR)]
}

fn attach_env(command: Command, container_id: &str, path: Vec<PathBuf>) -> CniEnv {
    let vars: HashMap<String, String> = [
        ("CNI_COMMAND", command.as_str()),
        ("CNI_CONTAINERID", container_id),
        ("CNI_NETNS", "/var/run/netns/test"),
        ("CNI_IFNAME", "net1"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ml;K8S_POD_NAME=p-0",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut env = CniEnv::from_map(&vars).unwrap();
    env.path = path;
    env
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn host_local_conf(version: &str, data_dir: &Path) -> Map<String, Value> {
    object(json!({
        "cniVersion": version,
        "name": "rail0",
        "type": "macvlan",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": "192.168.64.0/24", "gateway": "192.168.64.1"}]]
        }
    }))
}

#[test]
fn static_answers_the_given_addresses_when_called_with_1_1_0() {
    let _g = lock();
    let path = reference_path();
    let env = attach_env(Command::Add, "c1", path.clone());
    let delegate = Delegate::find("static", &path).unwrap();
    // The reference plugins stop at 1.0.0, so 1.1.0 must be stepped down.
    assert_eq!(
        delegate.negotiate(&env, CniVersion::V1_1_0).unwrap(),
        CniVersion::V1_0_0
    );
    let conf = object(json!({
        "cniVersion": "1.1.0",
        "name": "rail0",
        "type": "macvlan",
        "ipam": {
            "type": "static",
            "addresses": [
                {"address": "192.168.64.5/24", "gateway": "192.168.64.1"},
                {"address": "fd00:1::5/64"}
            ],
            "routes": [{"dst": "192.168.0.0/16", "gw": "192.168.64.1"}],
            "dns": {"nameservers": ["10.96.0.10"]}
        }
    }));
    let result = delegate.add(&env, &conf).unwrap();
    assert_eq!(
        result.to_value(CniVersion::V1_1_0),
        json!({
            "cniVersion": "1.1.0",
            "ips": [
                {"address": "192.168.64.5/24", "gateway": "192.168.64.1"},
                {"address": "fd00:1::5/64"}
            ],
            "routes": [{"dst": "192.168.0.0/16", "gw": "192.168.64.1"}],
            "dns": {"nameservers": ["10.96.0.10"]}
        })
    );
    // And in a 0.3.1 dialect, where static answers with IP versions.
    let mut old = conf.clone();
    old.insert("cniVersion".into(), "0.3.1".into());
    assert_eq!(delegate.add(&env, &old).unwrap(), result);
}

#[test]
fn host_local_add_check_del_in_a_temp_data_dir() {
    let _g = lock();
    let path = reference_path();
    let data = tempfile::tempdir().unwrap();
    let conf = host_local_conf("1.1.0", data.path());
    let delegate = Delegate::find("host-local", &path).unwrap();
    let lease = data.path().join("rail0").join("192.168.64.2");

    let first = delegate
        .add(&attach_env(Command::Add, "c1", path.clone()), &conf)
        .unwrap();
    assert_eq!(first.ips[0].address.to_string(), "192.168.64.2/24");
    assert_eq!(first.ips[0].gateway, Some("192.168.64.1".parse().unwrap()));
    assert!(fs::read_to_string(&lease).unwrap().starts_with("c1"));

    let second = delegate
        .add(&attach_env(Command::Add, "c2", path.clone()), &conf)
        .unwrap();
    assert_eq!(second.ips[0].address.to_string(), "192.168.64.3/24");

    // CHECK with the prevResult of our ADD, written for 1.1.0 and stepped down.
    let mut with_prev = conf.clone();
    with_prev.insert("prevResult".into(), first.to_value(CniVersion::V1_1_0));
    let check_env = attach_env(Command::Check, "c1", path.clone());
    delegate.check(&check_env, &with_prev).unwrap();

    delegate
        .del(&attach_env(Command::Del, "c1", path.clone()), &conf)
        .unwrap();
    assert!(!lease.exists(), "DEL must release the lease");
    // DEL is idempotent.
    delegate
        .del(&attach_env(Command::Del, "c1", path.clone()), &conf)
        .unwrap();

    // CHECK after DEL: host-local's own error, code and message intact.
    match delegate.check(&check_env, &with_prev) {
        Err(Error::Delegate {
            plugin, code, msg, ..
        }) => {
            assert_eq!((plugin.as_str(), code), ("host-local", 999));
            assert!(
                msg.contains("Failed to find address added by container c1"),
                "{msg}"
            );
        }
        other => panic!("expected host-local's error, got {other:?}"),
    }
}

#[test]
fn gc_and_status_are_skipped_for_a_1_0_0_delegate() {
    let _g = lock();
    let path = reference_path();
    let data = tempfile::tempdir().unwrap();
    let mut conf = host_local_conf("1.1.0", data.path());
    conf.insert("cni.dev/valid-attachments".into(), json!([]));
    let delegate = Delegate::find("host-local", &path).unwrap();
    let env = attach_env(Command::Add, "c1", path.clone());
    delegate.add(&env, &conf).unwrap();
    delegate.gc(&env.with_command(Command::Gc), &conf).unwrap();
    delegate
        .status(&env.with_command(Command::Status), &conf)
        .unwrap();
    // GC was not delivered, so the lease of c1 is still there.
    assert!(data.path().join("rail0").join("192.168.64.2").exists());
}

#[test]
fn delegate_config_error_propagates_code_and_message() {
    let _g = lock();
    let path = reference_path();
    let conf = object(json!({
        "cniVersion": "1.0.0", "name": "rail0", "type": "macvlan",
        "ipam": {"type": "host-local"}
    }));
    let err = Delegate::find("host-local", &path)
        .unwrap()
        .add(&attach_env(Command::Add, "c1", path.clone()), &conf)
        .unwrap_err();
    assert_eq!(err.code(), 999);
    assert_eq!(
        err.to_string(),
        "plugin \"host-local\" failed: no IP ranges specified"
    );
}

#[test]
fn missing_binary_is_code_5_naming_plugin_and_path() {
    let err = Delegate::find("ipvlan-nope", &[PathBuf::from(REFERENCE_DIR)]).unwrap_err();
    assert_eq!(err.code(), codes::IO_FAILURE);
    assert_eq!(
        err.to_string(),
        "plugin \"ipvlan-nope\" not found in CNI_PATH \"/usr/lib/cni\""
    );
    let err = Delegate::find("host-local", &[]).unwrap_err();
    assert_eq!(err.code(), codes::IO_FAILURE);
}

/// A fake plugin that records its environment and stdin per command in its
/// own directory and answers from the given snippets.
fn fake_plugin(dir: &Path, name: &str, supported: &str, add_reply: &str, fail: &str) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
here="$(dirname "$0")"
env | grep '^CNI_' | sort > "$here/env.$CNI_COMMAND"
cat > "$here/stdin.$CNI_COMMAND"
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"0.4.0","supportedVersions":{supported}}}' ;;
ADD) echo '{add_reply}' ;;
esac
{fail}
"#
    );
    let path = dir.join(name);
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn recorded(dir: &Path, what: &str) -> String {
    fs::read_to_string(dir.join(what)).unwrap_or_default()
}

#[test]
fn old_delegate_gets_its_version_env_and_converted_prev_result() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let add_reply = r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.2.3/24"}]}"#;
    fake_plugin(
        dir.path(),
        "old",
        r#"["0.1.0","0.3.0","0.3.1"]"#,
        add_reply,
        "",
    );
    let path = vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()];
    let env = attach_env(Command::Add, "c9", path.clone());
    let delegate = Delegate::find("old", &path).unwrap();
    let conf = object(json!({
        "cniVersion": "1.1.0", "name": "rail0", "type": "old", "master": "eth1",
        "prevResult": {
            "cniVersion": "1.1.0",
            "ips": [{"address": "192.168.64.5/24"}],
            "routes": [{"dst": "192.168.0.0/16", "mtu": 9000, "table": 7}]
        }
    }));

    let result = delegate.add(&env, &conf).unwrap();
    assert_eq!(result.ips[0].address.to_string(), "10.1.2.3/24");

    let sent: Value = serde_json::from_str(&recorded(dir.path(), "stdin.ADD")).unwrap();
    assert_eq!(
        sent,
        json!({
            "cniVersion": "0.3.1", "name": "rail0", "type": "old", "master": "eth1",
            "prevResult": {
                "cniVersion": "0.3.1",
                "ips": [{"version": "4", "address": "192.168.64.5/24"}],
                "routes": [{"dst": "192.168.0.0/16"}]
            }
        })
    );
    assert_eq!(
        recorded(dir.path(), "env.ADD"),
        format!(
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=ml;K8S_POD_NAME=p-0\n\
             CNI_COMMAND=ADD\nCNI_CONTAINERID=c9\nCNI_IFNAME=net1\n\
             CNI_NETNS=/var/run/netns/test\nCNI_PATH=/nonexistent:{}\n",
            dir.path().display()
        )
    );
    // VERSION is asked once, with no attachment variables.
    assert_eq!(
        recorded(dir.path(), "env.VERSION"),
        format!(
            "CNI_COMMAND=VERSION\nCNI_PATH=/nonexistent:{}\n",
            dir.path().display()
        )
    );
    // 0.3.1 has no CHECK: skipped rather than sent.
    delegate
        .check(&env.with_command(Command::Check), &conf)
        .unwrap();
    assert!(!dir.path().join("stdin.CHECK").exists());
}

#[test]
fn no_common_version_is_code_1() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    fake_plugin(dir.path(), "ancient", r#"["0.1.0","0.2.0"]"#, "{}", "");
    let path = vec![dir.path().to_path_buf()];
    let conf = object(json!({"cniVersion": "1.0.0", "name": "n", "type": "ancient"}));
    let err = Delegate::find("ancient", &path)
        .unwrap()
        .del(&attach_env(Command::Del, "c1", path.clone()), &conf)
        .unwrap_err();
    assert_eq!(err.code(), codes::INCOMPATIBLE_VERSION);
    assert!(err.to_string().contains("\"0.2.0\""), "{err}");
}

#[test]
fn delegate_error_json_is_propagated_verbatim() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let fail = r#"[ "$CNI_COMMAND" = DEL ] && { echo '{"code":11,"msg":"store locked","details":"retry in 1s"}'; exit 1; }
exit 0"#;
    fake_plugin(dir.path(), "busy", r#"["1.0.0"]"#, "{}", fail);
    let path = vec![dir.path().to_path_buf()];
    let conf = object(json!({"cniVersion": "1.0.0", "name": "n", "type": "busy"}));
    let err = Delegate::find("busy", &path)
        .unwrap()
        .del(&attach_env(Command::Del, "c1", path.clone()), &conf)
        .unwrap_err();
    assert_eq!(err.code(), codes::TRY_AGAIN_LATER);
    assert_eq!(err.to_string(), "plugin \"busy\" failed: store locked");
    assert_eq!(err.details().as_deref(), Some("retry in 1s"));
}

#[test]
fn crashing_delegate_is_code_5_with_its_stderr() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let fail = r#"[ "$CNI_COMMAND" = ADD ] && { echo 'panic: runtime error' >&2; exit 2; }
exit 0"#;
    fake_plugin(dir.path(), "crashy", r#"["1.0.0"]"#, "not json", fail);
    let path = vec![dir.path().to_path_buf()];
    let conf = object(json!({"cniVersion": "1.0.0", "name": "n", "type": "crashy"}));
    let err = Delegate::find("crashy", &path)
        .unwrap()
        .add(&attach_env(Command::Add, "c1", path.clone()), &conf)
        .unwrap_err();
    assert_eq!(err.code(), codes::IO_FAILURE);
    assert!(err.to_string().contains("exit status: 2"), "{err}");
    assert_eq!(
        err.details().as_deref(),
        Some("stderr: panic: runtime error")
    );
}

#[test]
fn unparseable_add_result_is_code_6() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    fake_plugin(
        dir.path(),
        "liar",
        r#"["1.0.0"]"#,
        r#"{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}"#,
        "",
    );
    let path = vec![dir.path().to_path_buf()];
    let conf = object(json!({"cniVersion": "1.0.0", "name": "n", "type": "liar"}));
    let err = Delegate::find("liar", &path)
        .unwrap()
        .add(&attach_env(Command::Add, "c1", path.clone()), &conf)
        .unwrap_err();
    assert_eq!(err.code(), codes::DECODE_FAILURE);
    assert!(
        err.to_string()
            .contains("result of plugin \"liar\": field `ips[0].address`"),
        "{err}"
    );
}

#[test]
fn cni_args_round_trip_to_the_delegate() {
    // Guards the exact CNI_ARGS string the recorded-env test relies on.
    let args = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAMESPACE=ml;K8S_POD_NAME=p-0").unwrap();
    assert_eq!(
        args.to_string(),
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ml;K8S_POD_NAME=p-0"
    );
}
