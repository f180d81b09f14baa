//! The planning side of railyard: the `railyard` CLI's logic, the planner service
//! and (later) the Kubernetes controller. Binaries in `src/bin` stay thin and call
//! into here.

pub mod check;
pub mod check_run;
pub mod cli;
pub mod election;
pub mod error;
pub mod etcd_args;
pub mod k8s;
pub mod metrics;
pub mod offline;
pub mod service;
pub mod status;
pub mod table;
pub mod world;

pub use error::{PlannerError, Result};
