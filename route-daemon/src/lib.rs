//! railyard's per-host agent, as a library: it finds the rail NICs, follows the
//! kernel's link, address and route events, and keeps the kernel's routes equal to
//! what the plan asks for. Every decision is a pure function (in `railyard_core`
//! or here); the modules below only fetch and apply, each behind a small trait so
//! the daemon's loop can run against an in-memory kernel in tests.
//!
//! Ownership of routes rests on one number: every route railyard writes carries
//! [`RAILYARD_PROTOCOL`], and nothing with another protocol is ever changed.

pub mod discovery;
mod error;
pub mod kernel_routes;
pub mod memory;
mod netlink;
pub mod netns;
pub mod reconcile;
pub mod watch;

pub use error::{Error, Result};
pub use kernel_routes::{NetlinkRoutes, RoutingMode, RAILYARD_PROTOCOL};
pub use memory::MemoryRoutes;
pub use netlink::Netlink;
pub use reconcile::{reconcile, ApplyReport, ReconcileReport, RouteFailure, RouteOp, RouteTable};
pub use watch::{KernelEvent, KernelWatch};
