//! `railyard-ipam` as a runtime runs it: the real binary, env and stdin in,
//! stdout and exit code out, against the stand-in daemon (common::daemon).
//! IPAM creates no interfaces, so none of this needs root.

mod common;

use std::path::Path;

use common::daemon::{TestDaemon, TestNic};
use common::{attach_env, exec, ipam_bin, plain_env, Outcome};
use railyard_core::ipam::{AttachmentId, PodRef, Request, Selection};
use serde_json::{json, Value};

/// A netns that exists wherever the tests run (the plugin's own): ADD and
/// CHECK refuse a `CNI_NETNS` that is not a namespace.
const NETNS: &str = "/proc/self/ns/net";
/// One that does not.
const GONE: &str = "/var/run/netns/railyard-test-gone";
const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn conf(version: &str, socket: &Path) -> Value {
    json!({
        "cniVersion": version,
        "name": "rdma",
        "type": "macvlan",
        "ipam": {"type": "railyard-ipam", "socket": socket}
    })
}

fn run(command: &str, container: &str, conf: &Value) -> Outcome {
    exec(
        &ipam_bin(),
        &attach_env(command, container, "net1", NETNS, "/usr/lib/cni"),
        conf.to_string().as_bytes(),
        None,
    )
}

fn run_plain(command: &str, conf: &Value) -> Outcome {
    exec(
        &ipam_bin(),
        &plain_env(command, "/usr/lib/cni"),
        conf.to_string().as_bytes(),
        None,
    )
}

fn id(container: &str) -> AttachmentId {
    AttachmentId {
        network: "rdma".into(),
        container_id: container.into(),
        ifname: "net1".into(),
    }
}

fn dual_stack_daemon() -> TestDaemon {
    TestDaemon::start(vec![
        TestNic::v4("ry-a", 0, "192.168.0.0/24", "192.168.0.0/18")
            .with_v6("fd00:0:0:1::/64", "fd00::/48"),
        TestNic::v4("ry-b", 1, "192.168.64.0/24", "192.168.64.0/18"),
    ])
}

#[test]
fn add_answers_every_version_in_its_own_format() {
    let daemon = dual_stack_daemon();
    for version in VERSIONS {
        let tagged = version.starts_with("0.");
        let ip = |address: &str, gateway: &str, family: &str| {
            let mut v = json!({"address": address, "gateway": gateway});
            if tagged {
                v["version"] = family.into();
            }
            v
        };
        let expected = json!({
            "cniVersion": version,
            "ips": [
                ip("192.168.0.10/24", "192.168.0.1", "4"),
                ip("fd00:0:0:1::a/64", "fd00:0:0:1::1", "6"),
                ip("192.168.64.10/24", "192.168.64.1", "4"),
            ],
            "routes": [
                {"dst": "192.168.0.0/18", "gw": "192.168.0.1"},
                {"dst": "fd00::/48", "gw": "fd00:0:0:1::1"},
                {"dst": "192.168.64.0/18", "gw": "192.168.64.1"},
            ]
        });
        // Same attachment every time: the daemon's idempotent ADD answers alike.
        let c = conf(version, &daemon.socket);
        let out = run("ADD", "c-golden", &c);
        assert_eq!(out.ok(), expected, "{version}");
        if version >= "0.4.0" {
            let mut with_prev = c.clone();
            with_prev["prevResult"] = expected.clone();
            assert_eq!(
                run("CHECK", "c-golden", &with_prev).ok(),
                Value::Null,
                "{version}"
            );
        }
    }
    assert_eq!(daemon.allocations().len(), 1);
    for version in VERSIONS {
        let out = run("DEL", "c-golden", &conf(version, &daemon.socket));
        assert_eq!(
            (out.ok(), out.stdout.as_str()),
            (Value::Null, ""),
            "{version}"
        );
    }
    assert!(daemon.allocations().is_empty());
}

#[test]
fn add_sends_attachment_pod_selection_and_standalone_master() {
    let daemon = dual_stack_daemon();
    let mut c = conf("1.0.0", &daemon.socket);
    c["master"] = "ry-b".into();
    c["ipam"]["network"] = "rails".into();
    c["args"] = json!({"cni": {"nics": 1, "masters": ["ry-b"], "class": "fast", "numa": 1,
                               "ips": ["192.168.64.20"], "somebodyElse": "ignored"}});
    // The `ips` capability: the same address again (once in the request) and
    // one of the other family.
    c["runtimeConfig"] = json!({"ips": ["192.168.64.20/24", "fd00:64::20/64"]});
    let result = run("ADD", "c1", &c).ok();
    assert_eq!(
        result,
        json!({"cniVersion": "1.0.0",
               "ips": [{"address": "192.168.64.10/24", "gateway": "192.168.64.1"}],
               "routes": [{"dst": "192.168.64.0/18", "gw": "192.168.64.1"}]})
    );
    assert_eq!(
        daemon.requests(),
        vec![Request::Add {
            attachment: AttachmentId {
                network: "rails".into(),
                ..id("c1")
            },
            pod: PodRef {
                namespace: "ml".into(),
                name: "pod-c1".into(),
                uid: "uid-c1".into(),
                controller: None,
            },
            selection: Selection {
                nics: Some(1),
                masters: vec!["ry-b".into()],
                class: Some("fast".into()),
                numa: Some(1),
                ips: vec![
                    "192.168.64.20".parse().unwrap(),
                    "fd00:64::20".parse().unwrap()
                ],
                ..Selection::default()
            },
            master: Some("ry-b".into()),
        }]
    );
}

#[test]
fn static_ips_that_are_not_addresses_are_refused_by_field_before_any_request() {
    let daemon = dual_stack_daemon();
    for (key, value, field) in [
        (
            "runtimeConfig",
            json!({"ips": ["192.168.64.20/24", "10.0.0.300"]}),
            "runtimeConfig.ips[1]",
        ),
        (
            "runtimeConfig",
            json!({"ips": ["10.0.0.1/33"]}),
            "runtimeConfig.ips[0]",
        ),
        (
            "args",
            json!({"cni": {"ips": ["pod-a"]}}),
            "args.cni.ips[0]",
        ),
        ("args", json!({"cni": {"ips": "10.0.0.1"}}), "args.cni"),
    ] {
        let mut c = conf("1.0.0", &daemon.socket);
        c[key] = value;
        let (code, msg) = run("ADD", "c1", &c).err();
        assert!(msg.contains(field), "{field}: {code} {msg}");
    }
    assert!(daemon.requests().is_empty());
}

#[test]
fn report_nics_lists_host_nics_and_points_ips_at_them() {
    let daemon = dual_stack_daemon();
    let mut c = conf("1.1.0", &daemon.socket);
    c["ipam"]["reportNics"] = true.into();
    let result = run("ADD", "c1", &c).ok();
    assert_eq!(
        result["interfaces"],
        json!([{"name": "ry-a", "rail": 0}, {"name": "ry-b", "rail": 1}])
    );
    let indexes: Vec<&Value> = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| &ip["interface"])
        .collect();
    assert_eq!(indexes, [&json!(0), &json!(0), &json!(1)]);
}

#[test]
fn del_check_gc_status_become_daemon_requests() {
    let daemon = dual_stack_daemon();
    let c = conf("1.1.0", &daemon.socket);
    run("ADD", "c1", &c).ok();
    run("ADD", "c2", &c).ok();
    assert_eq!(run("CHECK", "c1", &c).ok(), Value::Null);

    assert_eq!(run("DEL", "c1", &c).ok(), Value::Null);
    assert_eq!(run("DEL", "c1", &c).ok(), Value::Null, "DEL is idempotent");
    let (code, msg) = run("CHECK", "c1", &c).err();
    assert_eq!((code, msg.as_str()), (3, "attachment is not allocated"));

    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c9", "ifname": "net1"}]);
    assert_eq!(run_plain("GC", &gc).ok(), Value::Null);
    assert!(daemon.allocations().is_empty(), "GC released c2");
    assert_eq!(run_plain("STATUS", &c).ok(), Value::Null);

    let ops: Vec<Request> = daemon.requests().into_iter().skip(2).collect();
    assert_eq!(
        ops,
        vec![
            Request::Check {
                attachment: id("c1")
            },
            Request::Del {
                attachment: id("c1")
            },
            Request::Del {
                attachment: id("c1")
            },
            Request::Check {
                attachment: id("c1")
            },
            Request::Gc {
                network: "rdma".into(),
                valid: vec![id("c9")],
            },
            Request::Status {
                network: "rdma".into()
            },
        ]
    );
}

#[test]
fn version_is_answered_without_the_daemon() {
    let daemon = dual_stack_daemon();
    for stdin in [json!({"cniVersion": "0.4.0"}).to_string(), String::new()] {
        let out = exec(
            &ipam_bin(),
            &plain_env("VERSION", ""),
            stdin.as_bytes(),
            None,
        );
        let v = out.ok();
        assert_eq!(v["supportedVersions"], json!(VERSIONS));
    }
    assert_eq!(daemon.request_count(), 0);
}

#[test]
fn unreachable_daemon_is_code_11_naming_the_socket_and_status_50() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-daemon.sock");
    let c = conf("1.1.0", &socket);
    for command in ["ADD", "DEL", "CHECK"] {
        let (code, msg) = run(command, "c1", &c).err();
        assert_eq!(code, 11, "{command}: {msg}");
        assert!(
            msg.contains(&socket.display().to_string()),
            "{command}: {msg}"
        );
    }
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(run_plain("GC", &gc).err().0, 11);
    let (code, msg) = run_plain("STATUS", &c).err();
    assert_eq!(code, 50, "{msg}");
    assert!(msg.contains(&socket.display().to_string()), "{msg}");

    // A socket file nobody listens on: connection refused, same answer.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert_eq!(run("ADD", "c1", &c).err().0, 11);
}

#[test]
fn stalled_daemon_times_out_with_code_11() {
    let daemon = dual_stack_daemon();
    daemon.go_silent();
    let mut c = conf("1.0.0", &daemon.socket);
    c["ipam"]["timeoutSeconds"] = 1.into();
    let started = std::time::Instant::now();
    let (code, msg) = run("ADD", "c1", &c).err();
    assert_eq!(code, 11, "{msg}");
    assert!(msg.contains("no answer within 1.0s"), "{msg}");
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn daemon_errors_keep_their_code_and_message() {
    let daemon = dual_stack_daemon();
    let c = conf("1.0.0", &daemon.socket);
    for (code, message) in [
        (100, "no NIC satisfies policy rails=[3]"),
        (101, "block 192.168.0.0/24 is exhausted"),
        (11, "no plan for network rdma yet"),
    ] {
        daemon.fail_with(code, message);
        let out = run("ADD", "c1", &c);
        let (got, msg) = out.err();
        assert_eq!((got, msg.as_str()), (u64::from(code), message));
        assert!(out.json()["details"]
            .as_str()
            .unwrap_or_default()
            .contains("ipam.sock"));
    }
    // Selection the daemon cannot satisfy, with its real answer.
    let daemon = dual_stack_daemon();
    let mut c = conf("1.0.0", &daemon.socket);
    c["args"] = json!({"cni": {"masters": ["ry-z"]}});
    assert_eq!(run("ADD", "c1", &c).err().0, 100);
}

/// What is wrong, the environment, stdin, the expected CNI code.
type Case = (&'static str, Vec<(&'static str, String)>, Vec<u8>, u64);

#[test]
fn invalid_invocations_get_spec_codes_and_never_reach_the_daemon() {
    let daemon = dual_stack_daemon();
    let good = conf("1.1.0", &daemon.socket);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c.to_string().into_bytes()
    };
    let attach = |command: &str| attach_env(command, "c1", "net1", NETNS, "/usr/lib/cni");
    let mut no_container = attach("ADD");
    no_container.retain(|(k, _)| *k != "CNI_CONTAINERID");
    let gone = |command: &str| attach_env(command, "c1", "net1", GONE, "/usr/lib/cni");
    let mut bad_ifname = attach("ADD");
    bad_ifname.retain(|(k, _)| *k != "CNI_IFNAME");
    bad_ifname.push(("CNI_IFNAME", "net1/../x".into()));

    let cases: Vec<Case> = vec![
        ("not json", attach("ADD"), b"{\"cniVersion\":".to_vec(), 6),
        ("empty stdin", attach("ADD"), Vec::new(), 6),
        (
            "wrong field type",
            attach("ADD"),
            with(&|c| c["ipam"]["socket"] = 7.into()),
            6,
        ),
        (
            "unknown ipam field",
            attach("ADD"),
            with(&|c| c["ipam"]["sockt"] = "/x".into()),
            2,
        ),
        (
            "unsupported version",
            attach("ADD"),
            with(&|c| c["cniVersion"] = "0.2.0".into()),
            1,
        ),
        (
            "GC before 1.1.0",
            plain_env("GC", "/usr/lib/cni"),
            with(&|c| {
                c["cniVersion"] = "1.0.0".into();
                c["cni.dev/valid-attachments"] = json!([]);
            }),
            1,
        ),
        (
            "STATUS before 1.1.0",
            plain_env("STATUS", ""),
            with(&|c| c["cniVersion"] = "0.4.0".into()),
            1,
        ),
        (
            "CHECK before 0.4.0",
            attach("CHECK"),
            with(&|c| c["cniVersion"] = "0.3.1".into()),
            1,
        ),
        (
            "GC without its list",
            plain_env("GC", "/usr/lib/cni"),
            good.to_string().into_bytes(),
            7,
        ),
        (
            "missing name",
            attach("ADD"),
            with(&|c| c["name"] = Value::Null),
            7,
        ),
        (
            "missing ipam",
            attach("ADD"),
            with(&|c| c["ipam"] = Value::Null),
            7,
        ),
        (
            "relative socket",
            attach("ADD"),
            with(&|c| c["ipam"]["socket"] = "ipam.sock".into()),
            7,
        ),
        (
            "zero nics",
            attach("ADD"),
            with(&|c| c["args"] = json!({"cni": {"nics": 0}})),
            7,
        ),
        (
            "missing CNI_CONTAINERID",
            no_container,
            good.to_string().into_bytes(),
            4,
        ),
        (
            "invalid CNI_IFNAME",
            bad_ifname,
            good.to_string().into_bytes(),
            4,
        ),
        (
            "ADD into a netns that is gone",
            gone("ADD"),
            good.to_string().into_bytes(),
            4,
        ),
        (
            "CHECK of a netns that is gone",
            gone("CHECK"),
            good.to_string().into_bytes(),
            4,
        ),
        (
            "unknown command",
            attach("FROB"),
            good.to_string().into_bytes(),
            4,
        ),
        (
            "malformed CNI_ARGS",
            {
                let mut e = attach("ADD");
                e.retain(|(k, _)| *k != "CNI_ARGS");
                e.push(("CNI_ARGS", "K8S_POD_NAME".into()));
                e
            },
            good.to_string().into_bytes(),
            4,
        ),
    ];
    for (what, env, stdin, code) in cases {
        let out = exec(&ipam_bin(), &env, &stdin, None);
        let (got, msg) = out.err();
        assert_eq!(got, code, "{what}: {msg}");
    }
    assert_eq!(daemon.request_count(), 0, "{:?}", daemon.requests());
}

/// ADD refuses a netns that is gone, naming it, before the daemon hears of
/// it; DEL must still release what an earlier ADD got (the spec: DEL
/// succeeds and frees IPAM resources even when the netns is gone).
#[test]
fn a_netns_that_is_gone_is_refused_by_add_but_del_still_releases() {
    let daemon = dual_stack_daemon();
    let c = conf("1.0.0", &daemon.socket);
    let env = |command: &str, netns: &str| attach_env(command, "c1", "net1", netns, "/usr/lib/cni");
    let (code, msg) = exec(
        &ipam_bin(),
        &env("ADD", GONE),
        c.to_string().as_bytes(),
        None,
    )
    .err();
    assert_eq!(code, 4, "{msg}");
    assert!(
        msg.contains(&format!("CNI_NETNS={GONE:?}")) && msg.contains("does not exist"),
        "{msg}"
    );
    assert_eq!(daemon.request_count(), 0, "{:?}", daemon.requests());

    run("ADD", "c1", &c).ok();
    assert_eq!(daemon.allocations().len(), 1);
    exec(
        &ipam_bin(),
        &env("DEL", GONE),
        c.to_string().as_bytes(),
        None,
    )
    .ok();
    assert!(
        daemon.allocations().is_empty(),
        "DEL released the addresses"
    );
}
