//! The `railyard` commands that talk to etcd, run as users run them, against a real
//! etcd (started by the test) and an in-process planner.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::{fast_config, host, wait_for, Cluster};

fn railyard(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_railyard"))
        .args(args)
        .args(["--etcd-endpoints", endpoint])
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("railyard runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_describe_delete() {
    let c = Cluster::start().await;
    let ep = c.etcd.endpoint();
    let planner = c.planner(fast_config("p1", Duration::from_secs(600)));
    for (n, name) in ["node-a", "node-b"].iter().enumerate() {
        let mut h = host(name, n as u32, 2);
        h.nics[0].addresses = vec![format!("10.0.1.{}/24", 11 + n).parse().unwrap()];
        h.nics[1].addresses = vec![format!("10.0.2.{}/24", 11 + n).parse().unwrap()];
        c.register(&h, 60).await;
    }
    let out = ok(&railyard(
        &ep,
        &["apply", "-f", "docs/examples/network.yaml"],
    ));
    assert_eq!(out.trim(), "network/multi-nic-sample created");
    wait_for(Duration::from_secs(10), "planned", || async {
        c.status("multi-nic-sample")
            .await
            .filter(|s| s.hosts_planned == 2)
    })
    .await;

    let v: Value =
        serde_json::from_str(&ok(&railyard(&ep, &["get", "networks", "-o", "json"]))).unwrap();
    assert_eq!(v[0]["name"], "multi-nic-sample");
    assert_eq!(v[0]["status"]["condition"], "Ready");
    assert_eq!(v[0]["status"]["capacity"]["hostsFree"], 62);
    let table = ok(&railyard(&ep, &["get", "networks"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("multi-nic-sample") && table.contains("Ready"),
        "{table}"
    );

    let plan: Value = serde_json::from_str(&ok(&railyard(
        &ep,
        &["get", "plan", "multi-nic-sample", "-o", "json"],
    )))
    .unwrap();
    assert_eq!(
        plan["networks"][0]["hosts"][1]["blocks"][1]["cidr"],
        "192.168.65.0/24"
    );
    let hosts = ok(&railyard(&ep, &["get", "hosts"]));
    assert!(
        hosts.contains("node-b") && hosts.contains("eth1=10.0.2.12/24"),
        "{hosts}"
    );
    assert_eq!(ok(&railyard(&ep, &["get", "leader"])).trim(), "p1");

    let d = ok(&railyard(&ep, &["describe", "host", "node-a"]));
    assert!(d.contains("Network multi-nic-sample: index 0"), "{d}");
    assert!(d.contains("192.168.1.0/24 via 10.0.1.12 dev eth0"), "{d}");
    assert!(d.contains("allocations: 0"), "{d}");

    let missing = railyard(&ep, &["describe", "host", "ghost"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("\"ghost\" not found"));

    assert_eq!(
        ok(&railyard(&ep, &["delete", "network", "multi-nic-sample"])).trim(),
        "network/multi-nic-sample deleted"
    );
    wait_for(Duration::from_secs(10), "plan removed", || async {
        c.plan_hosts("multi-nic-sample")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(c.status("multi-nic-sample").await.is_none());
    let again = railyard(&ep, &["delete", "network", "multi-nic-sample"]);
    assert!(!again.status.success());
    planner.shutdown().await;
}

#[test]
fn unreachable_etcd_is_a_clear_error() {
    let out = railyard("http://127.0.0.1:1", &["get", "networks"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("unavailable"),
        "{err}"
    );
}
