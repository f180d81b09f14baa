//! The kernel's routing tables through rtnetlink: reading railyard's and foreign
//! routes, applying a diff, and the `from <subnet>` policy rules that steer pod
//! traffic into a network's own table.

mod batch;
mod convert;
mod rules;

use std::collections::HashMap;

use async_trait::async_trait;
use railyard_core::{route_table_for, ActualRoute, IfName, Route, RouteDiff};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::RouteNetlinkMessage;
use tokio::sync::Mutex;

use crate::error::Result;
use crate::netlink::Netlink;
use crate::reconcile::{ApplyReport, RouteFailure, RouteOp, RouteTable};

pub use batch::Refusal;
pub use convert::{actual_route, del_route_message, new_route_message};

/// The protocol number (`ip route ... proto 167`) that marks a route as
/// railyard's. It is the whole ownership model: railyard changes and deletes
/// only routes carrying it, so routes of operators, DHCP, BGP daemons or the
/// kernel are never touched, and a restarted daemon finds its routes without
/// any local state. 167 (0xa7) is not assigned in the kernel's rtnetlink.h nor
/// in iproute2's rt_protos; add `167 railyard` to /etc/iproute2/rt_protos for
/// `ip route` to print the name.
pub const RAILYARD_PROTOCOL: u8 = 0xa7;

/// The kernel's main table.
pub const MAIN_TABLE: u32 = 254;

/// Priority of the `from <subnet> lookup <table>` rules: before the main table
/// (32766), after the local table (0), and clear of the low numbers operators
/// tend to use.
pub const DEFAULT_RULE_PRIORITY: u32 = 3_000;

const EEXIST: i32 = 17;
const ESRCH: i32 = 3;

/// Where a network's routes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RoutingMode {
    /// The network's own table (`railyard_core::route_table_for`), reached from
    /// the pods' addresses through a `from <subnet>` rule. Keeps railyard's routes
    /// out of the host's own routing decisions.
    #[default]
    OwnTable,
    /// The main table, where every process of the host uses the routes.
    MainTable,
}

impl RoutingMode {
    pub fn table(self, network: &str) -> u32 {
        match self {
            RoutingMode::OwnTable => route_table_for(network),
            RoutingMode::MainTable => MAIN_TABLE,
        }
    }

    /// Whether this mode needs a policy rule per subnet.
    pub fn needs_rule(self) -> bool {
        self == RoutingMode::OwnTable
    }
}

/// [`RouteTable`] on the kernel of the namespace it was opened in.
#[derive(Debug)]
pub struct NetlinkRoutes {
    netlink: Netlink,
    pipeline: Mutex<batch::Pipeline>,
}

impl NetlinkRoutes {
    /// Needs a tokio runtime; the sockets belong to the calling thread's namespace.
    pub fn new(netlink: Netlink) -> Result<Self> {
        Ok(NetlinkRoutes {
            netlink,
            pipeline: Mutex::new(batch::Pipeline::open()?),
        })
    }

    pub fn netlink(&self) -> &Netlink {
        &self.netlink
    }
}

#[async_trait]
impl RouteTable for NetlinkRoutes {
    async fn routes(&self, tables: &[u32]) -> Result<Vec<ActualRoute>> {
        let names = self.netlink.link_names().await?;
        let mut out = Vec::new();
        for &table in tables {
            for v6 in [false, true] {
                for msg in self.netlink.routes(v6, table).await? {
                    // Strict dumps filter by table already; older kernels ignore
                    // the filter, so check again.
                    if let Some(a) = actual_route(&msg, &names).filter(|a| a.route.table == table) {
                        out.push(a);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn apply(&self, diff: &RouteDiff) -> Result<ApplyReport> {
        let index: HashMap<IfName, u32> = self
            .netlink
            .link_names()
            .await?
            .into_iter()
            .map(|(i, n)| (n, i))
            .collect();
        let mut report = ApplyReport::default();
        let mut ops: Vec<(RouteOp, &Route)> = Vec::with_capacity(diff.len());
        let mut requests = Vec::with_capacity(diff.len());

        // Deletes first: they may free a destination a replace or add needs.
        for r in &diff.delete {
            let msg = del_route_message(r, index.get(&r.dev).copied());
            ops.push((RouteOp::Delete, r));
            requests.push((RouteNetlinkMessage::DelRoute(msg), 0));
        }
        let writes = diff
            .replace
            .iter()
            .map(|r| (RouteOp::Replace, r, NLM_F_CREATE | NLM_F_REPLACE))
            // An add is exclusive: if a foreign route took the destination since
            // we read the table, the kernel refuses instead of replacing it.
            .chain(
                diff.add
                    .iter()
                    .map(|r| (RouteOp::Add, r, NLM_F_CREATE | NLM_F_EXCL)),
            );
        for (op, r, flags) in writes {
            match index.get(&r.dev) {
                Some(&oif) => {
                    ops.push((op, r));
                    requests.push((
                        RouteNetlinkMessage::NewRoute(new_route_message(r, oif)),
                        flags,
                    ));
                }
                None => report.failures.push(RouteFailure {
                    op,
                    route: r.clone(),
                    error: format!("device {:?} does not exist", r.dev),
                }),
            }
        }

        let answers = self.pipeline.lock().await.run(requests).await?;
        for ((op, route), answer) in ops.into_iter().zip(answers) {
            match (op, answer) {
                (RouteOp::Delete, None) => report.deleted += 1,
                // Already gone is what a delete wants.
                (RouteOp::Delete, Some(r)) if r.errno == ESRCH => report.deleted += 1,
                (RouteOp::Replace, None) => report.replaced += 1,
                (RouteOp::Add, None) => report.added += 1,
                (RouteOp::Add, Some(r)) if r.errno == EEXIST => {
                    report.conflicts.push(route.clone())
                }
                (op, Some(refusal)) => report.failures.push(RouteFailure {
                    op,
                    route: route.clone(),
                    error: refusal.to_string(),
                }),
            }
        }
        Ok(report)
    }
}
