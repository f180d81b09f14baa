//! The behaviour every kernel port must have, as one suite that `MemoryRoutes` and
//! `NetlinkRoutes` both run (`tests/kernel_memory.rs`, and `tests/kernel_netlink.rs`
//! in a private network namespace). `MemoryRoutes` is only a safe stand-in for the
//! kernel in the daemon's tests if it passes the very same checks as Linux, so new
//! semantics get a case here, never a one-sided test.
//!
//! A case gets a [`Fixture`]: the port under test plus a way to act as someone
//! else on the same kernel (an operator's `ip route add`, a device going down)
//! and to look at the kernel from outside the port. Kernel errors come back with
//! `?`; a semantic mismatch panics with a message. `kernel_conformance_tests!`
//! makes one `#[test]` per case; [`run_all`] runs them in sequence.
//!
//! The invariants these cases check are listed, case by case, in
//! `docs/design/route-ownership.md`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use ipnet::IpNet;
use railyard_core::{ActualRoute, IfName, Route, RouteDiff};

use super::{
    Ensured, GatewayShims, Kernel, LinkKind, LinkStep, PolicyRule, PolicyRules, RailLink,
    RailLinks, RouteOp, RouteTable, Shim, ShimState, StepOutcome, DEFAULT_RULE_PRIORITY,
    MAIN_TABLE,
};
use crate::error::Result;
use crate::reconcile::{reconcile, reconcile_tracking};

/// The scene a fixture builds before each case: two rail NICs, both up, each
/// with an address of each family. Next hops of the cases are on-link there.
pub const RAILS: [(&str, [&str; 2]); 2] = [
    ("rail0", ["10.10.0.5/16", "fd00:10::5/64"]),
    ("rail1", ["10.11.0.5/16", "fd00:11::5/64"]),
];

/// The network table the cases use. Like every table `route_table_for` gives,
/// it is above 255, so it only fits the netlink RTA_TABLE attribute.
pub const TABLE: u32 = 10_100;
/// A second network's table.
pub const OTHER_TABLE: u32 = 10_200;

/// The port under test, and the rest of the world around it.
#[async_trait]
pub trait Fixture: Send + Sync {
    type Kernel: Kernel + 'static;

    /// The port the cases drive.
    fn kernel(&self) -> &Self::Kernel;
    /// A new port on the same kernel, opened with no state of its own: what a
    /// restarted daemon gets.
    async fn reopen(&self) -> Result<Self::Kernel>;
    /// Adds a route with another protocol (`ip route add ... proto static`).
    async fn add_foreign_route(&self, route: &Route);
    /// Deletes a route whoever owns it (`ip route del`): drift behind our back.
    async fn delete_route(&self, route: &Route);
    /// Takes a device down; the kernel refuses routes through it from now on.
    async fn link_down(&self, dev: &str);
    /// Adds an operator's rule (`ip rule add`, no protocol of ours).
    async fn add_foreign_rule(&self, rule: PolicyRule);
    /// Every route of `table`, both families, as another program sees it;
    /// `owned` when it carries railyard's protocol.
    async fn seen_routes(&self, table: u32) -> Vec<ActualRoute>;
    /// Every `from <subnet> lookup <table>` rule, both families, as another
    /// program sees it, with whether it carries railyard's protocol.
    async fn seen_rules(&self) -> Vec<(PolicyRule, bool)>;
    /// Someone else's link: `ip link add NAME link PARENT type macvlan mode
    /// bridge`, then `ip link set NAME alias ALIAS` when an alias is given.
    async fn add_foreign_link(&self, name: &str, parent: &str, alias: Option<&str>);
    /// `ip link del NAME`, whoever owns it.
    async fn delete_link(&self, name: &str);
    /// `ip addr del ADDR dev NAME`.
    async fn delete_address(&self, name: &str, addr: IpNet);
    /// The link `name` as another program sees it (`ip -d addr show`).
    async fn seen_link(&self, name: &str) -> Option<SeenLink>;
    /// Its kind, VLAN id and controller as another program sees them (`ip -d
    /// link show`).
    async fn seen_kind(&self, name: &str) -> Option<SeenKind>;
    /// `ip addr add ADDR dev NAME` (IPv6 with `nodad`).
    async fn add_address(&self, name: &str, addr: IpNet);
    /// `ip route add default dev NAME`: NAME looks like a management NIC.
    async fn add_default_route(&self, name: &str);
}

/// What [`Fixture::seen_kind`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenKind {
    /// `vlan`, `bond`, `macvlan`, `veth`...; `None` for a plain device.
    pub kind: Option<String>,
    pub vlan_id: Option<u16>,
    /// The bond it is enslaved to.
    pub controller: Option<String>,
}

/// A link as [`Fixture::seen_link`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenLink {
    /// A macvlan in bridge mode.
    pub macvlan_bridge: bool,
    pub parent: Option<String>,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub alias: Option<String>,
    pub up: bool,
    /// Global addresses, sorted.
    pub addresses: Vec<IpNet>,
    /// Every IPv6 address was added without duplicate address detection.
    pub nodad: bool,
    /// It can resolve neighbours for forwarded IPv6 at once: it has a
    /// link-local address that is not tentative (the kernel solicits only
    /// from such an address). The in-memory kernel: it has any IPv6 address.
    pub ipv6_ready: bool,
}

/// The routes the kernel makes for [`RAILS`]' addresses in the main table (a
/// fake kernel starts with these, as someone else's).
pub fn connected_routes() -> Vec<Route> {
    RAILS
        .iter()
        .flat_map(|(dev, addrs)| {
            addrs.iter().map(move |a| {
                let net: IpNet = a.parse().expect("valid by construction");
                Route {
                    dst: net.trunc(),
                    gateway: unspecified(&net),
                    dev: dev.parse().expect("valid by construction"),
                    table: MAIN_TABLE,
                }
            })
        })
        .collect()
}

/// Every case, in a stable order, with its name.
pub const CASES: &[&str] = &[
    "read_back_as_written",
    "add_replace_delete",
    "foreign_routes_are_never_touched",
    "main_table_keeps_what_others_put_there",
    "exclusive_adds_never_take_a_foreign_destination",
    "deletes_remove_only_our_route",
    "refused_routes_are_failures_not_errors",
    "other_tables_are_left_alone",
    "lost_routes_are_repaired",
    "a_restarted_port_finds_what_railyard_wrote",
    "policy_rules_ensure_and_remove",
    "foreign_identical_rules_count_as_present_and_stay",
    "a_deleted_network_leaves_nothing_of_ours",
    "shims_are_made_marked_and_found_again",
    "shims_are_repaired_in_place",
    "foreign_links_are_never_touched",
    "shims_are_removed_and_refused_without_their_parent",
    "rail_links_are_listed_and_addresses_move_between_them",
    "rail_link_steps_are_refused_not_forced",
];

/// The rail-interface cases that need the kernel's 8021q and bonding modules.
/// Not in [`CASES`]: a kernel without them (this project's build machines)
/// fails them, so they run from `tests/tests/full_kernel.rs` in the VM, and
/// fail loudly on a kernel without the modules wherever they are run.
pub const FULL_KERNEL_CASES: &[&str] = &[
    "vlans_are_made_marked_and_found_again",
    "bonds_take_their_slaves_and_the_moved_addresses",
];

/// Runs every case in sequence on fresh fixtures from `fixture`.
pub async fn run_all<F, Fut>(mut fixture: impl FnMut() -> Fut) -> Result<()>
where
    F: Fixture,
    Fut: std::future::Future<Output = F>,
{
    for name in CASES {
        run_case(name, &fixture().await).await?;
    }
    Ok(())
}

/// Runs one case by name on a fixture that just built the scene ([`RAILS`]).
/// Panics on an unknown name.
pub async fn run_case<F: Fixture>(name: &str, fx: &F) -> Result<()> {
    tracing::info!(case = name, "kernel conformance case");
    match name {
        "read_back_as_written" => read_back_as_written(fx).await,
        "add_replace_delete" => add_replace_delete(fx).await,
        "foreign_routes_are_never_touched" => foreign_routes_are_never_touched(fx).await,
        "main_table_keeps_what_others_put_there" => {
            main_table_keeps_what_others_put_there(fx).await
        }
        "exclusive_adds_never_take_a_foreign_destination" => {
            exclusive_adds_never_take_a_foreign_destination(fx).await
        }
        "deletes_remove_only_our_route" => deletes_remove_only_our_route(fx).await,
        "refused_routes_are_failures_not_errors" => {
            refused_routes_are_failures_not_errors(fx).await
        }
        "other_tables_are_left_alone" => other_tables_are_left_alone(fx).await,
        "lost_routes_are_repaired" => lost_routes_are_repaired(fx).await,
        "a_restarted_port_finds_what_railyard_wrote" => {
            a_restarted_port_finds_what_railyard_wrote(fx).await
        }
        "policy_rules_ensure_and_remove" => policy_rules_ensure_and_remove(fx).await,
        "foreign_identical_rules_count_as_present_and_stay" => {
            foreign_identical_rules_count_as_present_and_stay(fx).await
        }
        "a_deleted_network_leaves_nothing_of_ours" => {
            a_deleted_network_leaves_nothing_of_ours(fx).await
        }
        "shims_are_made_marked_and_found_again" => shims_are_made_marked_and_found_again(fx).await,
        "shims_are_repaired_in_place" => shims_are_repaired_in_place(fx).await,
        "foreign_links_are_never_touched" => foreign_links_are_never_touched(fx).await,
        "shims_are_removed_and_refused_without_their_parent" => {
            shims_are_removed_and_refused_without_their_parent(fx).await
        }
        "rail_links_are_listed_and_addresses_move_between_them" => {
            rail_links_are_listed_and_addresses_move_between_them(fx).await
        }
        "rail_link_steps_are_refused_not_forced" => {
            rail_link_steps_are_refused_not_forced(fx).await
        }
        "vlans_are_made_marked_and_found_again" => vlans_are_made_marked_and_found_again(fx).await,
        "bonds_take_their_slaves_and_the_moved_addresses" => {
            bonds_take_their_slaves_and_the_moved_addresses(fx).await
        }
        other => panic!("no kernel conformance case {other:?} (see CASES)"),
    }
}

/// One `#[test]` per case. `$run` is a `fn(&'static str)` that builds a fresh
/// fixture, runs [`run_case`] on it and panics on an error:
///
/// ```ignore
/// fn run(case: &'static str) { /* build the scene, then run_case(case, &fixture) */ }
/// railyard_route_daemon::kernel_conformance_tests!(run);
/// ```
#[macro_export]
macro_rules! kernel_conformance_tests {
    ($run:path) => {
        $crate::__kernel_conformance_cases!(
            $run;
            read_back_as_written,
            add_replace_delete,
            foreign_routes_are_never_touched,
            main_table_keeps_what_others_put_there,
            exclusive_adds_never_take_a_foreign_destination,
            deletes_remove_only_our_route,
            refused_routes_are_failures_not_errors,
            other_tables_are_left_alone,
            lost_routes_are_repaired,
            a_restarted_port_finds_what_railyard_wrote,
            policy_rules_ensure_and_remove,
            foreign_identical_rules_count_as_present_and_stay,
            a_deleted_network_leaves_nothing_of_ours,
            shims_are_made_marked_and_found_again,
            shims_are_repaired_in_place,
            foreign_links_are_never_touched,
            shims_are_removed_and_refused_without_their_parent,
            rail_links_are_listed_and_addresses_move_between_them,
            rail_link_steps_are_refused_not_forced,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kernel_conformance_cases {
    ($run:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $run(stringify!($case));
            }
        )*

        #[test]
        fn every_kernel_conformance_case_has_a_test() {
            let here: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(here, $crate::kernel::conformance::CASES);
        }
    };
}

// --- routes ---------------------------------------------------------------

/// Everything railyard writes carries its protocol, reads back identical
/// through the port and from outside it, in both families; a second reconcile
/// is a no-op.
pub async fn read_back_as_written<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let want = rail_routes(0, 900, 100, TABLE);
    let r = reconcile(want.clone(), &[TABLE], k).await?;
    assert!(
        r.failures.is_empty() && r.conflicts.is_empty(),
        "{:?} {:?}",
        r.failures.first(),
        r.conflicts.first()
    );
    assert_eq!((r.added, r.replaced, r.deleted), (1000, 0, 0));
    assert_eq!(
        ours(k, TABLE).await?,
        sorted(want.clone()),
        "through the port"
    );
    let seen = fx.seen_routes(TABLE).await;
    assert!(
        seen.iter().all(|a| a.owned),
        "everything railyard wrote carries its protocol: {:?}",
        seen.iter().find(|a| !a.owned)
    );
    assert_eq!(
        sorted(seen.into_iter().map(|a| a.route).collect()),
        sorted(want.clone()),
        "from outside the port"
    );
    let again = reconcile(want, &[TABLE], k).await?;
    assert_eq!(again.changed(), 0, "a second reconcile is a no-op");
    assert_eq!(again.unchanged, 1000);
    Ok(())
}

/// A diff's three operations: a peer's NIC got a new address (replaced in
/// place), peers left (deleted), a peer joined (added), in both families;
/// nothing wanted empties the named table of ours.
pub async fn add_replace_delete<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let first = rail_routes(0, 10, 4, TABLE);
    let r = reconcile(first.clone(), &[TABLE], k).await?;
    assert_eq!((r.added, r.replaced, r.deleted), (14, 0, 0));

    let mut second = first.clone();
    second[0].gateway = ip("10.10.0.99");
    second[10].gateway = ip("fd00:10::99");
    let moved = [second[0].clone(), second[10].clone()];
    second.remove(13); // v6
    second.remove(9);
    second.remove(8);
    second.push(route("10.140.0.0/24", "10.10.0.7", "rail0", TABLE));
    second.push(route("fd00:200::/64", "fd00:10::7", "rail0", TABLE));
    let r = reconcile(second.clone(), &[TABLE], k).await?;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!((r.added, r.replaced, r.deleted), (2, 2, 3));
    assert_eq!(ours(k, TABLE).await?, sorted(second.clone()));
    let seen = fx.seen_routes(TABLE).await;
    for moved in &moved {
        assert!(
            seen.contains(&ActualRoute {
                route: moved.clone(),
                owned: true
            }),
            "{} should now go via {}: {seen:?}",
            moved.dst,
            moved.gateway
        );
    }
    assert_eq!(reconcile(second.clone(), &[TABLE], k).await?.changed(), 0);

    let r = reconcile(Vec::new(), &[TABLE], k).await?;
    assert_eq!(r.deleted, second.len(), "nothing wanted: ours go");
    assert!(ours(k, TABLE).await?.is_empty());
    assert_eq!(reconcile(Vec::new(), &[TABLE], k).await?.changed(), 0);
    Ok(())
}

/// Routes of another protocol are read but never changed: a destination they
/// hold is a conflict, reported again on every reconcile; wanting nothing
/// deletes ours only.
pub async fn foreign_routes_are_never_touched<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let foreign = vec![
        route("10.200.0.0/24", "10.10.0.9", "rail0", TABLE),
        route("10.201.0.0/24", "10.10.0.9", "rail0", TABLE),
        route("fd00:200::/64", "fd00:10::9", "rail0", TABLE),
        route("fd00:201::/64", "fd00:10::9", "rail0", TABLE),
    ];
    for f in &foreign {
        fx.add_foreign_route(f).await;
    }
    let conflicting = vec![
        route("10.200.0.0/24", "10.10.0.1", "rail0", TABLE),
        route("fd00:200::/64", "fd00:10::1", "rail0", TABLE),
    ];
    let free = vec![
        route("10.202.0.0/24", "10.10.0.1", "rail0", TABLE),
        route("fd00:202::/64", "fd00:10::1", "rail0", TABLE),
    ];
    let want: Vec<Route> = conflicting.iter().chain(&free).cloned().collect();
    let r = reconcile(want.clone(), &[TABLE], k).await?;
    assert_eq!(sorted(r.conflicts.clone()), sorted(conflicting.clone()));
    assert_eq!((r.added, r.replaced, r.deleted), (2, 0, 0));
    assert_eq!(ours(k, TABLE).await?, sorted(free.clone()));
    assert_eq!(theirs(fx, TABLE).await, sorted(foreign.clone()));

    let again = reconcile(want, &[TABLE], k).await?;
    assert_eq!(again.changed(), 0);
    assert_eq!(sorted(again.conflicts), sorted(conflicting));

    let r = reconcile(Vec::new(), &[TABLE], k).await?;
    assert_eq!(r.deleted, 2, "ours only");
    let seen = fx.seen_routes(TABLE).await;
    assert!(seen.iter().all(|a| !a.owned), "{seen:?}");
    assert_eq!(theirs(fx, TABLE).await, sorted(foreign));
    Ok(())
}

/// In the main table (`--routing main`) the kernel's connected routes and an
/// operator's static routes share the table with ours: a connected subnet we
/// want is a conflict, and after we leave the table is exactly as it was.
pub async fn main_table_keeps_what_others_put_there<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    fx.add_foreign_route(&route("10.201.0.0/24", "10.10.0.9", "rail0", MAIN_TABLE))
        .await;
    fx.add_foreign_route(&route("fd00:201::/64", "fd00:10::9", "rail0", MAIN_TABLE))
        .await;
    let before = sorted_actual(fx.seen_routes(MAIN_TABLE).await);
    let free = vec![
        route("10.202.0.0/24", "10.10.0.1", "rail0", MAIN_TABLE),
        route("fd00:202::/64", "fd00:10::1", "rail0", MAIN_TABLE),
    ];
    // The connected subnets themselves: held by the kernel's routes.
    let connected = vec![
        route("10.10.0.0/16", "10.10.0.1", "rail0", MAIN_TABLE),
        route("fd00:10::/64", "fd00:10::1", "rail0", MAIN_TABLE),
    ];
    let want: Vec<Route> = free.iter().chain(&connected).cloned().collect();
    let r = reconcile(want.clone(), &[MAIN_TABLE], k).await?;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!((r.added, r.conflicts.len()), (2, 2), "{:?}", r.conflicts);
    assert_eq!(sorted(r.conflicts), sorted(connected));
    assert_eq!(ours(k, MAIN_TABLE).await?, sorted(free));
    assert_eq!(reconcile(want, &[MAIN_TABLE], k).await?.changed(), 0);

    let r = reconcile(Vec::new(), &[MAIN_TABLE], k).await?;
    assert_eq!(r.deleted, 2);
    assert_eq!(
        sorted_actual(fx.seen_routes(MAIN_TABLE).await),
        before,
        "the main table as we found it"
    );
    Ok(())
}

/// An add is exclusive: when a foreign route took the destination after the
/// read (here: a diff applied as if the read were stale), the add is a
/// conflict in the report and the foreign route stays as it was.
pub async fn exclusive_adds_never_take_a_foreign_destination<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let foreign = vec![
        route("10.200.0.0/24", "10.10.0.9", "rail0", TABLE),
        route("fd00:200::/64", "fd00:10::9", "rail0", TABLE),
    ];
    for f in &foreign {
        fx.add_foreign_route(f).await;
    }
    let late = vec![
        route("10.200.0.0/24", "10.10.0.1", "rail0", TABLE),
        route("fd00:200::/64", "fd00:10::1", "rail0", TABLE),
    ];
    let free = route("10.202.0.0/24", "10.10.0.1", "rail0", TABLE);
    let mut add = late.clone();
    add.push(free.clone());
    let report = k
        .apply(&RouteDiff {
            add,
            ..RouteDiff::default()
        })
        .await?;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(sorted(report.conflicts), sorted(late));
    assert_eq!(report.added, 1);
    assert_eq!(theirs(fx, TABLE).await, sorted(foreign));
    assert_eq!(ours(k, TABLE).await?, vec![free]);
    Ok(())
}

/// A delete names our protocol, next hop and device: a foreign route at the
/// destination, even with the same next hop and device, survives a delete of
/// ours (a stale belief); a route already gone counts as deleted, not failed.
pub async fn deletes_remove_only_our_route<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let foreign = vec![
        route("10.200.0.0/24", "10.10.0.9", "rail0", TABLE),
        route("fd00:200::/64", "fd00:10::9", "rail0", TABLE),
    ];
    for f in &foreign {
        fx.add_foreign_route(f).await;
    }
    let mut delete = foreign.clone();
    delete.push(route("10.203.0.0/24", "10.10.0.1", "rail0", TABLE));
    delete.push(route("fd00:203::/64", "fd00:10::1", "rail0", TABLE));
    let report = k
        .apply(&RouteDiff {
            delete,
            ..RouteDiff::default()
        })
        .await?;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.deleted, 4, "already gone is what a delete wants");
    assert_eq!(theirs(fx, TABLE).await, sorted(foreign));
    Ok(())
}

/// Routes through a device that is down are refused by the kernel; each is a
/// failure in the report (op, route and reason), not an error, and the rest of
/// the diff is applied. A thousand refusals are all counted; the next
/// reconcile tries them again.
pub async fn refused_routes_are_failures_not_errors<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    fx.link_down("rail1").await;
    let good = rail_routes(0, 2, 2, TABLE);
    let bad = rail_routes(1, 1000, 30, TABLE);
    let want: Vec<Route> = good.iter().chain(&bad).cloned().collect();
    let r = reconcile(want.clone(), &[TABLE], k).await?;
    assert_eq!(r.added, 4);
    assert_eq!(r.failures.len(), bad.len(), "{:?}", r.failures.first());
    assert!(!r.converged());
    for f in &r.failures {
        assert_eq!(f.op, RouteOp::Add);
        assert_eq!(&*f.route.dev, "rail1");
        let text = f.to_string();
        assert!(text.contains("dev rail1") && !f.error.is_empty(), "{text}");
    }
    let failed: Vec<Route> = r.failures.into_iter().map(|f| f.route).collect();
    assert_eq!(sorted(failed), sorted(bad.clone()));
    assert_eq!(ours(k, TABLE).await?, sorted(good));

    let again = reconcile(want, &[TABLE], k).await?;
    assert_eq!(again.changed(), 0);
    assert_eq!(
        again.failures.len(),
        bad.len(),
        "tried again, refused again"
    );
    Ok(())
}

/// A reconcile changes only the tables it names (and those its routes name):
/// another network's table keeps our routes there.
pub async fn other_tables_are_left_alone<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let other = rail_routes(1, 3, 1, OTHER_TABLE);
    let r = reconcile(other.clone(), &[], k).await?;
    assert_eq!(r.added, 4, "the routes' own table is in scope");
    let mine = rail_routes(0, 5, 2, TABLE);
    let r = reconcile(mine.clone(), &[TABLE], k).await?;
    assert_eq!((r.added, r.deleted), (7, 0));
    let r = reconcile(Vec::new(), &[TABLE], k).await?;
    assert_eq!(r.deleted, 7);
    assert_eq!(ours(k, OTHER_TABLE).await?, sorted(other));
    Ok(())
}

/// Routes deleted behind our back come back on the next reconcile, counted as
/// repaired when the caller had applied them before; a new route is not.
pub async fn lost_routes_are_repaired<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let want = rail_routes(0, 10, 4, TABLE);
    let first = reconcile_tracking(&want, &[TABLE], k, &[]).await?;
    assert_eq!((first.added, first.repaired), (14, 0));
    let applied: Vec<ActualRoute> = sorted(want.clone())
        .into_iter()
        .map(|route| ActualRoute { route, owned: true })
        .collect();
    fx.delete_route(&want[3]).await;
    fx.delete_route(&want[12]).await;
    let mut next = want.clone();
    next.push(route("10.140.0.0/24", "10.10.0.7", "rail0", TABLE));
    let r = reconcile_tracking(&next, &[TABLE], k, &applied).await?;
    assert_eq!((r.added, r.repaired, r.replaced), (3, 2, 0));
    assert_eq!(ours(k, TABLE).await?, sorted(next.clone()));
    assert_eq!(
        reconcile_tracking(&next, &[TABLE], k, &applied)
            .await?
            .changed(),
        0
    );
    Ok(())
}

/// A restarted daemon keeps no state: a fresh port finds our routes and rules
/// by their protocol, and reconciling the same plan changes nothing.
pub async fn a_restarted_port_finds_what_railyard_wrote<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let want = rail_routes(0, 20, 5, TABLE);
    reconcile(want.clone(), &[TABLE], k).await?;
    let rules = [rule("10.30.0.0/16", TABLE), rule("fd00:30::/48", TABLE)];
    for r in rules {
        assert!(k.ensure_policy_rule(r).await?);
    }
    let foreign = route("10.201.0.0/24", "10.10.0.9", "rail0", TABLE);
    fx.add_foreign_route(&foreign).await;

    let fresh = fx.reopen().await?;
    assert_eq!(fresh.owned_rules().await?, sorted_rules(rules.to_vec()));
    assert_eq!(ours(&fresh, TABLE).await?, sorted(want.clone()));
    let r = reconcile(want.clone(), &[TABLE], &fresh).await?;
    assert_eq!(r.changed(), 0, "a restart changes nothing");
    assert_eq!(r.unchanged, want.len());
    for r in rules {
        assert!(!fresh.ensure_policy_rule(r).await?);
    }
    assert_eq!(theirs(fx, TABLE).await, vec![foreign]);
    Ok(())
}

/// A network deleted (found through its rule, by a fresh port): its table is
/// emptied of ours, then its rules go; the foreign route in that table and an
/// operator's rule stay.
pub async fn a_deleted_network_leaves_nothing_of_ours<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let want = rail_routes(0, 6, 3, TABLE);
    reconcile(want.clone(), &[TABLE], k).await?;
    for r in [rule("10.30.0.0/16", TABLE), rule("fd00:30::/48", TABLE)] {
        k.ensure_policy_rule(r).await?;
    }
    let foreign = route("10.201.0.0/24", "10.10.0.9", "rail0", TABLE);
    fx.add_foreign_route(&foreign).await;
    let operators = rule("10.40.0.0/16", TABLE);
    fx.add_foreign_rule(operators).await;

    // What the daemon does at start for a rule no current network explains.
    let fresh = fx.reopen().await?;
    let rules = fresh.owned_rules().await?;
    let tables: BTreeSet<u32> = rules.iter().map(|r| r.table).collect();
    assert_eq!(tables, BTreeSet::from([TABLE]), "the rules name the table");
    for t in tables {
        let r = reconcile(Vec::new(), &[t], &fresh).await?;
        assert_eq!(r.deleted, want.len());
    }
    for r in rules {
        assert!(fresh.remove_policy_rule(r).await?);
    }
    assert!(fresh.owned_rules().await?.is_empty());
    assert_eq!(theirs(fx, TABLE).await, vec![foreign]);
    let seen = fx.seen_rules().await;
    assert!(seen.iter().all(|(_, ours)| !ours), "{seen:?}");
    assert!(seen.contains(&(operators, false)), "{seen:?}");
    Ok(())
}

// --- policy rules ---------------------------------------------------------

/// Ensuring a rule creates it once (true, then false), in both families, with
/// our protocol; a different table is a different rule; removing takes ours
/// (true, then false).
pub async fn policy_rules_ensure_and_remove<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let v4 = rule("10.30.0.0/16", TABLE);
    let v6 = rule("fd00:30::/48", TABLE);
    let elsewhere = rule("10.30.0.0/16", OTHER_TABLE);
    for r in [v4, v6, elsewhere] {
        assert!(k.ensure_policy_rule(r).await?, "{r} created");
        assert!(!k.ensure_policy_rule(r).await?, "{r} already there");
    }
    assert_eq!(
        k.owned_rules().await?,
        sorted_rules(vec![v4, v6, elsewhere])
    );
    let seen = fx.seen_rules().await;
    for r in [v4, v6, elsewhere] {
        let copies: Vec<_> = seen.iter().filter(|(s, _)| *s == r).collect();
        assert_eq!(copies, [&(r, true)], "one copy, with our protocol");
    }

    assert!(k.remove_policy_rule(v4).await?);
    assert!(!k.remove_policy_rule(v4).await?, "already gone");
    assert_eq!(k.owned_rules().await?, sorted_rules(vec![v6, elsewhere]));
    assert!(!fx.seen_rules().await.iter().any(|(s, _)| *s == v4));
    for r in [v6, elsewhere] {
        assert!(k.remove_policy_rule(r).await?);
    }
    assert!(k.owned_rules().await?.is_empty());
    Ok(())
}

/// An operator's rule identical to one we want counts as present (no second
/// copy), is not listed as ours, and survives our remove.
pub async fn foreign_identical_rules_count_as_present_and_stay<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let foreign = [rule("10.20.0.0/16", TABLE), rule("fd00:20::/48", TABLE)];
    for r in foreign {
        fx.add_foreign_rule(r).await;
    }
    for r in foreign {
        assert!(
            !k.ensure_policy_rule(r).await?,
            "{r}: the operator's counts"
        );
        assert!(!k.remove_policy_rule(r).await?, "{r}: not ours to remove");
    }
    assert!(k.owned_rules().await?.is_empty());
    let seen = fx.seen_rules().await;
    for r in foreign {
        let copies: Vec<_> = seen.iter().filter(|(s, _)| *s == r).collect();
        assert_eq!(copies, [&(r, false)], "still there, once, not ours");
    }
    Ok(())
}

// --- gateway shims ---------------------------------------------------------

/// A shim is made once (created, then unchanged): a bridge-mode macvlan of its
/// parent, up, marked with our alias, holding exactly its addresses (IPv6
/// without DAD). A fresh port finds it by its mark and leaves it as it is.
pub async fn shims_are_made_marked_and_found_again<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let a = shim(
        "ry-0-aaaa0000",
        "rail0",
        &["10.10.200.1/24", "fd00:10:200::1/64"],
    );
    assert_eq!(k.ensure_shim(&a).await?, Ensured::Created);
    assert_eq!(
        k.ensure_shim(&a).await?,
        Ensured::Unchanged,
        "twice is a no-op"
    );
    assert_eq!(k.owned_shims().await?, vec![state_of(&a)]);
    let seen = fx
        .seen_link("ry-0-aaaa0000")
        .await
        .expect("the shim exists");
    assert_eq!(
        seen,
        SeenLink {
            macvlan_bridge: true,
            parent: Some("rail0".into()),
            mac: "02:00:5e:aa:00:01".into(),
            alias: Some("railyard:net-a".into()),
            up: true,
            addresses: a.addresses.clone(),
            nodad: true,
            ipv6_ready: true,
        }
    );
    let fresh = fx.reopen().await?;
    assert_eq!(fresh.owned_shims().await?, vec![state_of(&a)]);
    assert_eq!(
        fresh.ensure_shim(&a).await?,
        Ensured::Unchanged,
        "a restart changes nothing"
    );
    Ok(())
}

/// Whatever happened to our shim is put right by the next ensure: down, an
/// address deleted, other addresses wanted (only those stay), another MAC or
/// parent wanted, the link deleted (made again with the same MAC, so pods'
/// neighbour entries stay good).
pub async fn shims_are_repaired_in_place<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let name = "ry-0-bbbb0000";
    let mut a = shim(name, "rail0", &["10.10.201.1/24", "fd00:10:201::1/64"]);
    k.ensure_shim(&a).await?;

    fx.link_down(name).await;
    assert_eq!(k.ensure_shim(&a).await?, Ensured::Repaired, "down");
    fx.delete_address(name, a.addresses[0]).await;
    assert_eq!(k.ensure_shim(&a).await?, Ensured::Repaired, "address gone");
    assert_eq!(k.owned_shims().await?, vec![state_of(&a)]);

    a.addresses = vec![net("10.10.202.1/24")];
    assert_eq!(
        k.ensure_shim(&a).await?,
        Ensured::Repaired,
        "other addresses"
    );
    assert_eq!(
        k.owned_shims().await?,
        vec![state_of(&a)],
        "only the wanted stay"
    );

    a.mac = [0x02, 0x00, 0x5e, 0xbb, 0x00, 0x02];
    assert_eq!(k.ensure_shim(&a).await?, Ensured::Repaired, "another MAC");
    assert_eq!(k.owned_shims().await?, vec![state_of(&a)]);

    a.parent = "rail1".parse().expect("valid by construction");
    assert_eq!(
        k.ensure_shim(&a).await?,
        Ensured::Repaired,
        "another parent"
    );
    assert_eq!(k.owned_shims().await?, vec![state_of(&a)]);

    fx.delete_link(name).await;
    assert!(k.owned_shims().await?.is_empty());
    assert_eq!(
        k.ensure_shim(&a).await?,
        Ensured::Created,
        "deleted by hand"
    );
    let seen = fx.seen_link(name).await.expect("made again");
    assert!(seen.up && seen.macvlan_bridge, "{seen:?}");

    assert_eq!(seen.parent.as_deref(), Some("rail1"));
    assert_eq!(seen.mac, "02:00:5e:bb:00:02", "the same MAC as before");
    assert_eq!(seen.addresses, a.addresses);
    Ok(())
}

/// A link is ours only with both marks: a `ry-` link without our alias holding
/// a wanted shim's name is a conflict and stays as it is; a link with our alias
/// but another name is not listed; neither is ever removed.
pub async fn foreign_links_are_never_touched<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    fx.add_foreign_link("ry-0-cccc0000", "rail0", None).await;
    fx.add_foreign_link("mv-operator", "rail0", Some("railyard:net-a"))
        .await;
    let before = (
        fx.seen_link("ry-0-cccc0000").await,
        fx.seen_link("mv-operator").await,
    );
    assert!(before.0.is_some() && before.1.is_some(), "{before:?}");

    let a = shim("ry-0-cccc0000", "rail0", &["10.10.203.1/24"]);
    assert_eq!(k.ensure_shim(&a).await?, Ensured::Conflict);
    assert!(k.owned_shims().await?.is_empty(), "neither is ours");
    for name in ["ry-0-cccc0000", "mv-operator"] {
        let name: IfName = name.parse().expect("valid by construction");
        assert!(!k.remove_shim(&name).await?, "{name} is not ours to remove");
    }
    let after = (
        fx.seen_link("ry-0-cccc0000").await,
        fx.seen_link("mv-operator").await,
    );
    assert_eq!(after, before, "untouched");
    Ok(())
}

/// Removing takes our shim (true, then false) and nothing else; a shim whose
/// parent does not exist is refused with the parent's name, and nothing is made.
pub async fn shims_are_removed_and_refused_without_their_parent<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let a = shim("ry-0-dddd0000", "rail0", &["10.10.204.1/24"]);
    let b = shim("ry-1-dddd0001", "rail1", &["fd00:11:204::1/64"]);
    for s in [&a, &b] {
        assert_eq!(k.ensure_shim(s).await?, Ensured::Created);
    }
    assert!(k.remove_shim(&a.name).await?);
    assert!(!k.remove_shim(&a.name).await?, "already gone");
    assert_eq!(fx.seen_link("ry-0-dddd0000").await, None);
    assert_eq!(k.owned_shims().await?, vec![state_of(&b)]);

    let orphan = shim("ry-9-dddd0009", "rail9", &["10.10.205.1/24"]);
    match k.ensure_shim(&orphan).await? {
        Ensured::Refused(why) => assert!(why.contains("rail9"), "{why}"),
        other => panic!("a shim without its parent: {other:?}"),
    }
    assert_eq!(fx.seen_link("ry-9-dddd0009").await, None);
    assert_eq!(k.owned_shims().await?, vec![state_of(&b)]);
    Ok(())
}

// --- helpers --------------------------------------------------------------

// --- rail interfaces (spec.ifacer) ----------------------------------------

fn ifname(s: &str) -> IfName {
    s.parse().expect("valid interface name")
}

async fn rail_link<K: RailLinks + ?Sized>(k: &K, name: &str) -> Result<Option<RailLink>> {
    Ok(k.rail_links()
        .await?
        .into_iter()
        .find(|l| l.name.as_str() == name))
}

fn move_step(address: &str, from: &str, to: &str) -> LinkStep {
    LinkStep::MoveAddress {
        address: net(address),
        from: ifname(from),
        to: ifname(to),
    }
}

/// Every link is listed, sorted, with its kind, addresses (global ones,
/// sorted) and whether a default route leaves through it. An address moves
/// (added to the target, then deleted from the source; again is a no-op), an
/// IPv6 one without DAD, and a link set down comes up.
pub async fn rail_links_are_listed_and_addresses_move_between_them<F: Fixture>(
    fx: &F,
) -> Result<()> {
    let k = fx.kernel();
    let links = k.rail_links().await?;
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted by name");
    for (dev, addrs) in RAILS {
        let l = rail_link(k, dev).await?.expect("every rail is listed");
        let mut want: Vec<IpNet> = addrs.iter().map(|a| net(a)).collect();
        want.sort_unstable();
        assert_eq!(l.addresses, want, "{dev}: global addresses only");
        assert_eq!(l.kind, LinkKind::Other, "{dev}");
        assert!(
            l.up && !l.default_route && l.controller.is_none() && !l.ours(),
            "{l:?}"
        );
    }
    fx.add_default_route("rail1").await;
    assert!(rail_link(k, "rail1").await?.expect("listed").default_route);
    assert!(!rail_link(k, "rail0").await?.expect("listed").default_route);

    for address in ["10.10.0.5/16", "fd00:10::5/64"] {
        let step = move_step(address, "rail0", "rail1");
        assert_eq!(k.apply_link_step(&step).await?, StepOutcome::Done);
        assert_eq!(k.apply_link_step(&step).await?, StepOutcome::Done, "again");
    }
    let rail0 = fx.seen_link("rail0").await.expect("rail0");
    assert!(rail0.addresses.is_empty(), "{rail0:?}");
    let rail1 = fx.seen_link("rail1").await.expect("rail1");
    let mut want: Vec<IpNet> = ["10.10.0.5/16", "fd00:10::5/64"]
        .into_iter()
        .chain(RAILS[1].1)
        .map(net)
        .collect();
    want.sort_unstable();
    assert_eq!(rail1.addresses, want);
    assert!(rail1.nodad, "a moved IPv6 address skips DAD: {rail1:?}");
    assert_eq!(
        rail_link(k, "rail1").await?.expect("listed").addresses,
        want,
        "the port sees what others see"
    );

    fx.link_down("rail0").await;
    assert!(!rail_link(k, "rail0").await?.expect("listed").up);
    let up = LinkStep::SetUp {
        name: ifname("rail0"),
    };
    assert_eq!(k.apply_link_step(&up).await?, StepOutcome::Done);
    assert!(fx.seen_link("rail0").await.expect("rail0").up);
    Ok(())
}

/// A step the kernel cannot take now is a refusal naming the link, and changes
/// nothing: a name taken (by a link of any kind) is never reused or changed,
/// a missing parent, slave, bond or target is no error.
pub async fn rail_link_steps_are_refused_not_forced<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    fx.add_foreign_link("rail0.42", "rail0", None).await;
    let before = fx.seen_link("rail0.42").await.expect("made");
    let refused = [
        LinkStep::CreateVlan {
            name: ifname("rail0.42"),
            parent: ifname("rail0"),
            id: 42,
            network: "net-a".into(),
        },
        LinkStep::CreateVlan {
            name: ifname("rail9.42"),
            parent: ifname("rail9"),
            id: 42,
            network: "net-a".into(),
        },
        LinkStep::CreateBond {
            name: ifname("rail0.42"),
            mode: railyard_core::BondMode::ActiveBackup,
            options: railyard_core::BondOptions::default(),
            network: "net-a".into(),
        },
        LinkStep::Enslave {
            slave: ifname("rail1"),
            bond: ifname("rail9"),
        },
        LinkStep::Enslave {
            slave: ifname("rail1"),
            bond: ifname("rail0.42"),
        },
        move_step("10.10.0.5/16", "rail0", "rail9"),
        LinkStep::SetUp {
            name: ifname("rail9"),
        },
    ];
    for step in &refused {
        match k.apply_link_step(step).await? {
            StepOutcome::Refused(why) => assert!(!why.is_empty(), "{step}"),
            StepOutcome::Done => panic!("{step} must be refused"),
        }
    }
    assert_eq!(
        fx.seen_link("rail0.42").await.expect("still there"),
        before,
        "the taken name's link is as it was"
    );
    assert!(fx.seen_link("rail9.42").await.is_none());
    assert_eq!(
        fx.seen_link("rail0").await.expect("rail0").addresses.len(),
        2,
        "nothing moved"
    );
    Ok(())
}

/// A VLAN is made on its parent with its id, marked with our alias, and left
/// down until asked; the parent's address moves onto it; a fresh port lists
/// it the same. Making it again is refused (the name is taken), never a
/// second link.
pub async fn vlans_are_made_marked_and_found_again<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    let create = LinkStep::CreateVlan {
        name: ifname("rail0.42"),
        parent: ifname("rail0"),
        id: 42,
        network: "net-a".into(),
    };
    assert_eq!(
        k.apply_link_step(&create).await?,
        StepOutcome::Done,
        "needs the 8021q module"
    );
    let made = rail_link(k, "rail0.42").await?.expect("listed");
    assert_eq!(
        made.kind,
        LinkKind::Vlan {
            parent: Some(ifname("rail0")),
            id: 42
        }
    );
    assert_eq!(made.alias.as_deref(), Some("railyard:ifacer net-a"));
    assert!(made.ours() && !made.up, "{made:?}");
    assert_eq!(
        fx.seen_kind("rail0.42").await,
        Some(SeenKind {
            kind: Some("vlan".into()),
            vlan_id: Some(42),
            controller: None,
        })
    );
    for address in RAILS[0].1 {
        let step = move_step(address, "rail0", "rail0.42");
        assert_eq!(k.apply_link_step(&step).await?, StepOutcome::Done);
    }
    let up = LinkStep::SetUp {
        name: ifname("rail0.42"),
    };
    assert_eq!(k.apply_link_step(&up).await?, StepOutcome::Done);
    let seen = fx.seen_link("rail0.42").await.expect("made");
    let mut want: Vec<IpNet> = RAILS[0].1.iter().map(|a| net(a)).collect();
    want.sort_unstable();
    assert_eq!(seen.addresses, want);
    assert!(seen.up && seen.nodad, "{seen:?}");
    assert!(fx
        .seen_link("rail0")
        .await
        .expect("rail0")
        .addresses
        .is_empty());

    let fresh = fx.reopen().await?;
    let again = rail_link(&fresh, "rail0.42").await?.expect("listed");
    assert_eq!(again.kind, made.kind);
    assert_eq!(again.addresses, want);
    assert!(matches!(
        fresh.apply_link_step(&create).await?,
        StepOutcome::Refused(_)
    ));
    Ok(())
}

/// A bond is made with its mode, marked, down; the slaves' addresses move
/// onto it before each slave is enslaved (down, master, up: the driver
/// refuses a slave that is up), and enslaving again is a no-op. A slave of
/// one bond is refused by another.
pub async fn bonds_take_their_slaves_and_the_moved_addresses<F: Fixture>(fx: &F) -> Result<()> {
    let k = fx.kernel();
    for name in ["rail8", "rail9"] {
        let create = LinkStep::CreateBond {
            name: ifname(name),
            mode: railyard_core::BondMode::ActiveBackup,
            options: railyard_core::BondOptions {
                miimon: Some(100),
                ..railyard_core::BondOptions::default()
            },
            network: "net-a".into(),
        };
        assert_eq!(
            k.apply_link_step(&create).await?,
            StepOutcome::Done,
            "needs the bonding module"
        );
    }
    let made = rail_link(k, "rail9").await?.expect("listed");
    assert_eq!(made.kind, LinkKind::Bond);
    assert!(made.ours() && !made.up, "{made:?}");
    assert_eq!(
        fx.seen_kind("rail9").await.and_then(|s| s.kind).as_deref(),
        Some("bond")
    );
    for address in RAILS[0].1 {
        let step = move_step(address, "rail0", "rail9");
        assert_eq!(k.apply_link_step(&step).await?, StepOutcome::Done);
    }
    for slave in ["rail0", "rail1"] {
        let enslave = LinkStep::Enslave {
            slave: ifname(slave),
            bond: ifname("rail9"),
        };
        assert_eq!(k.apply_link_step(&enslave).await?, StepOutcome::Done);
        assert_eq!(
            k.apply_link_step(&enslave).await?,
            StepOutcome::Done,
            "again"
        );
        let l = rail_link(k, slave).await?.expect("listed");
        assert_eq!(l.controller, Some(ifname("rail9")), "{l:?}");
        assert!(l.up, "the slave is up again: {l:?}");
        assert_eq!(
            fx.seen_kind(slave)
                .await
                .and_then(|s| s.controller)
                .as_deref(),
            Some("rail9")
        );
    }
    let other = LinkStep::Enslave {
        slave: ifname("rail1"),
        bond: ifname("rail8"),
    };
    assert!(matches!(
        k.apply_link_step(&other).await?,
        StepOutcome::Refused(_)
    ));
    let up = LinkStep::SetUp {
        name: ifname("rail9"),
    };
    assert_eq!(k.apply_link_step(&up).await?, StepOutcome::Done);
    let seen = fx.seen_link("rail9").await.expect("made");
    let mut want: Vec<IpNet> = RAILS[0].1.iter().map(|a| net(a)).collect();
    want.sort_unstable();
    assert_eq!(
        seen.addresses, want,
        "the moved addresses survive enslaving"
    );
    assert!(seen.up, "{seen:?}");
    Ok(())
}

/// A shim of network `net-a` (addresses sorted, as the daemon hands them),
/// MAC 02:00:5e:aa:00:01.
pub fn shim(name: &str, parent: &str, addresses: &[&str]) -> Shim {
    let mut addresses: Vec<IpNet> = addresses.iter().map(|a| net(a)).collect();
    addresses.sort_unstable();
    Shim {
        name: name.parse().expect("valid interface name"),
        parent: parent.parse().expect("valid interface name"),
        mac: [0x02, 0x00, 0x5e, 0xaa, 0x00, 0x01],
        network: "net-a".into(),
        addresses,
    }
}

/// What [`GatewayShims::owned_shims`] lists for `shim` as wanted.
fn state_of(shim: &Shim) -> ShimState {
    ShimState {
        name: shim.name,
        parent: Some(shim.parent),
        mac: shim.mac,
        up: true,
        addresses: shim.addresses.clone(),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().expect("valid address with prefix length")
}

/// `n4` IPv4 /24s and `n6` IPv6 /64s behind rail `rail`'s next hops
/// (10.1x.1.1 .. 10.1x.1.200, fd00:1x::100 .. fd00:1x::1c7; on-link, never the
/// NIC's own address). Rail 0's destinations are 10.128.0.0/24.. and
/// fd00:100:0::/64.., rail 1's 10.144.0.0/24.. and fd00:110:0::/64.. .
pub fn rail_routes(rail: usize, n4: usize, n6: usize, table: u32) -> Vec<Route> {
    assert!(rail < RAILS.len() && n4 <= 4096 && n6 <= 65_536);
    let dev: IfName = RAILS[rail].0.parse().expect("valid by construction");
    let v4 = (0..n4).map(|i| Route {
        dst: format!("10.{}.{}.0/24", 128 + 16 * rail + i / 256, i % 256)
            .parse()
            .expect("valid by construction"),
        gateway: format!("10.1{rail}.1.{}", 1 + i % 200)
            .parse()
            .expect("valid by construction"),
        dev,
        table,
    });
    let v6 = (0..n6).map(|i| Route {
        dst: format!("fd00:1{rail}0:{i:x}::/64")
            .parse()
            .expect("valid by construction"),
        gateway: format!("fd00:1{rail}::{:x}", 0x100 + i % 200)
            .parse()
            .expect("valid by construction"),
        dev,
        table,
    });
    v4.chain(v6).collect()
}

pub fn route(dst: &str, gateway: &str, dev: &str, table: u32) -> Route {
    Route {
        dst: dst.parse().expect("valid destination"),
        gateway: ip(gateway),
        dev: dev.parse().expect("valid interface name"),
        table,
    }
}

fn rule(from: &str, table: u32) -> PolicyRule {
    PolicyRule {
        from: from.parse().expect("valid subnet"),
        table,
        priority: DEFAULT_RULE_PRIORITY,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid address")
}

fn unspecified(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Sorted by table, destination, next hop, device.
pub fn sorted(mut routes: Vec<Route>) -> Vec<Route> {
    routes.sort_by(|a, b| {
        (a.table, a.dst, a.gateway, &a.dev).cmp(&(b.table, b.dst, b.gateway, &b.dev))
    });
    routes
}

fn sorted_actual(mut routes: Vec<ActualRoute>) -> Vec<ActualRoute> {
    routes.sort_by(|a, b| {
        let (a, b) = ((&a.route, a.owned), (&b.route, b.owned));
        (a.0.table, a.0.dst, a.0.gateway, &a.0.dev, a.1).cmp(&(
            b.0.table,
            b.0.dst,
            b.0.gateway,
            &b.0.dev,
            b.1,
        ))
    });
    routes
}

fn sorted_rules(mut rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    rules.sort_unstable();
    rules
}

/// Our routes of `table`, as the port reads them.
async fn ours<K: RouteTable + ?Sized>(k: &K, table: u32) -> Result<Vec<Route>> {
    Ok(sorted(
        k.routes(&[table])
            .await?
            .into_iter()
            .filter(|a| a.owned)
            .map(|a| a.route)
            .collect(),
    ))
}

/// Everyone else's routes of `table`, seen from outside the port.
async fn theirs<F: Fixture>(fx: &F, table: u32) -> Vec<Route> {
    sorted(
        fx.seen_routes(table)
            .await
            .into_iter()
            .filter(|a| !a.owned)
            .map(|a| a.route)
            .collect(),
    )
}
