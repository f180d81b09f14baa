//! Running the tools the cluster is built with (`ip`, `sysctl`, the railyard
//! CLI). Failures carry the command line and the tool's own message.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// The text to show for a failed command: stderr, else stdout, else the status.
pub fn failure_text(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !err.is_empty() {
        return err;
    }
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !stdout.is_empty() {
        return stdout;
    }
    out.status.to_string()
}

/// Runs `cmd` to completion with `stdin` (if any); its stdout on success.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<String> {
    let command = describe(cmd);
    let spawn_error = |e: std::io::Error| Error::Command {
        command: command.clone(),
        output: format!("cannot run it: {e}"),
    };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_error)?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).map_err(spawn_error)?;
    }
    let out = child.wait_with_output().map_err(spawn_error)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command,
            output: failure_text(&out),
        })
    }
}

/// `ip <args>` in the root namespace.
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args), None)
}

/// `ip -n <ns> <args>`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    run(Command::new("ip").arg("-n").arg(ns).args(args), None)
}

/// Many `ip` commands in one process (`ip -batch`): building ten hosts is a few
/// hundred commands, and one process each costs more than the kernel work.
pub fn ip_batch(ns: Option<&str>, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.arg("-n").arg(ns);
    }
    cmd.args(["-batch", "-"]);
    let script = lines.join("\n") + "\n";
    run(&mut cmd, Some(script.as_bytes())).map(|_| ())
}

/// Sets sysctls (`key=value`) inside namespace `ns` by writing /proc/sys from a
/// shell in it (no dependency on procps' `sysctl`, absent from minimal images).
pub fn sysctl_in(ns: &str, settings: &[&str]) -> Result<()> {
    let script: Vec<String> = settings
        .iter()
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| format!("echo {v} > /proc/sys/{}", k.replace('.', "/")))
        .collect();
    run(
        Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-ec"])
            .arg(script.join("\n")),
        None,
    )
    .map(|_| ())
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// `ip netns add` that tolerates nothing: a namespace already there belongs to
/// someone else (or to a cluster whose state was lost), so it is an error.
pub fn netns_add(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip_in(name, &["link", "set", "lo", "up"]).map(|_| ())
}

/// Deletes a namespace; one already gone is fine (down is idempotent).
pub fn netns_del(name: &str) -> Result<()> {
    if !netns_exists(name) {
        return Ok(());
    }
    ip(&["netns", "del", name]).map(|_| ())
}

pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Deletes a root-namespace link and waits until it is gone; one already gone
/// (or going: the kernel tears a deleted namespace's veth peers down in the
/// background) is fine.
pub fn link_del(name: &str) -> Result<()> {
    if link_exists(name) {
        match ip(&["link", "del", name]) {
            Ok(_) => {}
            // Gone between the check and the delete: named ("Cannot find
            // device") or by index ("No such device"), both mean done.
            Err(Error::Command { output, .. })
                if output.contains("Cannot find device") || output.contains("No such device") => {}
            Err(e) => return Err(e),
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while link_exists(name) {
        if std::time::Instant::now() > deadline {
            return Err(Error::Refused(format!(
                "link {name} is still there 10 s after deletion"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}
