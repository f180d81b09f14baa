//! Named network namespaces for tests, removed on drop (also on panic):
//! `railyard_test_support`'s, with `path()` as the string `CNI_NETNS` takes.

use std::ops::Deref;

use railyard_test_support::NamedNetns;

pub use railyard_test_support::netns::ip_binary;

/// Fails (never skips) without root: a skipped data-path test reads as
/// green in CI while proving nothing.
pub fn require_root() {
    railyard_test_support::require_root("railyard-ipam-plugin");
}

/// A private netns (`addrs`, `links`, `gateway_routes` and the rest through
/// `Deref`).
pub struct Netns(NamedNetns);

impl Netns {
    /// `role` makes names readable in `ip netns list` if a test is killed.
    pub fn new(role: &str) -> Netns {
        Netns(NamedNetns::private(role))
    }

    pub fn path(&self) -> String {
        self.0.path().display().to_string()
    }

    /// `ip -n <name> <args>`, panicking with ip's message.
    pub fn ip(&self, args: &[&str]) -> String {
        self.0.ip_ok(args)
    }
}

impl Deref for Netns {
    type Target = NamedNetns;
    fn deref(&self) -> &NamedNetns {
        &self.0
    }
}

/// A "host" netns with two rail NICs, `ry-h0a` (192.168.0.1/24, rail 0)
/// and `ry-h0b` (192.168.64.1/24, rail 1), each one end of a veth pair.
pub fn two_rail_host() -> Netns {
    let host = Netns::new("host");
    for (nic, addr) in [("ry-h0a", "192.168.0.1/24"), ("ry-h0b", "192.168.64.1/24")] {
        let peer = format!("{nic}-x");
        host.ip(&["link", "add", nic, "type", "veth", "peer", "name", &peer]);
        host.ip(&["addr", "add", addr, "dev", nic]);
        host.ip(&["link", "set", nic, "up"]);
        host.ip(&["link", "set", &peer, "up"]);
    }
    host
}
