//! The planning side of railyard: the `railyard` CLI's logic, and (as it grows)
//! the planner service and the Kubernetes controller. Binaries in `src/bin` stay
//! thin and call into here.

pub mod error;
pub mod offline;

pub use error::{PlannerError, Result};
