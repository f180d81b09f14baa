//! railyard's pure core: decisions as functions over a snapshot. Nothing here does
//! IO, so every rule of the plan, the routes and the allocator is testable and
//! benchmarkable on its own, and the service crates only fetch and apply.

mod bitmap;
mod error;
mod host_index;
mod ifname;
mod layout;
mod names;

pub mod align;
pub mod alloc;
pub mod attach;
pub mod external_ipam;
pub mod fabric;
pub mod gateway;
pub mod ifacer;
pub mod inventory;
pub mod ipam;
pub mod keys;
pub mod mac;
pub mod plan;
pub mod pools;
pub mod ranges;
pub mod routes;
pub mod spec;
pub mod status;
pub mod stored;

pub use alloc::BlockAllocator;
pub use error::{CoreError, Result};
pub use gateway::Gateway;
pub use ifacer::{Bond, BondMode, BondOptions, Ifacer, IfacerSpec};
pub use ifname::{IfName, MAX_IFNAME};
pub use inventory::{HostInventory, InventoryFile, Nic};
pub use layout::Layout;
pub use names::{validate_dns_label, validate_host_name, validate_key_segment};
pub use plan::{plan, Block, Change, HostPlan, Interface, Plan, Planner, Renumber, Unplanned};
pub use routes::{desired_routes, diff, ActualRoute, Route, RouteDiff};
pub use spec::{Network, NetworkManifest, NetworkSpec, Strategy, VlanMode, ALLOW_RENUMBER};
pub use stored::{route_table_for, PlanMeta, Tombstone};
