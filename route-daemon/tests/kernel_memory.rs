//! `MemoryRoutes` against the kernel port's conformance suite (no root needed):
//! the fake the daemon's loop is tested on must behave as `NetlinkRoutes` does
//! on a real kernel (`tests/kernel_netlink.rs` runs the same cases there).

use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::{ActualRoute, IfName, Route};
use railyard_route_daemon::kernel::conformance::{self, Fixture, SeenKind, SeenLink};
use railyard_route_daemon::kernel::memory::MemoryRoutes;
use railyard_route_daemon::kernel::{format_mac, PolicyRule, PolicyRules};
use railyard_route_daemon::Result;

/// The scene of [`conformance::RAILS`] in memory: the rail devices, the
/// kernel's connected routes in the main table (someone else's), every device up.
struct MemoryFixture {
    kernel: Arc<MemoryRoutes>,
}

impl MemoryFixture {
    fn new() -> Self {
        let kernel = MemoryRoutes::with_foreign(conformance::connected_routes());
        for (dev, addrs) in conformance::RAILS {
            kernel.add_device(name(dev));
            for a in addrs {
                kernel.add_address(&name(dev), a.parse().expect("valid by construction"));
            }
        }
        MemoryFixture {
            kernel: Arc::new(kernel),
        }
    }
}

fn name(s: &str) -> IfName {
    s.parse().expect("valid interface name")
}

#[async_trait]
impl Fixture for MemoryFixture {
    type Kernel = Arc<MemoryRoutes>;

    fn kernel(&self) -> &Self::Kernel {
        &self.kernel
    }

    /// The same state: a restarted daemon finds the kernel as it was.
    async fn reopen(&self) -> Result<Self::Kernel> {
        Ok(self.kernel.clone())
    }

    async fn add_foreign_route(&self, route: &Route) {
        self.kernel.add_foreign_route(route.clone());
    }

    async fn delete_route(&self, route: &Route) {
        self.kernel.remove(route);
    }

    async fn link_down(&self, dev: &str) {
        self.kernel.refuse_dev(dev, "Network is down");
        self.kernel.set_link_up(&name(dev), false);
    }

    async fn add_foreign_rule(&self, rule: PolicyRule) {
        self.kernel.add_foreign_rule(rule);
    }

    async fn seen_routes(&self, table: u32) -> Vec<ActualRoute> {
        self.kernel
            .snapshot()
            .into_iter()
            .filter(|a| a.route.table == table)
            .collect()
    }

    async fn seen_rules(&self) -> Vec<(PolicyRule, bool)> {
        let ours = self.kernel.owned_rules().await.expect("memory never fails");
        self.kernel
            .rules()
            .into_iter()
            .map(|r| (r, ours.contains(&r)))
            .collect()
    }

    async fn add_foreign_link(&self, link: &str, parent: &str, alias: Option<&str>) {
        self.kernel
            .add_foreign_link(name(link), name(parent), alias);
    }

    async fn delete_link(&self, link: &str) {
        self.kernel.delete_link(&name(link));
    }

    async fn delete_address(&self, link: &str, addr: IpNet) {
        self.kernel.delete_address(&name(link), addr);
    }

    async fn seen_link(&self, link: &str) -> Option<SeenLink> {
        let l = self.kernel.link(&name(link))?;
        let mut addresses = l.addresses;
        addresses.sort_unstable();
        let ipv6_ready = addresses.iter().any(|a| a.addr().is_ipv6());
        Some(SeenLink {
            macvlan_bridge: l.macvlan_bridge,
            parent: l.parent.map(|p| p.to_string()),
            mac: format_mac(&l.mac),
            alias: l.alias,
            up: l.up,
            addresses,
            // The fake has no duplicate address detection at all.
            nodad: true,
            ipv6_ready,
        })
    }

    async fn seen_kind(&self, link: &str) -> Option<SeenKind> {
        let l = self.kernel.link(&name(link))?;
        let kind = if l.vlan_id.is_some() {
            Some("vlan")
        } else if l.bond {
            Some("bond")
        } else if l.macvlan_bridge {
            Some("macvlan")
        } else {
            None
        };
        Some(SeenKind {
            kind: kind.map(str::to_owned),
            vlan_id: l.vlan_id,
            controller: l.controller.map(|c| c.to_string()),
        })
    }

    async fn add_address(&self, link: &str, addr: IpNet) {
        self.kernel.add_address(&name(link), addr);
    }

    async fn add_default_route(&self, link: &str) {
        self.kernel.set_default_route(&name(link), true);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn run(case: &'static str) {
    runtime().block_on(async {
        conformance::run_case(case, &MemoryFixture::new())
            .await
            .unwrap_or_else(|e| panic!("kernel conformance case {case} failed: {e}"));
    });
}

railyard_route_daemon::kernel_conformance_tests!(run);

// The rail-interface cases that need 8021q and bonding in a real kernel; the
// fake has no modules to lack.
#[test]
fn vlans_are_made_marked_and_found_again() {
    run("vlans_are_made_marked_and_found_again");
}

#[test]
fn bonds_take_their_slaves_and_the_moved_addresses() {
    run("bonds_take_their_slaves_and_the_moved_addresses");
}

#[test]
fn every_full_kernel_case_has_a_test() {
    assert_eq!(
        conformance::FULL_KERNEL_CASES,
        [
            "vlans_are_made_marked_and_found_again",
            "bonds_take_their_slaves_and_the_moved_addresses"
        ]
    );
}

#[test]
fn all_cases_in_sequence() {
    runtime().block_on(async {
        conformance::run_all(|| async { MemoryFixture::new() })
            .await
            .expect("suite");
    });
}
