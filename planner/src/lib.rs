//! The planner service: win the election, load the world from etcd, then follow
//! network specs and host registrations and write the plans they cause
//! ([`service`]); every decision is made by the pure [`world::World`]. While it
//! leads, the `railyard-planner` binary also runs the Kubernetes controller
//! (the `railyard-k8s` crate). `src/bin/railyard-planner.rs` stays thin.

pub mod election;
pub mod error;
pub mod metrics;
pub mod service;
pub mod world;

pub use error::{PlannerError, Result};
