//! Where the railyard binaries are. `cargo test --workspace` builds every binary
//! of the workspace before running any test (the planner, route-daemon and
//! ipam-plugin packages have integration tests, which makes cargo build their
//! binaries), next to the test executables: `target/<profile>/`. Cargo offers no
//! `CARGO_BIN_EXE_*` for other packages' binaries (artifact dependencies are
//! unstable), and a test cannot run `cargo build` itself (cargo holds the build
//! lock while tests run), so the tests look there and fail with the command to
//! run when something is missing.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Every binary a local cluster runs.
pub const REQUIRED: [&str; 5] = [
    "railyard",
    "railyard-planner",
    "railyard-route-daemon",
    "railyard-cni",
    "railyard-ipam",
];

/// The reference CNI plugins the pods use.
pub const CNI_PLUGINS: [&str; 3] = ["ptp", "macvlan", "static"];

/// Checks that `dir` holds every railyard binary.
pub fn check_dir(dir: &Path) -> Result<()> {
    check_files(dir, &REQUIRED, |missing| {
        format!(
            "{missing} not found in {}: build them first (`cargo build --bins`, or \
             `cargo build --release --bins` for a release dir)",
            dir.display()
        )
    })
}

/// Checks the reference plugins in `dir` (Debian: containernetworking-plugins).
pub fn check_cni_dir(dir: &Path) -> Result<()> {
    check_files(dir, &CNI_PLUGINS, |missing| {
        format!(
            "reference CNI plugins {missing} not found in {} (install containernetworking-plugins)",
            dir.display()
        )
    })
}

/// `Error::Missing` with `message(list of missing names)` unless every file exists.
fn check_files(dir: &Path, names: &[&str], message: impl FnOnce(&str) -> String) -> Result<()> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Missing(message(&missing.join(", "))))
    }
}

/// The directory of the binaries for tests: `$RAILYARD_BIN_DIR`, else the
/// profile dir the running test executable was built into
/// (`target/debug/deps/e2e-<hash>` -> `target/debug`).
pub fn for_tests() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RAILYARD_BIN_DIR") {
        let dir = PathBuf::from(dir);
        check_dir(&dir)?;
        return Ok(dir);
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::Missing(format!("cannot locate the test executable: {e}")))?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Missing(format!("{} has no profile dir", exe.display())))?;
    let hint = "`cargo test --workspace` builds them; with `cargo test -p railyard-e2e` \
                run `cargo build --bins` first (or set RAILYARD_BIN_DIR)";
    check_dir(&dir).map_err(|e| Error::Missing(format!("{e}. {hint}")))?;
    let stale = stale(&dir);
    if !stale.is_empty() {
        return Err(Error::Missing(format!(
            "binaries older than their sources in {}: {}. {hint}",
            dir.display(),
            stale.join(", ")
        )));
    }
    Ok(dir)
}

/// The source directories (relative to the workspace) each binary is built
/// from, for the staleness check.
const SOURCES: [(&str, &[&str]); 6] = [
    (
        "railyard",
        &["planner/cli/src", "libs/core/src", "libs/store/src"],
    ),
    (
        "railyard-planner",
        &[
            "planner/src",
            "planner/k8s/src",
            "libs/core/src",
            "libs/store/src",
        ],
    ),
    (
        "railyard-route-daemon",
        &[
            "route-daemon/src",
            "route-daemon/allocdb/src",
            "libs/core/src",
            "libs/store/src",
        ],
    ),
    // Routed fabrics only (not in REQUIRED: older releases lack it).
    (
        "railyard-bird-guard",
        &["route-daemon/src", "libs/store/src"],
    ),
    ("railyard-cni", &["ipam-plugin/src", "libs/core/src"]),
    ("railyard-ipam", &["ipam-plugin/src", "libs/core/src"]),
];

/// Binaries in `dir` older than a source file they are built from: with
/// `cargo test -p railyard-e2e` nothing rebuilds them, and testing yesterday's
/// daemon would pass or fail for the wrong reasons. Skipped when the sources are
/// not where this crate was built from.
fn stale(dir: &Path) -> Vec<String> {
    let Some(root) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() else {
        return Vec::new();
    };
    let mtime = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    SOURCES
        .iter()
        .filter_map(|(bin, srcs)| {
            let built = mtime(&dir.join(bin))?;
            let newest = srcs
                .iter()
                .filter_map(|s| newest_file(&root.join(s)))
                .max()?;
            (newest > built).then(|| (*bin).to_owned())
        })
        .collect()
}

/// The newest modification time of a `.rs` file under `dir`.
fn newest_file(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_file(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            entry.metadata().and_then(|m| m.modified()).ok()
        } else {
            None
        };
        newest = newest.max(t);
    }
    newest
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
