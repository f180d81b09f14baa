//! The `run` contract as a runtime observes it: stdout bytes and exit code.

use std::collections::HashMap;

use proptest::prelude::*;
use railyard_ipam_plugin::cni::{
    run, AttachRequest, CniResult, Command, GcRequest, Handler, IpConfig, Output, StatusRequest,
};
use railyard_ipam_plugin::error::codes;
use railyard_ipam_plugin::Error;
use serde_json::{json, Value};

/// Records what reached it and answers from a script.
#[derive(Default)]
struct Recorder {
    calls: Vec<(Command, String)>,
    fail_with: Option<fn() -> Error>,
    panic: bool,
}

impl Recorder {
    fn answer(&mut self, cmd: Command, detail: String) -> Result<(), Error> {
        self.calls.push((cmd, detail));
        if self.panic {
            panic!("handler exploded on {cmd}");
        }
        match self.fail_with {
            Some(make) => Err(make()),
            None => Ok(()),
        }
    }
}

impl Handler for Recorder {
    fn add(&mut self, req: &AttachRequest) -> Result<CniResult, Error> {
        let pod = req
            .env
            .args
            .pod()
            .map(|p| format!("{}/{}", p.namespace, p.name));
        self.answer(Command::Add, format!("{} {:?}", req.attachment.ifname, pod))?;
        Ok(CniResult {
            ips: vec![IpConfig {
                address: "192.168.64.9/24".parse().map_err(|_| Error::Internal {
                    reason: "test address".into(),
                })?,
                gateway: None,
                interface: None,
            }],
            ..CniResult::default()
        })
    }
    fn del(&mut self, req: &AttachRequest) -> Result<(), Error> {
        self.answer(Command::Del, req.attachment.container_id.clone())
    }
    fn check(&mut self, req: &AttachRequest) -> Result<(), Error> {
        self.answer(Command::Check, req.config.name.clone())
    }
    fn gc(&mut self, req: &GcRequest) -> Result<(), Error> {
        self.answer(Command::Gc, format!("{}", req.valid_attachments.len()))
    }
    fn status(&mut self, req: &StatusRequest) -> Result<(), Error> {
        self.answer(Command::Status, req.config.plugin_type.clone())
    }
}

/// A netns that exists wherever the tests run, root or not: ADD and CHECK
/// refuse a `CNI_NETNS` that is not a namespace.
const NETNS: &str = "/proc/self/ns/net";

fn env(command: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", NETNS),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", "/usr/lib/cni"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=ml;K8S_POD_NAME=trainer-0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn config(version: &str) -> Vec<u8> {
    json!({
        "cniVersion": version,
        "name": "rails",
        "type": "railyard-ipam",
        "ipam": {"network": "rdma"},
        "cni.dev/valid-attachments": [{"containerID": "c0ffee", "ifname": "net1"}]
    })
    .to_string()
    .into_bytes()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs and asserts the spec's error shape; returns (code, msg).
fn expect_error(out: &Output) -> (u64, String) {
    assert_eq!(out.exit_code, 1);
    let v = stdout_json(out);
    let code = v["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no code in {v}"));
    assert!(v["cniVersion"].is_string(), "{v}");
    (code, v["msg"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn add_answers_in_the_config_version() {
    for (version, ip) in [
        (
            "0.3.0",
            json!({"version": "4", "address": "192.168.64.9/24"}),
        ),
        (
            "0.3.1",
            json!({"version": "4", "address": "192.168.64.9/24"}),
        ),
        (
            "0.4.0",
            json!({"version": "4", "address": "192.168.64.9/24"}),
        ),
        ("1.0.0", json!({"address": "192.168.64.9/24"})),
        ("1.1.0", json!({"address": "192.168.64.9/24"})),
    ] {
        let mut h = Recorder::default();
        let out = run(&env("ADD"), &config(version), &mut h);
        assert_eq!(out.exit_code, 0);
        assert_eq!(
            stdout_json(&out),
            json!({"cniVersion": version, "ips": [ip]})
        );
        assert_eq!(
            h.calls,
            vec![(Command::Add, "net1 Some(\"ml/trainer-0\")".into())]
        );
    }
}

#[test]
fn del_check_gc_status_print_nothing_on_success() {
    for (cmd, expected) in [
        ("DEL", (Command::Del, "c0ffee")),
        ("CHECK", (Command::Check, "rails")),
        ("GC", (Command::Gc, "1")),
        ("STATUS", (Command::Status, "railyard-ipam")),
    ] {
        let mut h = Recorder::default();
        let out = run(&env(cmd), &config("1.1.0"), &mut h);
        assert_eq!(
            out,
            Output {
                stdout: vec![],
                exit_code: 0
            },
            "{cmd}"
        );
        assert_eq!(h.calls, vec![(expected.0, expected.1.to_owned())]);
    }
}

#[test]
fn version_needs_no_env_and_echoes_a_known_version() {
    let only_command: HashMap<_, _> = [("CNI_COMMAND".to_owned(), "VERSION".to_owned())].into();
    let mut h = Recorder::default();
    for (stdin, echoed) in [
        (&br#"{"cniVersion":"0.4.0"}"#[..], "0.4.0"),
        (b"", "1.1.0"),
        (b"garbage", "1.1.0"),
        (br#"{"cniVersion":"0.2.0"}"#, "1.1.0"),
    ] {
        let out = run(&only_command, stdin, &mut h);
        assert_eq!(out.exit_code, 0);
        assert_eq!(
            stdout_json(&out),
            json!({"cniVersion": echoed,
                   "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
    }
    assert!(h.calls.is_empty());
}

#[test]
fn commands_newer_than_the_config_are_code_1() {
    for (cmd, version) in [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "0.4.0")] {
        let mut h = Recorder::default();
        let (code, msg) = expect_error(&run(&env(cmd), &config(version), &mut h));
        assert_eq!(code, u64::from(codes::INCOMPATIBLE_VERSION), "{cmd} {msg}");
        assert!(msg.contains(cmd) && msg.contains(version), "{msg}");
        assert!(h.calls.is_empty());
    }
}

#[test]
fn unsupported_version_is_code_1_answered_in_our_latest() {
    let mut h = Recorder::default();
    let out = run(&env("ADD"), &config("0.2.0"), &mut h);
    let (code, msg) = expect_error(&out);
    assert_eq!(code, 1);
    assert!(msg.contains("\"0.2.0\"") && msg.contains("1.1.0"), "{msg}");
    assert_eq!(stdout_json(&out)["cniVersion"], "1.1.0");
}

#[test]
fn errors_are_stamped_with_the_config_version() {
    let mut h = Recorder {
        fail_with: Some(|| Error::BlockExhausted {
            network: "rails".into(),
            block: "192.168.64.0/24".into(),
        }),
        ..Recorder::default()
    };
    let out = run(&env("ADD"), &config("0.4.0"), &mut h);
    let (code, msg) = expect_error(&out);
    assert_eq!(code, 101);
    assert!(msg.contains("192.168.64.0/24"), "{msg}");
    assert_eq!(stdout_json(&out)["cniVersion"], "0.4.0");
}

#[test]
fn a_netns_that_is_gone_fails_add_and_check_but_not_del() {
    let gone = "/var/run/netns/railyard-test-no-such-netns";
    for command in ["ADD", "CHECK"] {
        let mut vars = env(command);
        vars.insert("CNI_NETNS".into(), gone.into());
        let mut h = Recorder::default();
        let (code, msg) = expect_error(&run(&vars, &config("1.0.0"), &mut h));
        assert_eq!(code, 4, "{command}: {msg}");
        assert!(
            msg.contains(&format!("CNI_NETNS={gone:?}")) && msg.contains("does not exist"),
            "{command}: {msg}"
        );
        assert!(h.calls.is_empty(), "{command} reached the handler");
    }
    // DEL must release the allocation even when the sandbox is gone.
    let mut vars = env("DEL");
    vars.insert("CNI_NETNS".into(), gone.into());
    let mut h = Recorder::default();
    assert_eq!(run(&vars, &config("1.0.0"), &mut h).exit_code, 0);
    assert_eq!(h.calls, vec![(Command::Del, "c0ffee".into())]);
}

#[test]
fn missing_env_is_code_4_naming_the_variables() {
    let mut vars = env("ADD");
    vars.remove("CNI_NETNS");
    let mut h = Recorder::default();
    let (code, msg) = expect_error(&run(&vars, &config("1.0.0"), &mut h));
    assert_eq!(code, 4);
    assert!(msg.contains("CNI_NETNS"), "{msg}");
    let mut vars = env("GC");
    vars.remove("CNI_PATH");
    let (code, msg) = expect_error(&run(&vars, &config("1.1.0"), &mut h));
    assert_eq!((code, msg.contains("CNI_PATH")), (4, true), "{msg}");
    assert!(h.calls.is_empty());
}

#[test]
fn malformed_stdin_is_code_6_or_7_naming_the_field() {
    let cases: [(&[u8], u32, &str); 6] = [
        (b"not json", codes::DECODE_FAILURE, "network config"),
        (b"[]", codes::DECODE_FAILURE, "JSON object"),
        (
            br#"{"cniVersion":"1.0.0","name":5,"type":"x"}"#,
            codes::DECODE_FAILURE,
            "`name`",
        ),
        (
            br#"{"name":"n","type":"x"}"#,
            codes::INVALID_NETWORK_CONFIG,
            "`cniVersion`",
        ),
        (
            br#"{"cniVersion":"1.0.0","type":"x"}"#,
            codes::INVALID_NETWORK_CONFIG,
            "`name`",
        ),
        (
            br#"{"cniVersion":"1.0.0","name":"n","type":"x","ipam":[]}"#,
            codes::DECODE_FAILURE,
            "`ipam`",
        ),
    ];
    for (stdin, want, needle) in cases {
        let mut h = Recorder::default();
        let (code, msg) = expect_error(&run(&env("ADD"), stdin, &mut h));
        assert_eq!(code, u64::from(want), "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
}

#[test]
fn gc_without_keep_list_is_refused() {
    let stdin = br#"{"cniVersion":"1.1.0","name":"n","type":"railyard-ipam"}"#;
    let mut h = Recorder::default();
    let (code, msg) = expect_error(&run(&env("GC"), stdin, &mut h));
    assert_eq!(code, 7);
    assert!(msg.contains("cni.dev/valid-attachments"), "{msg}");
    assert!(h.calls.is_empty());
}

#[test]
fn handler_panic_becomes_error_999() {
    let mut h = Recorder {
        panic: true,
        ..Recorder::default()
    };
    let (code, msg) = expect_error(&run(&env("DEL"), &config("1.0.0"), &mut h));
    assert_eq!(code, 999);
    assert!(msg.contains("handler exploded on DEL"), "{msg}");
}

fn arb_env() -> impl Strategy<Value = HashMap<String, String>> {
    let key = prop::sample::select(vec![
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
        "OTHER",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "ADD",
            "DEL",
            "CHECK",
            "GC",
            "STATUS",
            "VERSION",
            "add",
            "",
            "c0ffee",
            "net1",
            "/var/run/netns/x",
            NETNS,
            "K8S_POD_NAME=a;K8S_POD_NAMESPACE=b",
            "a=b;;c",
            ";=;",
            "/usr/lib/cni:",
            "..",
            "x/y",
        ])
        .prop_map(str::to_owned),
        ".{0,20}",
    ];
    prop::collection::hash_map(key.prop_map(str::to_owned), value, 0..7)
}

fn arb_stdin() -> impl Strategy<Value = Vec<u8>> {
    let json_value = prop_oneof![
        Just(json!(null)),
        Just(json!("1.1.0")),
        Just(json!("0.4.0")),
        Just(json!(7)),
        Just(json!([{"containerID": "c", "ifname": "eth0"}])),
        Just(json!({"ips": [{"version": "4", "address": "10.0.0.1/24"}]})),
        ".{0,12}".prop_map(Value::from),
    ];
    let field = prop::sample::select(vec![
        "cniVersion",
        "name",
        "type",
        "ipam",
        "prevResult",
        "args",
        "runtimeConfig",
        "cni.dev/valid-attachments",
    ]);
    let object = prop::collection::btree_map(field.prop_map(str::to_owned), json_value, 0..8)
        .prop_map(|m| serde_json::to_vec(&m).unwrap_or_default());
    prop_oneof![prop::collection::vec(any::<u8>(), 0..200), object]
}

/// A valid invocation with one variable and one config field replaced or
/// removed, so the property also reaches the handler and result paths.
fn arb_near_valid() -> impl Strategy<Value = (HashMap<String, String>, Vec<u8>)> {
    let command = prop::sample::select(vec!["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"]);
    let version = prop::sample::select(vec!["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    let var = prop::sample::select(vec![
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ]);
    let field = prop::sample::select(vec![
        "cniVersion",
        "name",
        "type",
        "ipam",
        "prevResult",
        "cni.dev/valid-attachments",
    ]);
    let replacement = prop::option::of(prop_oneof![
        ".{0,16}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.1/8"}]})),
        Just(json!([{"containerID": 1}])),
    ]);
    (
        command,
        version,
        var,
        prop::option::of(".{0,16}"),
        field,
        replacement,
    )
        .prop_map(|(command, version, var, var_value, field, replacement)| {
            let mut vars = env(command);
            match var_value {
                Some(v) => vars.insert(var.to_owned(), v),
                None => vars.remove(var),
            };
            let mut conf: Value = serde_json::from_slice(&config(version)).unwrap_or_default();
            if let Some(obj) = conf.as_object_mut() {
                match replacement {
                    Some(v) => obj.insert(field.to_owned(), v),
                    None => obj.remove(field),
                };
            }
            (vars, conf.to_string().into_bytes())
        })
}

/// The invariant every output must satisfy, success or failure.
fn assert_spec_output(out: &Output) -> Result<(), TestCaseError> {
    if out.exit_code == 0 {
        if !out.stdout.is_empty() {
            let v: Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(v["cniVersion"].is_string());
        }
    } else {
        prop_assert_eq!(out.exit_code, 1);
        let v: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(v["code"].as_u64().is_some_and(|c| c > 0), "{}", v);
        prop_assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{}", v);
        prop_assert!(v["cniVersion"].is_string(), "{}", v);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn near_valid_invocations_always_print_spec_json(
        (vars, stdin) in arb_near_valid(),
        panic in any::<bool>(),
    ) {
        let mut h = Recorder { panic, ..Recorder::default() };
        assert_spec_output(&run(&vars, &stdin, &mut h))?;
    }

    /// Whatever arrives, stdout is JSON (or empty on a silent success) and
    /// every failure is the spec's error object.
    #[test]
    fn run_never_panics_and_always_prints_json(vars in arb_env(), stdin in arb_stdin(), panic in any::<bool>()) {
        let mut h = Recorder { panic, ..Recorder::default() };
        assert_spec_output(&run(&vars, &stdin, &mut h))?;
    }
}
