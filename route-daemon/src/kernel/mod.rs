//! The kernel port: what the daemon needs from a kernel's routing tables
//! ([`RouteTable`]), policy rules ([`PolicyRules`]) and the gateway shims it
//! keeps on rail NICs for macvlan pods ([`GatewayShims`]), together [`Kernel`]. Two
//! implementations: [`netlink::NetlinkRoutes`] over rtnetlink, and
//! [`memory::MemoryRoutes`], the in-memory kernel the daemon's loop and other
//! crates' tests run on without root. Both pass one suite, `conformance` (behind
//! the cargo feature of that name), so the fake is only as lenient as the kernel.
//!
//! # Ownership is a protocol number
//!
//! Everything railyard writes, routes and rules, carries [`RAILYARD_PROTOCOL`];
//! anything with another protocol belongs to someone else (an operator, DHCP, a
//! BGP daemon, the kernel itself) and is never changed. Reading returns every
//! route of a table, ours and foreign, because a foreign route at a destination
//! we want is a conflict to report, not a route to take over. There is no local
//! state to lose: a restarted daemon finds its routes and rules by their protocol.
//!
//! # No flush
//!
//! A table is never flushed. The daemon applies a diff ([`RouteTable::apply`]):
//! adds are exclusive (a destination taken by a foreign route since the read is a
//! conflict, not a replace), replaces happen only where the read showed our
//! route, and deletes name our protocol, next hop and device, so they cannot hit
//! someone else's route. Pods keep their traffic through every change, and a
//! wrong belief can cost a retry but never a foreign route.
//!
//! # Rules remember the tables
//!
//! In [`RoutingMode::OwnTable`] each network's routes live in a table of their
//! own behind a `from <subnet> lookup <table>` rule. Our rules are the daemon's
//! memory of which tables it manages: a network deleted while the daemon was
//! down still has its rule, and the rule names the table to empty. An operator's
//! identical rule counts as present and is never removed.
//!
//! # Shims are marked by name and alias
//!
//! A macvlan gateway shim per rail for macvlan networks ([`shims`]) has no
//! protocol number: it is ours when its name starts with `ry-` and its alias
//! with `railyard:`, and no other link is ever changed or deleted.
//!
//! # Rail interfaces are made, never deleted
//!
//! The VLANs and bonds a network's `spec.ifacer` asks for ([`rail_links`])
//! carry the alias `railyard:ifacer <network>`, and the host's rail addresses
//! are moved onto them. They are never deleted: they hold the rail.
//!
//! See `docs/design/route-ownership.md` for the invariants and the conformance
//! case that checks each.

pub mod memory;
pub mod netlink;
pub mod rail_links;
pub mod shims;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::{route_table_for, ActualRoute, Route, RouteDiff};

use crate::error::Result;

pub use rail_links::{
    ifacer_alias, LinkKind, LinkStep, RailLink, RailLinks, StepOutcome, IFACER_ALIAS_PREFIX,
};
pub use shims::{
    format_mac, Ensured, GatewayShims, Shim, ShimState, SHIM_ALIAS_PREFIX, SHIM_PREFIX,
};

/// The protocol number (`ip route ... proto 167`) that marks a route or a rule
/// as railyard's. It is the whole ownership model: railyard changes and deletes
/// only routes carrying it, so routes of operators, DHCP, BGP daemons or the
/// kernel are never touched, and a restarted daemon finds its routes without
/// any local state. 167 (0xa7) is not assigned in the kernel's rtnetlink.h nor
/// in iproute2's rt_protos; add `167 railyard` to /etc/iproute2/rt_protos for
/// `ip route` to print the name.
pub const RAILYARD_PROTOCOL: u8 = 0xa7;

/// The kernel's main table.
pub const MAIN_TABLE: u32 = 254;

/// Priority of the `from <subnet> lookup <table>` rules: before the main table
/// (32766), after the local table (0), and clear of the low numbers operators
/// tend to use.
pub const DEFAULT_RULE_PRIORITY: u32 = 3_000;

/// Where a network's routes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RoutingMode {
    /// The network's own table (`railyard_core::route_table_for`), reached from
    /// the pods' addresses through a `from <subnet>` rule. Keeps railyard's routes
    /// out of the host's own routing decisions.
    #[default]
    OwnTable,
    /// The main table, where every process of the host uses the routes.
    MainTable,
}

impl RoutingMode {
    pub fn table(self, network: &str) -> u32 {
        match self {
            RoutingMode::OwnTable => route_table_for(network),
            RoutingMode::MainTable => MAIN_TABLE,
        }
    }

    /// Whether this mode needs a policy rule per subnet.
    pub fn needs_rule(self) -> bool {
        self == RoutingMode::OwnTable
    }
}

/// A set of kernel routing tables: the netlink backend or an in-memory fake.
///
/// Ownership is by protocol only ([`RAILYARD_PROTOCOL`]): [`ActualRoute::owned`]
/// says whether a route carries it, and [`RouteTable::apply`] never changes a
/// route that does not.
#[async_trait]
pub trait RouteTable: Send + Sync {
    /// Every route, ours and foreign, of the given tables (both families).
    /// Foreign routes are returned because they matter as conflicts.
    async fn routes(&self, tables: &[u32]) -> Result<Vec<ActualRoute>>;
    /// Applies `diff`: deletes first (of our route only: protocol, next hop and
    /// device must match; one already gone counts as deleted), then replaces,
    /// then exclusive adds (a destination someone holds is a conflict in the
    /// report, not a replace). A route the kernel refuses is a [`RouteFailure`]
    /// in the report, not an error: one bad route must not stop the other ten
    /// thousand.
    async fn apply(&self, diff: &RouteDiff) -> Result<ApplyReport>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    Add,
    Replace,
    Delete,
}

impl fmt::Display for RouteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteOp::Add => "add",
            RouteOp::Replace => "replace",
            RouteOp::Delete => "delete",
        })
    }
}

/// A route the kernel would not take, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFailure {
    pub op: RouteOp,
    pub route: Route,
    pub error: String,
}

impl fmt::Display for RouteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.route;
        write!(
            f,
            "{} {} via {} dev {} table {}: {}",
            self.op, r.dst, r.gateway, r.dev, r.table, self.error
        )
    }
}

/// What [`RouteTable::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub added: usize,
    pub replaced: usize,
    pub deleted: usize,
    /// Adds refused because a route appeared at that destination after the read;
    /// like the diff's conflicts, they are left alone.
    pub conflicts: Vec<Route>,
    pub failures: Vec<RouteFailure>,
}

/// `from <from> lookup <table> priority <priority>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRule {
    pub from: IpNet,
    pub table: u32,
    pub priority: u32,
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from {} lookup {} priority {}",
            self.from, self.table, self.priority
        )
    }
}

/// Policy rules (`from <subnet> lookup <table>`) as a port, so the daemon's loop
/// can keep them in step with the networks against the kernel or an in-memory
/// fake.
///
/// Ownership works as for routes: railyard lists, and removes, only the rules
/// that carry its protocol number. The rules double as the daemon's memory of
/// which tables it manages: a network deleted while the daemon was down still
/// has its rule, and the rule names the table whose routes must go.
#[async_trait]
pub trait PolicyRules: Send + Sync {
    /// The rules railyard wrote (its protocol number), both families, sorted.
    async fn owned_rules(&self) -> Result<Vec<PolicyRule>>;
    /// Makes sure the rule exists; true when it had to be created. An identical
    /// rule of someone else's counts as existing.
    async fn ensure_policy_rule(&self, rule: PolicyRule) -> Result<bool>;
    /// Removes our copy of the rule; true when there was one.
    async fn remove_policy_rule(&self, rule: PolicyRule) -> Result<bool>;
}

/// Everything the daemon's loop needs from a kernel.
pub trait Kernel: RouteTable + PolicyRules + GatewayShims + RailLinks {}

impl<T: RouteTable + PolicyRules + GatewayShims + RailLinks> Kernel for T {}

/// A shared port is the port: several owners (a restarted loop, a test that
/// keeps a handle) can drive one kernel.
#[async_trait]
impl<T: RouteTable + ?Sized> RouteTable for Arc<T> {
    async fn routes(&self, tables: &[u32]) -> Result<Vec<ActualRoute>> {
        (**self).routes(tables).await
    }

    async fn apply(&self, diff: &RouteDiff) -> Result<ApplyReport> {
        (**self).apply(diff).await
    }
}

#[async_trait]
impl<T: PolicyRules + ?Sized> PolicyRules for Arc<T> {
    async fn owned_rules(&self) -> Result<Vec<PolicyRule>> {
        (**self).owned_rules().await
    }

    async fn ensure_policy_rule(&self, rule: PolicyRule) -> Result<bool> {
        (**self).ensure_policy_rule(rule).await
    }

    async fn remove_policy_rule(&self, rule: PolicyRule) -> Result<bool> {
        (**self).remove_policy_rule(rule).await
    }
}
