//! The etcd key schema, in one place so every component agrees on it.
//! `docs/etcd-keys.md` describes each key and its value; keep the two in step.

/// Everything railyard stores lives below this prefix; `v1` lets a later schema
/// live beside it during a migration.
pub const ROOT: &str = "/railyard/v1/";

pub const NETWORKS: &str = "/railyard/v1/networks/";
pub const HOSTS: &str = "/railyard/v1/hosts/";
pub const PLANS: &str = "/railyard/v1/plans/";
pub const STATUS: &str = "/railyard/v1/status/";
pub const ALLOCATIONS: &str = "/railyard/v1/allocations/";
pub const ELECTION: &str = "/railyard/v1/election/planner/";
pub const DEVICE_CLASSES: &str = "/railyard/v1/deviceclasses/";
pub const TOMBSTONES: &str = "/railyard/v1/tombstones/";

/// The network spec as applied (`railyard apply`, or the Kubernetes controller).
pub fn network(name: &str) -> String {
    format!("{NETWORKS}{name}")
}

/// A host's NIC inventory, written by its route-daemon under a lease.
pub fn host(name: &str) -> String {
    format!("{HOSTS}{name}")
}

/// Prefix of every key of one network's plan.
pub fn plan_prefix(network: &str) -> String {
    format!("{PLANS}{network}/")
}

/// Rails, retired host indexes and the plan's generation.
pub fn plan_meta(network: &str) -> String {
    format!("{PLANS}{network}/meta")
}

/// One host's index and blocks in a network. One key per host keeps a join a
/// single small write instead of a rewrite of the whole plan.
pub fn plan_host(network: &str, host: &str) -> String {
    format!("{PLANS}{network}/hosts/{host}")
}

pub fn plan_hosts_prefix(network: &str) -> String {
    format!("{PLANS}{network}/hosts/")
}

pub fn status(network: &str) -> String {
    format!("{STATUS}{network}")
}

/// Allocations are grouped by host so a daemon mirrors its own with one prefix.
pub fn allocation(network: &str, host: &str, container_id: &str, ifname: &str) -> String {
    format!("{ALLOCATIONS}{network}/{host}/{container_id}/{ifname}")
}

/// Every allocation of one network, on every host.
pub fn allocations_of(network: &str) -> String {
    format!("{ALLOCATIONS}{network}/")
}

pub fn allocations_of_host(network: &str, host: &str) -> String {
    format!("{ALLOCATIONS}{network}/{host}/")
}

/// A DeviceClass (the devClass attach policy's match rules), from the Kubernetes
/// DeviceClass resource (or written by hand); route-daemons read them all.
pub fn device_class(name: &str) -> String {
    format!("{DEVICE_CLASSES}{name}")
}

/// The range of a deleted network whose pods still hold addresses: kept reserved
/// (no other network may overlap it) until its allocations are gone.
pub fn tombstone(network: &str) -> String {
    format!("{TOMBSTONES}{network}")
}

/// The last path segment of a key (the name of the object it stores).
pub fn last_segment(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_their_prefixes() {
        assert!(plan_host("net-a", "h1").starts_with(&plan_prefix("net-a")));
        assert!(plan_meta("net-a").starts_with(&plan_prefix("net-a")));
        assert!(!plan_host("net-ab", "h1").starts_with(&plan_prefix("net-a")));
        assert!(allocation("n", "h", "c", "net1").starts_with(&allocations_of_host("n", "h")));
        assert_eq!(last_segment(&host("node-7")), "node-7");
        for k in [
            network("x"),
            host("x"),
            status("x"),
            plan_meta("x"),
            tombstone("x"),
        ] {
            assert!(k.starts_with(ROOT), "{k}");
        }
    }
}
