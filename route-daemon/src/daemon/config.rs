//! Everything one daemon is told, as plain data: the binary builds it from flags,
//! tests build it by hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use railyard_store::EtcdConfig;

use crate::discovery::FilterConfig;
use crate::kernel::{RoutingMode, DEFAULT_RULE_PRIORITY};

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// This host's name in the plans and its registration key.
    pub node_name: String,
    pub etcd: EtcdConfig,
    /// TTL of the registration lease: a host whose daemon died is seen departed
    /// after about this long.
    pub lease_ttl_secs: i64,
    pub routing: RoutingMode,
    /// Priority of the `from <subnet> lookup <table>` rules (own-table mode).
    pub rule_priority: u32,
    pub filter: FilterConfig,
    /// Registers this file's entry for the host instead of discovered NICs.
    pub static_inventory: Option<PathBuf>,
    /// Where to serve Prometheus metrics; `None` serves none.
    pub metrics_addr: Option<SocketAddr>,
    pub timing: Timing,
    /// The allocation service (socket, durable log); `None` runs routes only.
    pub ipam: Option<crate::ipam::IpamConfig>,
    /// Release the allocations of pods gone from the Kubernetes API (needs
    /// `ipam`); `None` leaves that to the runtime's CNI DEL and GC.
    pub leak_sweep: Option<crate::sweep::LeakSweep>,
    /// The BIRD to drive for routed networks: its configuration file and
    /// control socket (`crate::bgp::BirdFile`); `None` announces nothing.
    pub bird: Option<(PathBuf, PathBuf)>,
}

/// The waits that shape how the daemon batches work. The defaults keep a plan
/// change within tens of milliseconds while folding bursts into one reconcile.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Quiet time after a link event before re-discovering the NICs.
    pub link_debounce: Duration,
    /// Quiet time that ends a burst of reconcile triggers.
    pub quiet: Duration,
    /// Longest wait after the first trigger of a burst.
    pub max_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            link_debounce: Duration::from_millis(100),
            quiet: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        }
    }
}

impl DaemonConfig {
    /// The defaults: own table per network, 10 s lease, the default NIC filter.
    pub fn new(node_name: impl Into<String>, etcd: EtcdConfig) -> Self {
        DaemonConfig {
            node_name: node_name.into(),
            etcd,
            lease_ttl_secs: 10,
            routing: RoutingMode::OwnTable,
            rule_priority: DEFAULT_RULE_PRIORITY,
            filter: FilterConfig::default(),
            static_inventory: None,
            metrics_addr: None,
            timing: Timing::default(),
            ipam: None,
            leak_sweep: None,
            bird: None,
        }
    }
}
