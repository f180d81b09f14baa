//! needs root, etcd, ping and the workspace's binaries (built by
//! `cargo test --workspace`; with `-p railyard-e2e` run `cargo build --bins`
//! first). Each test brings up its own local cluster (real etcd, planner(s),
//! one route-daemon per host namespace, pods through railyard-cni and the
//! reference ptp/macvlan/host-device plugins) and tears it down, also on
//! failure.
//!
//! One test binary for all of them: every extra binary would be linked again.

mod common;

mod api_addresses;
mod cni_runtime;
mod connectivity;
mod external_ipam;
mod failover;
mod gateway;
mod host_device;
mod ipam_crash;
mod ipam_disk_full;
mod ipam_rails_owed;
mod ipam_state_loss;
mod membership;
mod network_routes;
mod nic_flap;
mod outage;
mod plugin_exec;
mod pod_policy_routing;
mod routed;
mod spec_safety;
mod static_addresses;
mod upgrade;
mod waiting_hosts;
