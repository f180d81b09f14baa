//! Rail interfaces as a port: the VLAN sub-interfaces and bonds a network's
//! `spec.ifacer` asks for (as Spiderpool's ifacer makes them), listed and made
//! one step at a time. What to do is decided by the pure planner in
//! `daemon::reconciler::ifacer`; this port only lists links and carries out a
//! step, so the decision is tested without a kernel and both implementations
//! run one conformance suite (`kernel::conformance`).
//!
//! # Ownership
//!
//! A link the daemon makes gets the alias `railyard:ifacer <network>`
//! ([`IFACER_ALIAS_PREFIX`]), for operators to see who made it. Unlike a
//! gateway shim, an ifacer link is never deleted, by the daemon or by this
//! port: once it holds the host's rail address, removing it would take the
//! rail away, so removing `ifacer` from a spec leaves the links (as
//! Spiderpool's ifacer leaves them). A link of a wanted name that is the
//! wrong kind (or a VLAN of another parent or id) is someone else's, and the
//! planner never emits a step that changes it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::{BondMode, BondOptions, IfName};

use crate::error::Result;

/// An ifacer link's alias is this followed by its network's name.
pub const IFACER_ALIAS_PREFIX: &str = "railyard:ifacer ";

/// The alias of a link made for `network`.
pub fn ifacer_alias(network: &str) -> String {
    format!("{IFACER_ALIAS_PREFIX}{network}")
}

/// What kind of link, as far as the ifacer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkKind {
    /// An 802.1Q VLAN: its parent (`None` when the kernel names one we cannot
    /// see, e.g. in another namespace) and id.
    Vlan {
        parent: Option<IfName>,
        id: u16,
    },
    Bond,
    /// Anything else: a NIC, a veth, a bridge...
    Other,
}

/// A link as the ifacer planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RailLink {
    pub name: IfName,
    pub kind: LinkKind,
    /// The bond (or bridge...) it is enslaved to.
    pub controller: Option<IfName>,
    pub alias: Option<String>,
    /// Administratively up (`ip link set up`).
    pub up: bool,
    /// Global addresses (link-local ones left out), sorted.
    pub addresses: Vec<IpNet>,
    /// A default route (main table, either family) leaves through it: it may be
    /// the host's management NIC, never to be enslaved.
    pub default_route: bool,
}

impl RailLink {
    /// Whether the alias says railyard's ifacer made it.
    pub fn ours(&self) -> bool {
        self.alias
            .as_deref()
            .is_some_and(|a| a.starts_with(IFACER_ALIAS_PREFIX))
    }
}

/// One change to the host's links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStep {
    /// `ip link add NAME type bond mode MODE [miimon..]`, alias set, left down.
    CreateBond {
        name: IfName,
        mode: BondMode,
        options: BondOptions,
        network: String,
    },
    /// `ip link set SLAVE down; ip link set SLAVE master BOND; ip link set SLAVE
    /// up`: the bonding driver refuses a slave that is up.
    Enslave { slave: IfName, bond: IfName },
    /// `ip link add link PARENT name NAME type vlan id ID`, alias set, left down.
    CreateVlan {
        name: IfName,
        parent: IfName,
        id: u16,
        network: String,
    },
    /// Adds `address` to `to` (IPv6 without duplicate address detection: the
    /// host already held it), then deletes it from `from`. In that order, so
    /// the host never is without its rail address; either half already done
    /// counts as done.
    MoveAddress {
        address: IpNet,
        from: IfName,
        to: IfName,
    },
    /// `ip link set NAME up`.
    SetUp { name: IfName },
}

impl fmt::Display for LinkStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkStep::CreateBond {
                name,
                mode,
                options,
                network,
            } => {
                write!(f, "create bond {name} mode {mode}")?;
                for (k, v) in [
                    ("miimon", options.miimon),
                    ("updelay", options.updelay),
                    ("downdelay", options.downdelay),
                ] {
                    if let Some(v) = v {
                        write!(f, " {k} {v}")?;
                    }
                }
                write!(f, " (network {network})")
            }
            LinkStep::Enslave { slave, bond } => write!(f, "enslave {slave} to bond {bond}"),
            LinkStep::CreateVlan {
                name,
                parent,
                id,
                network,
            } => write!(
                f,
                "create vlan {name} id {id} on {parent} (network {network})"
            ),
            LinkStep::MoveAddress { address, from, to } => {
                write!(f, "move {address} from {from} to {to}")
            }
            LinkStep::SetUp { name } => write!(f, "set {name} up"),
        }
    }
}

/// What [`RailLinks::apply_link_step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Done,
    /// The kernel cannot do it now (a link missing, a name taken since the
    /// listing, no VLAN or bonding support); the reason, naming the link. A
    /// failure to retry, not an error that stops the daemon.
    Refused(String),
}

/// The host's links, for the ifacer: the netlink backend or an in-memory fake,
/// both checked by `kernel::conformance`.
#[async_trait]
pub trait RailLinks: Send + Sync {
    /// Every link of the host, sorted by name.
    async fn rail_links(&self) -> Result<Vec<RailLink>>;
    /// Carries out one step. Never deletes a link.
    async fn apply_link_step(&self, step: &LinkStep) -> Result<StepOutcome>;
}

#[async_trait]
impl<T: RailLinks + ?Sized> RailLinks for Arc<T> {
    async fn rail_links(&self) -> Result<Vec<RailLink>> {
        (**self).rail_links().await
    }

    async fn apply_link_step(&self, step: &LinkStep) -> Result<StepOutcome> {
        (**self).apply_link_step(step).await
    }
}
