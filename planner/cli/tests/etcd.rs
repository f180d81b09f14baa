//! The `railyard` commands that talk to etcd, run as users run them, against a real
//! etcd (started by the test) and an in-process planner.

#[path = "../../tests/support/mod.rs"]
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
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
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
        h.nics[0].pci_address = Some("0000:3b:00.0".into());
        h.nics[0].pcie_root = Some("pci0000:3a".into());
        h.nics[0].numa_node = Some(1);
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
    assert!(d.contains("numa=1 pci=0000:3b:00.0 root=pci0000:3a"), "{d}");

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

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "must fail, printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `yaml` to a file of its own and returns its path.
fn manifest(dir: &tempfile::TempDir, name: &str, yaml: &str) -> String {
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write manifest");
    path.display().to_string()
}

fn net_yaml(name: &str, subnet: &str, host_block: u8) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  subnet: {subnet}\n  ipam: '{{\"hostBlock\": {host_block}, \"interfaceBlock\": 2}}'\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reports_the_planners_verdict_and_refuses_what_it_can_see() {
    let c = Cluster::start().await;
    let ep = c.etcd.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let first = manifest(&dir, "first", &net_yaml("first", "192.168.0.0/16", 6));

    // No planner yet: stored, but nobody judged it.
    let out = ok(&railyard(&ep, &["apply", "-f", &first]));
    assert!(
        out.contains("network/first created: pending (no planner"),
        "{out}"
    );

    let planner = c.planner(fast_config("p1", Duration::from_secs(600)));
    c.register(&host("h0", 0, 2), 60).await;
    wait_for(Duration::from_secs(10), "first planned", || async {
        c.status("first").await.filter(|s| s.hosts_planned == 1)
    })
    .await;
    assert_eq!(
        ok(&railyard(&ep, &["apply", "-f", &first])).trim(),
        "network/first configured"
    );

    // A pod holds an address: a hostBlock change is renumbering, refused.
    c.store
        .put(
            &railyard_core::keys::allocation("first", "h0", "c1", "net1-0"),
            b"{}".to_vec(),
            None,
        )
        .await
        .unwrap();
    let renumber = manifest(&dir, "renumber", &net_yaml("first", "192.168.0.0/16", 5));
    let err = failed(&railyard(&ep, &["apply", "-f", &renumber]));
    assert!(
        err.contains("network/first refused by the planner") && err.contains("host h0"),
        "{err}"
    );
    let s = c.status("first").await.unwrap();
    assert!(s.observed_revision > s.applied_revision, "{s:?}");
    // Forced: accepted.
    let out = ok(&railyard(&ep, &["apply", "-f", &renumber, "--force"]));
    assert_eq!(out.trim(), "network/first configured");

    // An overlapping network is refused before anything is written.
    let second = manifest(&dir, "second", &net_yaml("second", "192.168.128.0/17", 4));
    let err = failed(&railyard(&ep, &["apply", "-f", &second]));
    assert!(
        err.contains("network second") && err.contains("network first"),
        "{err}"
    );
    assert!(c
        .store
        .get(&railyard_core::keys::network("second"))
        .await
        .unwrap()
        .is_none());

    // A typo in the ipam block names the key.
    let typo = manifest(
        &dir,
        "typo",
        "metadata: {name: third}\nspec:\n  subnet: 10.50.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2, \"excludeCIDR\": [\"10.50.0.0/24\"]}'\n",
    );
    let err = failed(&railyard(&ep, &["apply", "-f", &typo]));
    assert!(err.contains("spec.ipam.excludeCIDR"), "{err}");

    // The planner stops answering: pending after --wait.
    planner.shutdown().await;
    let out = ok(&railyard(&ep, &["apply", "-f", &first, "--wait", "300ms"]));
    assert!(
        out.contains("pending (no planner answered in 0.3s)")
            || out.contains("pending (no planner is running"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_refuses_a_network_whose_pods_hold_addresses_unless_forced() {
    let c = Cluster::start().await;
    let ep = c.etcd.endpoint();
    let planner = c.planner(fast_config("p1", Duration::from_secs(600)));
    c.register(&host("h0", 0, 2), 60).await;
    c.apply("busy", r#"{"hostBlock": 6, "interfaceBlock": 2}"#, "")
        .await;
    wait_for(Duration::from_secs(10), "busy planned", || async {
        c.status("busy").await.filter(|s| s.hosts_planned == 1)
    })
    .await;
    for (h, ctr) in [("h0", "c1"), ("h0", "c2"), ("h1", "c3")] {
        c.store
            .put(
                &railyard_core::keys::allocation("busy", h, ctr, "net1-0"),
                b"{}".to_vec(),
                None,
            )
            .await
            .unwrap();
    }
    let err = failed(&railyard(&ep, &["delete", "network", "busy"]));
    assert!(
        err.contains("3 live allocation") && err.contains("h0: 2") && err.contains("h1: 1"),
        "{err}"
    );
    assert!(c.status("busy").await.is_some(), "nothing deleted");

    let out = ok(&railyard(&ep, &["delete", "network", "busy", "--force"]));
    assert!(
        out.contains("network/busy deleted") && out.contains("reserved"),
        "{out}"
    );
    // The planner removes the plan and keeps the range reserved.
    wait_for(Duration::from_secs(10), "tombstone", || async {
        c.store
            .get(&railyard_core::keys::tombstone("busy"))
            .await
            .unwrap()
            .filter(|_| true)
    })
    .await;
    wait_for(Duration::from_secs(10), "plan removed", || async {
        c.plan_hosts("busy").await.is_empty().then_some(())
    })
    .await;
    planner.shutdown().await;
}
