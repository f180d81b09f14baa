//! railyard's per-host agent, as a library: it finds the rail NICs and registers
//! them, follows the plans in etcd and the kernel's link, address and route
//! events, and keeps the kernel's routes equal to what the plan asks of this
//! host. Every decision is a pure function (in `railyard_core` or [`view`]); the
//! modules below only fetch and apply, each behind a small trait so the daemon's
//! loop runs against `MemStore` and an in-memory kernel in tests.
//!
//! The kernel port is [`kernel`]: [`RouteTable`], [`PolicyRules`] and the
//! gateway shims macvlan networks need ([`kernel::GatewayShims`]) over
//! rtnetlink ([`NetlinkRoutes`]) and in memory ([`MemoryRoutes`]), one
//! conformance suite for both (feature `conformance`). Ownership of routes and
//! rules rests on one number: everything railyard writes carries
//! [`RAILYARD_PROTOCOL`], and nothing with another protocol is ever changed;
//! a shim is railyard's by its `ry-` name and `railyard:` alias.

pub mod bgp;
pub mod cli;
pub mod daemon;
pub mod discovery;
mod error;
pub mod ipam;
pub mod kernel;
pub mod metrics;
mod netlink;
pub mod reconcile;
pub mod registration;
mod shutdown;
pub mod sweep;
pub mod view;
pub mod watch;

pub use error::{Error, Result};
pub use kernel::memory::MemoryRoutes;
pub use kernel::netlink::NetlinkRoutes;
pub use kernel::{
    ApplyReport, Kernel, PolicyRule, PolicyRules, RouteFailure, RouteOp, RouteTable, RoutingMode,
    RAILYARD_PROTOCOL,
};
pub use netlink::Netlink;
pub use reconcile::{reconcile, reconcile_tracking, ReconcileReport};
pub use watch::{KernelEvent, KernelWatch};
