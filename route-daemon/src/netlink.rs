//! One rtnetlink connection for the dumps and the rare single requests (rules).
//! Route writes go through [`crate::kernel::netlink`]'s own pipelined socket instead,
//! because netlink-proto sends one request per wake-up.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use railyard_core::IfName;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::packet_route::rule::RuleMessage;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::sys::Socket;
use rtnetlink::{Handle, IpVersion};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

const ENOENT: i32 = 2;

/// A connection to the kernel's routing netlink in the namespace of the thread
/// that opened it. Cheap to clone; the background task ends with the last clone.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
    /// The kernel runs one dump per socket at a time and refuses a second with
    /// EBUSY; registration, reconcile and drift repair dump concurrently, so
    /// every dump of this connection (and its clones) waits its turn here.
    dumping: Arc<Mutex<()>>,
}

impl Netlink {
    /// Opens the connection with strict checking, so the kernel filters dumps by
    /// table instead of sending every route of the host. Needs a tokio runtime.
    pub fn connect() -> Result<Self> {
        require_runtime("open rtnetlink connection")?;
        let (conn, handle, _unsolicited) = rtnetlink::new_connection_with_strict_check()
            .map_err(|e| Error::socket("open rtnetlink connection", e))?;
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            dumping: Arc::new(Mutex::new(())),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    pub(crate) async fn links(&self) -> Result<Vec<LinkMessage>> {
        let _turn = self.dumping.lock().await;
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("dump links", e))
    }

    pub(crate) async fn addresses(&self) -> Result<Vec<AddressMessage>> {
        let _turn = self.dumping.lock().await;
        self.handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("dump addresses", e))
    }

    /// Every route of `table` in one family. A table the kernel never created
    /// holds no routes; that is not an error.
    pub(crate) async fn routes(&self, v6: bool, table: u32) -> Result<Vec<RouteMessage>> {
        let mut query = RouteMessage::default();
        query.header.address_family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        query.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        query.attributes.push(RouteAttribute::Table(table));
        let dumped: std::result::Result<Vec<RouteMessage>, _> = {
            let _turn = self.dumping.lock().await;
            self.handle.route().get(query).execute().try_collect().await
        };
        match dumped {
            Ok(routes) => Ok(routes),
            Err(e) => {
                let err = Error::netlink(format!("dump routes of table {table}"), e);
                if err.errno() == Some(ENOENT) {
                    Ok(Vec::new())
                } else {
                    Err(err)
                }
            }
        }
    }

    pub(crate) async fn rules(&self, v6: bool) -> Result<Vec<RuleMessage>> {
        let version = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let _turn = self.dumping.lock().await;
        self.handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("dump rules", e))
    }

    /// Interface index to name, for turning a route's output interface into the
    /// device name the plan speaks in.
    pub(crate) async fn link_names(&self) -> Result<HashMap<u32, IfName>> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .filter_map(|l| {
                let name = l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                })?;
                // The kernel only hands out names `IfName` accepts.
                Some((l.header.index, IfName::new(&name).ok()?))
            })
            .collect())
    }
}

/// Sockets register with the runtime's reactor and the connection runs as a
/// task; without a runtime that would panic, so say so instead.
pub(crate) fn require_runtime(context: &str) -> Result<()> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|e| Error::socket(context, std::io::Error::other(e)))
}

/// Grows a socket's receive buffer past `net.core.rmem_max` when we may
/// (CAP_NET_ADMIN, which the daemon has anyway), else as far as the limit
/// allows. A full buffer makes the kernel drop messages, so bigger only helps.
pub(crate) fn grow_receive_buffer(socket: &Socket, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt::RcvBufForce};
    if setsockopt(socket, RcvBufForce, &bytes).is_err() {
        if let Err(e) = socket.set_rx_buf_sz(bytes) {
            tracing::debug!(error = %e, "could not grow netlink receive buffer");
        }
    }
}
