//! The allocation service: the unix-socket server the `railyard-ipam` plugin talks
//! to, and the mirror that copies durable allocations to etcd in batches. The
//! decisions and the durability live in `railyard-allocdb`; this is the IO around it.

mod follow;
mod metrics;
mod mirror;
mod protocol;
mod run;
mod server;

pub use metrics::IpamMetrics;
pub use mirror::{run_mirror, MirrorConfig};
pub use run::{run, IpamConfig};
pub use server::{serve, IpamContext};
