//! A shell loop per test-owned process that kills it when the test process dies
//! without dropping its control plane (a panic in a static, SIGKILL, Ctrl-C of
//! `cargo test`): the processes run in their own process groups, so nothing else
//! would stop them, and a leaked API server keeps its ports and its etcd.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts the loop for `pid`; when this process is gone it sends SIGTERM, then
/// SIGKILL, and removes `remove` (the plane's directory) if given.
pub fn guard(pid: u32, remove: Option<&Path>) -> Option<Child> {
    let script = r#"
        while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
        if ! kill -0 "$1" 2>/dev/null; then
            kill "$2" 2>/dev/null; sleep 2; kill -9 "$2" 2>/dev/null
            if [ -n "$3" ]; then rm -rf "$3"; fi
        fi"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("railyard-kube-watchdog")
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .arg(remove.map(|p| p.display().to_string()).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}
