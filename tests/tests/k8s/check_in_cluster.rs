//! The in-cluster connection check of deploy/kubernetes/check.yaml: a check
//! agent per node (a DaemonSet) and a Job that has every agent probe every
//! other on every rail, through the real API server and the real Multus.
//!
//! What is real: the manifest, applied as shipped with kubectl (the API server
//! validates the DaemonSet and the Job, and Pod Security admission, `restricted`
//! in the namespace, admits their pods); the pods made from the DaemonSet's and
//! the Job's own pod templates; Multus attaching each pod to the network; the
//! Job's command and arguments, run as its ServiceAccount bound by
//! check-rbac.yaml and check.yaml; every probe and transfer over the rails.
//!
//! What is simulated, because no kubelet runs here: the DaemonSet controller
//! and the scheduler (one agent Pod per host is created from the template with
//! `nodeName` set), and the kubelet (it makes each sandbox, a network
//! namespace, runs Multus ADD, then runs the container's command there; the
//! Job's token comes from `kubectl create token`, not a projected volume). A
//! forwarder stands in for the `kubernetes` Service inside the Job's pod.
//!
//! Needs root. Management id 246.

use std::process::{Child, Command, Stdio};

use railyard_e2e::kube::identity;
use serde_json::Value;

use crate::demo::Demo;

const NAMESPACE: &str = "railyard-check";

/// The manifest's objects, as JSON.
fn manifest() -> Vec<Value> {
    let path = identity::manifests_dir().join("check.yaml");
    let text = std::fs::read_to_string(&path).expect("read check.yaml");
    text.split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|doc| serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("check.yaml: {e}")))
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("check.yaml has no {kind}"))
}

/// A Pod named `name` from a workload's pod template, as its controller makes it.
fn pod_from(template: &Value, name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"],
                     "annotations": template["metadata"]["annotations"]},
        "spec": template["spec"],
    })
}

/// The container's command line, as the kubelet runs it.
fn command_line(template: &Value) -> Vec<String> {
    let c = &template["spec"]["containers"][0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut line = strings(&c["command"]);
    line.extend(strings(&c["args"]));
    line
}

/// `line` (its program from the binaries under test) inside `netns`.
fn in_pod(netns: &str, line: &[String], bin_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(bin_dir.join(&line[0]))
        .args(&line[1..]);
    cmd
}

struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_check_job_probes_every_agent_on_every_rail_and_reports_a_broken_rail() {
    let mut demo = Demo::up("k8s-cc", 246, NAMESPACE);
    let d = demo.get();
    let bin_dir = d.cluster.spec().bin_dir.clone();
    let objects = manifest();
    let text = std::fs::read_to_string(identity::manifests_dir().join("check.yaml"))
        .expect("read check.yaml");
    d.kubectl
        .apply(&text)
        .unwrap_or_else(|e| panic!("apply check.yaml: {e}"));

    // One agent per host from the DaemonSet's template, attached by Multus.
    let agent_template = &object(&objects, "DaemonSet")["spec"]["template"];
    let hosts = d.cluster.spec().hosts;
    let agents: Vec<(Value, usize)> = (0..hosts)
        .map(|h| (pod_from(agent_template, &format!("agent-{h}")), h))
        .collect();
    let (agents, _) = d
        .attach_pods(agents, 2)
        .unwrap_or_else(|e| panic!("attach the agents: {e}"));
    let agent_line = command_line(agent_template);
    let _running = Agents(
        agents
            .iter()
            .map(|a| {
                in_pod(&a.netns, &agent_line, &bin_dir)
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start an agent")
            })
            .collect(),
    );

    // The Job's pod, on host 0, runs the check as its ServiceAccount.
    let job_template = &object(&objects, "Job")["spec"]["template"];
    let (checker, _) = d
        .attach_pods(vec![(pod_from(job_template, "check-run"), 0)], 1)
        .unwrap_or_else(|e| panic!("attach the check's pod: {e}"));
    let checker = &checker[0];
    d.reach_api_from(&checker.netns)
        .unwrap_or_else(|e| panic!("{e}"));
    let account = job_template["spec"]["serviceAccountName"]
        .as_str()
        .expect("the Job names its ServiceAccount");
    let kubeconfig = d
        .kubeconfig_of(NAMESPACE, account)
        .unwrap_or_else(|e| panic!("{e}"));
    let job_line = command_line(job_template);
    let run_check = || {
        let out = in_pod(&checker.netns, &job_line, &bin_dir)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("run the check");
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), format!("{table}\n{log}"))
    };

    // 2 agents, each probing the other on 2 rails: 4 probes, all connected,
    // and a transfer per rail.
    let (ok, table) = run_check();
    eprintln!("{table}");
    assert!(ok, "the in-cluster check failed:\n{table}");
    assert!(table.contains("4 of 4 probes connected"), "{table}");
    assert!(table.contains("host paths not checked"), "{table}");
    for rail in [0, 1] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("{rail}  agent-")) && l.ends_with("Mbit/s")),
            "no transfer on rail {rail}:\n{table}"
        );
    }

    // Rail 1 of agent-1 broken: its probes on rail 1, both ways, fail, and
    // the check says so (and exits non-zero, failing the Job).
    let broken = &agents[1].netns;
    let status = Command::new("ip")
        .args(["-n", broken, "link", "set", "net1-1", "down"])
        .status()
        .expect("ip link");
    assert!(status.success());
    let (ok, table) = run_check();
    eprintln!("{table}");
    assert!(!ok, "a broken rail must fail the check:\n{table}");
    assert!(table.contains("2 of 4 probes connected"), "{table}");
}
