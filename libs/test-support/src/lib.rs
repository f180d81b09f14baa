//! What railyard's test trees share (route-daemon, ipam-plugin, the end-to-end
//! and Kubernetes tests): failing loudly without root, and private named
//! network namespaces with `ip` run in them. A dev-dependency only.

pub mod netns;
pub mod ports;

pub use netns::{ip, run_in_netns, NamedNetns, NetnsError};
pub use ports::{free_port, free_ports};

/// Fails (never skips) when not root: a green run without root would claim
/// kernel behaviour nobody checked. `package` goes into the hint
/// (`sudo -E cargo test -p <package>`).
pub fn require_root(package: &str) {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "needs root (effective uid is {euid}): these tests create network namespaces, \
         links and routes; run them as root, e.g. `sudo -E cargo test -p {package}`"
    );
}
