//! IPAM metrics: allocations, releases, failures by reason, latency, free addresses.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use railyard_allocdb::Stats;
use railyard_core::ipam::Response;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    pub op: String,
    pub code: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockLabel {
    pub network: String,
    pub nic: String,
    pub block: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Debug)]
pub struct IpamMetrics {
    pub requests: Family<OpLabel, Counter>,
    pub failures: Family<FailureLabel, Counter>,
    pub latency: Family<OpLabel, Histogram, fn() -> Histogram>,
    pub free: Family<BlockLabel, Gauge>,
    pub allocated: Family<BlockLabel, Gauge>,
    /// Attachments the leak sweep released (pods gone from the Kubernetes API).
    pub leaks_released: Counter,
    /// The leak sweep's lists of the node's pods, by result (listed, failed).
    pub leak_observations: Family<ResultLabel, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl IpamMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = IpamMetrics {
            requests: Family::default(),
            failures: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            free: Family::default(),
            allocated: Family::default(),
            leaks_released: Counter::default(),
            leak_observations: Family::default(),
        };
        registry.register(
            "ipam_requests",
            "IPAM requests served, by operation",
            m.requests.clone(),
        );
        registry.register(
            "ipam_failures",
            "IPAM requests that failed, by operation and CNI error code (100 no NIC, 101 block exhausted, 11 try later)",
            m.failures.clone(),
        );
        registry.register(
            "ipam_request_seconds",
            "Time to serve an IPAM request, durable write included",
            m.latency.clone(),
        );
        registry.register(
            "ipam_block_free_addresses",
            "Free pod addresses per host block",
            m.free.clone(),
        );
        registry.register(
            "ipam_block_allocated_addresses",
            "Allocated pod addresses per host block",
            m.allocated.clone(),
        );
        registry.register(
            "ipam_leaks_released",
            "Attachments the leak sweep released because their pod was gone from the Kubernetes API for the grace period",
            m.leaks_released.clone(),
        );
        registry.register(
            "ipam_leak_observations",
            "Lists of this node's pods made by the leak sweep, by result (a failed one is no observation)",
            m.leak_observations.clone(),
        );
        m
    }

    pub fn leak_observation(&self, result: &str) {
        self.leak_observations
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn observe(&self, op: &str, response: &Response, took: Duration) {
        let label = OpLabel { op: op.to_string() };
        self.requests.get_or_create(&label).inc();
        self.latency
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if let Response::Error(e) = response {
            self.failures
                .get_or_create(&FailureLabel {
                    op: op.to_string(),
                    code: e.code,
                })
                .inc();
        }
    }

    pub fn update_blocks(&self, stats: &Stats) {
        for b in &stats.blocks {
            let label = BlockLabel {
                network: b.network.clone(),
                nic: b.nic.to_string(),
                block: b.cidr.to_string(),
            };
            self.free.get_or_create(&label).set(i64::from(b.free));
            self.allocated
                .get_or_create(&label)
                .set(i64::from(b.allocated));
        }
    }
}
