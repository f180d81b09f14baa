//! The allocation service: the unix-socket server the `railyard-ipam` plugin talks
//! to, and the mirror that copies durable allocations to etcd in batches. The
//! decisions and the durability live in `railyard-allocdb`; this is the IO around it.
//! It runs inside the daemon's one context (`daemon::HostContext`): the store, the
//! kernel events, the discovery source and the plan watch are the daemon's.

mod annotations;
mod follow;
mod metrics;
mod mirror;
mod protocol;
mod run;
mod server;

#[cfg(test)]
pub(crate) use follow::apply_networks;
pub use metrics::IpamMetrics;
pub use mirror::{run_mirror, MirrorConfig};
pub(crate) use run::allocation_dir;
pub use run::{run, IpamConfig, IpamFeeds};
pub use server::{serve, IpamContext};
