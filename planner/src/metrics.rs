//! Prometheus metrics of the planner, and the small HTTP endpoint that serves them.
//! A hand-rolled responder instead of a web framework: it answers one GET, and
//! pulling in an HTTP stack for that would double the binary's dependency tree.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkLabel {
    pub network: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub plan_computations: Counter,
    pub plan_write_seconds: Histogram,
    pub plan_transactions: Counter,
    pub hosts_planned: Family<NetworkLabel, Gauge>,
    pub hosts_unplanned: Family<NetworkLabel, Gauge>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("railyard_planner");
        let m = Metrics {
            plan_computations: Counter::default(),
            plan_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            plan_transactions: Counter::default(),
            hosts_planned: Family::default(),
            hosts_unplanned: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "plan_computations",
            "Batches of changes applied to the plan",
            m.plan_computations.clone(),
        );
        registry.register(
            "plan_write_seconds",
            "Time to write one batch of plan changes to etcd",
            m.plan_write_seconds.clone(),
        );
        registry.register(
            "plan_transactions",
            "etcd transactions used to write plans",
            m.plan_transactions.clone(),
        );
        registry.register(
            "hosts_planned",
            "Hosts with an index in the network's plan",
            m.hosts_planned.clone(),
        );
        registry.register(
            "hosts_unplanned",
            "Registered hosts left out of the network's plan",
            m.hosts_unplanned.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the planner leader",
            m.leader.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        railyard_telemetry::render(&self.registry)
    }
}

impl railyard_telemetry::Exposition for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}
