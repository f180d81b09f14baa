//! Gateway shims as a port: the one kind of link the daemon creates.
//!
//! A macvlan pod sits on its rail NIC's L2 segment, but a macvlan parent cannot
//! exchange frames with its own children. Without help the pod cannot reach the
//! host (its gateway), and traffic routed to the pod's block arrives on the NIC
//! with no way on to the pod. A *gateway shim* is a sibling macvlan (bridge
//! mode) on the rail NIC holding the block's gateway address: the pods' gateway
//! on their own segment, and the connected route that carries the host's
//! forwarded traffic to them. `docs/design/data-paths.md` has the reasons and
//! the invariants; the decision of which shims a host needs is in
//! `daemon::reconciler::shims`.
//!
//! # Ownership is a name prefix and an alias
//!
//! Links carry no protocol number, so a shim is railyard's when its name starts
//! with [`SHIM_PREFIX`] *and* its alias (`ip link show` prints it) starts with
//! [`SHIM_ALIAS_PREFIX`]. A link with either missing is someone else's: listed
//! as nobody's, never changed, never deleted, and a wanted shim whose name it
//! holds is a [`Ensured::Conflict`]. The kernel ignores an alias in the request
//! that creates a link, so the alias is set right after; if that fails, the
//! link just made is deleted again. Only a crash between the two requests can
//! leave a `ry-` link without the alias, and that is reported as a conflict
//! for an operator to remove, never adopted.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::IfName;

use crate::error::Result;

/// Every shim's name starts with this; so does every other `ry-` device the
/// NIC discovery already leaves out (`discovery::filter`).
pub const SHIM_PREFIX: &str = "ry-";

/// A shim's alias is this followed by its network's name.
pub const SHIM_ALIAS_PREFIX: &str = "railyard:";

/// A shim as the daemon wants it: a macvlan (bridge mode) child of `parent`,
/// up, with MAC address `mac`, holding `addresses` (IPv6 ones without
/// duplicate address detection).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shim {
    pub name: IfName,
    pub parent: IfName,
    /// Fixed rather than the kernel's random one, so a shim made again (after
    /// an operator deleted it, or its NIC came back) answers at the MAC the
    /// pods' neighbour caches hold: a new one would cut them off until their
    /// entries time out (IPv6: 15 to 45 s).
    pub mac: [u8; 6],
    /// The network it serves; goes into the alias, for operators.
    pub network: String,
    /// Sorted, each with its block's prefix length (so the kernel makes the
    /// connected route to the block through the shim).
    pub addresses: Vec<IpNet>,
}

impl Shim {
    /// The alias that marks the link as railyard's.
    pub fn alias(&self) -> String {
        format!("{SHIM_ALIAS_PREFIX}{}", self.network)
    }
}

impl fmt::Display for Shim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (macvlan on {}, {}, network {}",
            self.name,
            self.parent,
            format_mac(&self.mac),
            self.network
        )?;
        for a in &self.addresses {
            write!(f, ", {a}")?;
        }
        f.write_str(")")
    }
}

/// One of our shims as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimState {
    pub name: IfName,
    /// `None` when the parent is gone (the kernel then removes the shim too) or
    /// the link is not a bridge-mode macvlan any more.
    pub parent: Option<IfName>,
    pub mac: [u8; 6],
    pub up: bool,
    /// Global addresses, sorted (the kernel's IPv6 link-local one is left out).
    pub addresses: Vec<IpNet>,
}

/// What [`GatewayShims::ensure_shim`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// Already as wanted.
    Unchanged,
    Created,
    /// Ours but not as wanted (down, another MAC, addresses missing or extra,
    /// another parent or mode); put right.
    Repaired,
    /// A link that is not ours holds the name; left alone.
    Conflict,
    /// The kernel cannot have it now (the parent NIC does not exist); the
    /// reason, with the device named. Like a refused route, a failure to retry,
    /// not an error that stops the others.
    Refused(String),
}

/// The shims railyard keeps on a host's rail NICs: the netlink backend or an
/// in-memory fake, both checked by `kernel::conformance`.
#[async_trait]
pub trait GatewayShims: Send + Sync {
    /// Our shims (see the module doc for what makes one ours), sorted by name.
    async fn owned_shims(&self) -> Result<Vec<ShimState>>;
    /// Makes the link exist as `shim` says, creating or repairing ours; never
    /// touches a link that is not ours.
    async fn ensure_shim(&self, shim: &Shim) -> Result<Ensured>;
    /// Deletes our shim `name`; true when there was one. A link of that name
    /// that is not ours stays (false).
    async fn remove_shim(&self, name: &IfName) -> Result<bool>;
}

#[async_trait]
impl<T: GatewayShims + ?Sized> GatewayShims for Arc<T> {
    async fn owned_shims(&self) -> Result<Vec<ShimState>> {
        (**self).owned_shims().await
    }

    async fn ensure_shim(&self, shim: &Shim) -> Result<Ensured> {
        (**self).ensure_shim(shim).await
    }

    async fn remove_shim(&self, name: &IfName) -> Result<bool> {
        (**self).remove_shim(name).await
    }
}

/// Whether a link of this name and alias is one of ours.
pub fn is_ours(name: &str, alias: Option<&str>) -> bool {
    name.starts_with(SHIM_PREFIX) && alias.is_some_and(|a| a.starts_with(SHIM_ALIAS_PREFIX))
}

/// `aa:bb:cc:dd:ee:ff`, as `ip link` prints it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
