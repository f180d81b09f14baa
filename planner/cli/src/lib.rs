//! The `railyard` command's work, apart from its argument parsing (`main.rs`):
//! the offline plan ([`offline`]), the etcd commands ([`commands`]: apply, get,
//! describe, delete), who holds which address ([`allocations`]) and the connection check ([`check`] decides, [`check_run`]
//! probes from the pods' namespaces). Tested without spawning processes.

pub mod agent;
pub mod allocations;
pub mod args;
pub mod check;
pub mod check_agents;
pub mod check_k8s;
pub mod check_run;
pub mod commands;
pub mod error;
pub mod offline;
mod run;
pub mod table;
pub mod throughput;

pub use error::{CliError, Result};
pub use run::run;
