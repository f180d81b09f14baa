//! Prometheus metrics of the route-daemon, and the small endpoint serving them
//! (the planner's hand-rolled responder: one GET does not justify an HTTP stack).

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ipam::IpamMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkLabel {
    pub network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: Op,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Op {
    Add,
    Replace,
    Delete,
}

/// Where this host's registration stands; exported one-hot, so an alert can
/// say "not registered for 5 minutes" without knowing numeric codes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RegistrationState {
    /// Not (yet) written, or the lease was lost and a new one is being set up.
    Unregistered,
    /// Written under a lease that etcd confirmed recently.
    Registered,
    /// Written, but etcd has not confirmed the lease lately (unreachable).
    Unconfirmed,
}

impl RegistrationState {
    const ALL: [RegistrationState; 3] = [
        RegistrationState::Unregistered,
        RegistrationState::Registered,
        RegistrationState::Unconfirmed,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: RegistrationState,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub routes_desired: Family<NetworkLabel, Gauge>,
    pub routes_applied: Family<NetworkLabel, Gauge>,
    pub route_conflicts: Family<NetworkLabel, Gauge>,
    pub route_failures: Family<NetworkLabel, Gauge>,
    pub route_changes: Family<OpLabel, Counter>,
    pub routes_repaired: Counter,
    pub reconcile_seconds: Histogram,
    pub reconcile_errors: Counter,
    pub registration: Family<StateLabel, Gauge>,
    pub registrations: Counter,
    pub store_errors: Counter,
    /// Routed rails (`docs/design/routed-rails.md`): BIRD reloads that went
    /// through, applies refused or unanswered (retried), and routed blocks
    /// whose NIC has no usable link to a leaf.
    pub bird_reloads: Counter,
    pub bird_failures: Counter,
    pub routed_links_missing: Gauge,
    /// The allocation service's metrics, on the same endpoint.
    pub ipam: Arc<IpamMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("railyard_route_daemon");
        let m = Metrics {
            routes_desired: Family::default(),
            routes_applied: Family::default(),
            route_conflicts: Family::default(),
            route_failures: Family::default(),
            route_changes: Family::default(),
            routes_repaired: Counter::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
            reconcile_errors: Counter::default(),
            registration: Family::default(),
            registrations: Counter::default(),
            store_errors: Counter::default(),
            bird_reloads: Counter::default(),
            bird_failures: Counter::default(),
            routed_links_missing: Gauge::default(),
            ipam: Arc::new(IpamMetrics::new(&mut registry)),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "routes_desired",
            "Routes the plan asks this host to hold",
            m.routes_desired.clone(),
        );
        r.register(
            "routes_applied",
            "Desired routes the kernel holds as railyard's after the last reconcile",
            m.routes_applied.clone(),
        );
        r.register(
            "route_conflicts",
            "Desired routes whose destination a route railyard does not own holds (left alone)",
            m.route_conflicts.clone(),
        );
        r.register(
            "route_failures",
            "Desired routes the kernel refused in the last reconcile",
            m.route_failures.clone(),
        );
        r.register(
            "route_changes",
            "Routes added, replaced or deleted",
            m.route_changes.clone(),
        );
        r.register(
            "routes_repaired",
            "Routes re-added or fixed after someone removed or changed them (drift)",
            m.routes_repaired.clone(),
        );
        r.register(
            "reconcile_seconds",
            "Time of one reconcile of one table (read, diff, apply)",
            m.reconcile_seconds.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconciles that failed as a whole (netlink errors); retried with backoff",
            m.reconcile_errors.clone(),
        );
        r.register(
            "registration_state",
            "1 for the state this host's registration is in",
            m.registration.clone(),
        );
        r.register(
            "registrations",
            "Writes of this host's registration (first, NIC changes, new leases)",
            m.registrations.clone(),
        );
        r.register(
            "store_errors",
            "Failed etcd calls and interrupted watches (retried)",
            m.store_errors.clone(),
        );
        r.register(
            "bird_reloads",
            "BIRD configurations put in force (routed rails: this host's announcements)",
            m.bird_reloads.clone(),
        );
        r.register(
            "bird_failures",
            "BIRD configurations refused or BIRD not answering (retried with backoff), or the BIRD guard's heartbeat not written",
            m.bird_failures.clone(),
        );
        r.register(
            "routed_links_missing",
            "Routed blocks of this host whose NIC has no usable link to its leaf",
            m.routed_links_missing.clone(),
        );
        let m = Metrics { registry, ..m };
        m.set_registration(RegistrationState::Unregistered);
        m
    }
}

impl Metrics {
    pub fn set_registration(&self, now: RegistrationState) {
        for state in RegistrationState::ALL {
            self.registration
                .get_or_create(&StateLabel { state })
                .set(i64::from(state == now));
        }
    }

    pub fn registration_state(&self) -> RegistrationState {
        RegistrationState::ALL
            .into_iter()
            .find(|&state| self.registration.get_or_create(&StateLabel { state }).get() == 1)
            .unwrap_or(RegistrationState::Unregistered)
    }

    pub fn changes(&self, op: Op) -> Counter {
        self.route_changes.get_or_create(&OpLabel { op }).clone()
    }

    pub fn render(&self) -> String {
        railyard_telemetry::render(&self.registry)
    }
}

impl railyard_telemetry::Exposition for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}
