//! railyard end to end: a local multi-host rail cluster in network namespaces
//! ([`cluster`]), run from the real binaries, and the measurements made on it
//! ([`bench`](mod@bench)). `railyard-local` is its command line; `tests/e2e` its tests.
//!
//! Nothing here reimplements railyard: the cluster runs `railyard-planner`,
//! `railyard-route-daemon`, `railyard-cni` and `railyard` as a user would, and
//! judges them from outside (etcd contents, kernel routes, pings).

pub mod bench;
pub mod bins;
pub mod cluster;
pub mod error;
pub mod k8s_demo;
pub mod kube;
pub mod soak;
pub mod vm;

pub use cluster::{Cluster, ClusterSpec, Delegate, Family, IpvlanMode};
pub use error::{Error, Result};
