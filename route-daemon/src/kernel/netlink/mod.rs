//! The kernel port over rtnetlink: reading railyard's and foreign routes,
//! applying a diff, and the `from <subnet>` policy rules that steer pod traffic
//! into a network's own table; and the gateway shims of macvlan networks
//! (`shims.rs`).
//!
//! Routes are written with [`RAILYARD_PROTOCOL`] and the flags that make the
//! ownership rules of [`crate::kernel`] hold in the kernel itself, not only in
//! the diff: adds are `NLM_F_CREATE | NLM_F_EXCL` (a foreign route that appeared
//! since the read makes the kernel answer `EEXIST`, reported as a conflict),
//! replaces are `NLM_F_REPLACE` and are sent only where the read showed our
//! route, and deletes carry our protocol, next hop and device, which the kernel
//! matches, so a foreign route at the same destination survives them.

mod batch;
mod convert;
mod rail_links;
mod rules;
mod shims;

use std::collections::HashMap;

use async_trait::async_trait;
use railyard_core::{ActualRoute, IfName, Route, RouteDiff};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::RouteNetlinkMessage;
use tokio::sync::Mutex;

use super::{ApplyReport, RouteFailure, RouteOp, RouteTable, RAILYARD_PROTOCOL};
use crate::error::Result;
use crate::netlink::Netlink;

pub use batch::Refusal;
pub use convert::{actual_route, del_route_message, new_route_message};

const EEXIST: i32 = 17;
const ESRCH: i32 = 3;

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

/// Asks the kernel to skip duplicate address detection for an IPv6 address
/// being added: the address must answer at once (a gateway pods use, a rail
/// address the host already held), and DAD would hold it tentative, unusable,
/// for a second or more. IPv4 has no DAD; the request is left as it is.
pub(super) fn skip_dad(request: &mut rtnetlink::AddressAddRequest, addr: std::net::IpAddr) {
    if addr.is_ipv6() {
        let msg = request.message_mut();
        msg.header.flags |= rtnetlink::packet_route::address::AddressHeaderFlags::Nodad;
        msg.attributes
            .push(rtnetlink::packet_route::address::AddressAttribute::Flags(
                rtnetlink::packet_route::address::AddressFlags::Nodad,
            ));
    }
}
