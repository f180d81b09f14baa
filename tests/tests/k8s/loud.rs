//! Missing pieces fail loudly, saying what to run: `railyard-kube up` without the
//! upstream binaries or without etcd, as a user on a fresh machine meets it.
//! Run as a subprocess so the environment override stays out of this process
//! (the other tests share it).

use std::process::Command;

fn up_with(var: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_railyard-kube"))
        .args(["up", "--state"])
        .arg(dir.path().join("plane"))
        .env(var, "/nonexistent/railyard-upstream")
        .output()
        .expect("run railyard-kube");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_upstream_binaries_name_themselves_and_make_deps() {
    let (ok, stderr) = up_with("RAILYARD_UPSTREAM_BIN");
    assert!(!ok, "up succeeded without its binaries");
    for want in [
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
        "make deps",
    ] {
        assert!(stderr.contains(want), "{want} not named: {stderr}");
    }
}

#[test]
fn a_missing_etcd_says_make_deps() {
    let (ok, stderr) = up_with("RAILYARD_ETCD_BIN");
    assert!(!ok, "up succeeded without etcd");
    assert!(
        stderr.contains("/nonexistent/railyard-upstream") && stderr.contains("make deps"),
        "{stderr}"
    );
}

#[test]
fn down_without_a_plane_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_railyard-kube"))
        .args(["down", "--state"])
        .arg(dir.path())
        .output()
        .expect("run railyard-kube");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no control plane recorded"));
}
