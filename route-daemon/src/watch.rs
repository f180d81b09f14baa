//! Kernel events, coarsened to what the daemon acts on: "the NICs may have
//! changed" (re-discover) and "routes of table T changed" (reconcile T). The
//! kernel pushes them (netlink multicast), so drift is repaired as soon as it
//! happens, with no polling.
//!
//! Start the watch before the first discovery and reconcile: then no change can
//! slip between the initial read and the subscription.

use std::collections::BTreeSet;

use futures::{FutureExt, StreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::route::{RouteAttribute, RouteFlags, RouteMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelEvent {
    /// A link appeared, vanished or changed state, or an address came or went.
    LinksChanged,
    /// A route of this table was added, changed or removed (by anyone, railyard
    /// included: reconciling after our own change finds nothing to do).
    RoutesChanged { table: u32 },
    /// The kernel dropped events because we read too slowly: re-read everything.
    Overrun,
}

/// Queue depth between the netlink reader and the daemon. Bursts are coalesced
/// first, so this only fills when the daemon stalls; then the reader waits.
const CHANNEL_DEPTH: usize = 256;
/// About 8,000 route notifications.
const EVENT_BUFFER: usize = 8 << 20;

/// A running subscription. Dropping it ends the background tasks.
#[derive(Debug)]
pub struct KernelWatch {
    events: mpsc::Receiver<KernelEvent>,
    tasks: [JoinHandle<()>; 2],
}

impl KernelWatch {
    /// Subscribes to link, address and route events of the current thread's
    /// network namespace. Needs a tokio runtime.
    pub fn start() -> Result<Self> {
        crate::netlink::require_runtime("subscribe to kernel events")?;
        let groups = [
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ];
        let (mut conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&groups)
            .map_err(|e| Error::socket("subscribe to link, address and route events", e))?;
        // Room for the events of a large reconcile while this thread is busy
        // sending it; what does not fit is lost and reported as Overrun.
        crate::netlink::grow_receive_buffer(conn.socket_mut().socket_ref(), EVENT_BUFFER);
        let conn_task = tokio::spawn(conn);
        let (tx, events) = mpsc::channel(CHANNEL_DEPTH);
        let forward = tokio::spawn(async move {
            while let Some((first, _)) = messages.next().await {
                // Coalesce everything already queued: ten thousand route events
                // from one reconcile become one RoutesChanged per table.
                let mut burst = BTreeSet::new();
                burst.extend(classify(&first));
                while let Some(Some((msg, _))) = messages.next().now_or_never() {
                    burst.extend(classify(&msg));
                }
                for event in burst {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
            tracing::warn!("kernel event subscription ended");
        });
        Ok(KernelWatch {
            events,
            tasks: [conn_task, forward],
        })
    }

    /// The next event; `None` once the subscription has ended.
    pub async fn recv(&mut self) -> Option<KernelEvent> {
        self.events.recv().await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<KernelEvent> {
        self.events.try_recv().ok()
    }
}

impl Drop for KernelWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What one kernel message means to the daemon, if anything.
pub fn classify(msg: &NetlinkMessage<RouteNetlinkMessage>) -> Option<KernelEvent> {
    match &msg.payload {
        NetlinkPayload::Overrun(_) => Some(KernelEvent::Overrun),
        NetlinkPayload::InnerMessage(inner) => match inner {
            RouteNetlinkMessage::NewLink(_)
            | RouteNetlinkMessage::DelLink(_)
            | RouteNetlinkMessage::NewAddress(_)
            | RouteNetlinkMessage::DelAddress(_) => Some(KernelEvent::LinksChanged),
            RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => route_event(r),
            _ => None,
        },
        _ => None,
    }
}

fn route_event(r: &RouteMessage) -> Option<KernelEvent> {
    if r.header.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let table = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table));
    Some(KernelEvent::RoutesChanged { table })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::address::AddressMessage;
    use rtnetlink::packet_route::link::LinkMessage;
    use rtnetlink::packet_route::neighbour::NeighbourMessage;

    fn msg(inner: RouteNetlinkMessage) -> NetlinkMessage<RouteNetlinkMessage> {
        NetlinkMessage::from(inner)
    }

    #[test]
    fn links_and_addresses_mean_rediscover() {
        for m in [
            RouteNetlinkMessage::NewLink(LinkMessage::default()),
            RouteNetlinkMessage::DelLink(LinkMessage::default()),
            RouteNetlinkMessage::NewAddress(AddressMessage::default()),
            RouteNetlinkMessage::DelAddress(AddressMessage::default()),
        ] {
            assert_eq!(classify(&msg(m)), Some(KernelEvent::LinksChanged));
        }
        assert_eq!(
            classify(&msg(RouteNetlinkMessage::NewNeighbour(
                NeighbourMessage::default()
            ))),
            None
        );
    }

    #[test]
    fn routes_name_their_table() {
        let mut r = RouteMessage::default();
        r.header.table = 254;
        assert_eq!(
            classify(&msg(RouteNetlinkMessage::DelRoute(r.clone()))),
            Some(KernelEvent::RoutesChanged { table: 254 })
        );
        r.header.table = 252;
        r.attributes.push(RouteAttribute::Table(70_000));
        assert_eq!(
            classify(&msg(RouteNetlinkMessage::NewRoute(r.clone()))),
            Some(KernelEvent::RoutesChanged { table: 70_000 })
        );
        r.header.flags.insert(RouteFlags::Cloned);
        assert_eq!(classify(&msg(RouteNetlinkMessage::NewRoute(r))), None);
    }
}
