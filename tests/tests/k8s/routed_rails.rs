//! The routed-rails component (deploy/kubernetes/routed-rails): rendered by
//! the real kustomize (kubectl's) over the shipped manifests, the DaemonSet
//! runs a BIRD beside the route-daemon, both on one shared directory whose
//! config and socket paths are the ones the daemon is told, and the real API
//! server accepts it (a server-side dry run). No kubelet runs here, so the
//! pod itself does not start (docs/design/routed-rails.md).

use railyard_e2e::kube::upstream;
use serde_json::Value;

use crate::common::env;

/// `kubectl kustomize` of an overlay of deploy/kubernetes with the component.
fn render() -> String {
    let [kubectl] = upstream::require(["kubectl"]).unwrap_or_else(|e| panic!("{e}"));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // kustomize takes relative paths only, and no overlay inside its base.
    let overlay = root.join("target").join("routed-rails-overlay");
    std::fs::create_dir_all(&overlay).expect("overlay dir");
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../../deploy/kubernetes]\ncomponents: [../../deploy/kubernetes/routed-rails]\n",
    )
    .expect("overlay");
    let out = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(&overlay)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn daemonset(rendered: &str) -> Value {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(rendered)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .find(|d| d["kind"] == "DaemonSet" && d["metadata"]["name"] == "railyard-route-daemon")
        .expect("the route-daemon DaemonSet")
}

#[test]
fn the_component_runs_bird_beside_the_daemon_on_the_paths_it_is_told() {
    let rendered = render();
    let ds = daemonset(&rendered);
    let pod = &ds["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["route-daemon", "bird"]);
    let (daemon, bird) = (&containers[0], &containers[1]);
    let args: Vec<&str> = daemon["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("--{name} missing from {args:?}"))
    };
    let (config, socket) = (flag("bird-config"), flag("bird-socket"));
    // The shipped flags are kept.
    assert!(args.contains(&"--leak-grace=15m"), "{args:?}");
    // BIRD runs under its guard, on the daemon's paths, silent for at most
    // the planner's grace (10m: the shipped planner does not set --grace).
    let command: Vec<&str> = bird["command"]
        .as_array()
        .expect("the bird command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        command,
        [
            "railyard-bird-guard",
            &format!("--bird-config={config}"),
            &format!("--bird-socket={socket}"),
            "--silent-after=10m",
        ]
    );
    let planner = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/planner.yaml"),
    )
    .expect("planner.yaml");
    assert!(
        !planner.contains("--grace"),
        "the planner sets --grace: keep --silent-after at most it"
    );
    let bins = railyard_e2e::bins::for_tests().unwrap_or_else(|e| panic!("{e}"));
    let help = std::process::Command::new(bins.join("railyard-planner"))
        .arg("--help")
        .output()
        .expect("railyard-planner --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let grace = help
        .split("--grace")
        .nth(1)
        .and_then(|h| h.split("--").next())
        .unwrap_or_default();
    assert!(
        grace.contains("[default: 10m]"),
        "the planner's --grace default moved: {grace}"
    );
    // The image holds the guard (deploy/Dockerfile copies it).
    let dockerfile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile"),
    )
    .expect("Dockerfile");
    assert!(
        dockerfile.contains("/src/target/release/railyard-bird-guard"),
        "deploy/Dockerfile does not copy railyard-bird-guard"
    );
    // One emptyDir, mounted where both paths live, in both containers.
    let dir = std::path::Path::new(config).parent().expect("a directory");
    assert_eq!(std::path::Path::new(socket).parent(), Some(dir));
    for c in [daemon, bird] {
        let mounted = c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["name"] == "bird" && m["mountPath"] == dir.to_str().unwrap());
        assert!(mounted, "{} lacks the bird mount: {c}", c["name"]);
    }
    assert!(pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .any(|v| v["name"] == "bird" && v["emptyDir"].is_object()));
    // BIRD gets port 179 and nothing else; the images agree.
    assert_eq!(
        bird["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_BIND_SERVICE"])
    );
    assert_eq!(bird["image"], daemon["image"]);

    // The real API server accepts the rendered DaemonSet.
    let one = serde_yaml::to_string(&ds).expect("yaml");
    env()
        .kubectl
        .run_with(&["apply", "--dry-run=server", "-f", "-"], &one)
        .unwrap_or_else(|e| panic!("the API server refuses the DaemonSet: {e}"));
}
