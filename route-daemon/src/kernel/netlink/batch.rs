//! Many route requests over one netlink socket, without waiting for each answer.
//!
//! The kernel handles every message of a `sendmsg` in order and queues one answer
//! per message, so a whole window of requests goes out in one syscall. Requests
//! ask for no acknowledgement: the kernel answers only failures, and a closing
//! NOOP with NLM_F_ACK tells us the window is done. That is one send and one
//! receive per window instead of a round trip per route (what `ip -batch` does).
//! The window is bounded so the answers of a window that fails completely still
//! fit the socket's receive buffer; an overflow would lose answers.

use std::collections::HashMap;
use std::time::Duration;

use rtnetlink::packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
    NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{
    protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket,
};

use crate::error::{Error, Result};

/// Requests per send. Failure answers echo only the header (NETLINK_CAP_ACK) and
/// cost about 1 KiB of receive buffer each, so 128 fit the default 208 KiB.
const WINDOW: usize = 128;
const RECV_BUFFER: usize = 4 << 20;
/// A window is answered in microseconds; a silent kernel means a broken socket.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(10);
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Why the kernel refused one request: the errno and its extended-ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errno: i32,
    pub message: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.errno))?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

pub struct Pipeline {
    socket: TokioSocket,
    seq: u32,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

impl Pipeline {
    /// Opens the socket in the current thread's network namespace. Needs a tokio
    /// runtime (the socket registers with its reactor).
    pub fn open() -> Result<Self> {
        crate::netlink::require_runtime("open route socket")?;
        let mut socket =
            TokioSocket::new(NETLINK_ROUTE).map_err(|e| Error::socket("open route socket", e))?;
        let s = socket.socket_mut();
        s.bind_auto()
            .map_err(|e| Error::socket("bind route socket", e))?;
        s.connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::socket("connect route socket", e))?;
        crate::netlink::grow_receive_buffer(s, RECV_BUFFER);
        s.set_cap_ack(true)
            .map_err(|e| Error::socket("set NETLINK_CAP_ACK", e))?;
        s.set_ext_ack(true)
            .map_err(|e| Error::socket("set NETLINK_EXT_ACK", e))?;
        Ok(Pipeline {
            socket,
            seq: 0,
            send_buf: Vec::with_capacity(64 << 10),
            recv_buf: Vec::with_capacity(64 << 10),
        })
    }

    /// Sends every request (with `flags`, without NLM_F_ACK) and returns, in
    /// request order, `None` for success or the kernel's refusal.
    pub async fn run(
        &mut self,
        requests: Vec<(RouteNetlinkMessage, u16)>,
    ) -> Result<Vec<Option<Refusal>>> {
        let mut results = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let window: Vec<_> = requests.by_ref().take(WINDOW).collect();
            let answers = tokio::time::timeout(WINDOW_TIMEOUT, self.window(window))
                .await
                .map_err(|_| {
                    Error::socket(
                        "route requests",
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "kernel did not answer"),
                    )
                })??;
            results.extend(answers);
        }
        Ok(results)
    }

    async fn window(
        &mut self,
        window: Vec<(RouteNetlinkMessage, u16)>,
    ) -> Result<Vec<Option<Refusal>>> {
        let first = self.seq.wrapping_add(1);
        let count = window.len();
        self.send_buf.clear();
        for (payload, flags) in window {
            self.seq = self.seq.wrapping_add(1);
            let mut msg = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(payload),
            );
            msg.header.flags = NLM_F_REQUEST | flags;
            msg.header.sequence_number = self.seq;
            msg.finalize();
            append(&mut self.send_buf, &msg);
        }
        self.seq = self.seq.wrapping_add(1);
        let barrier = self.seq;
        let mut noop: NetlinkMessage<RouteNetlinkMessage> =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::Noop);
        noop.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        noop.header.sequence_number = barrier;
        noop.finalize();
        // NOOP carries no payload; its type must still be NLMSG_NOOP.
        noop.header.message_type = NLMSG_NOOP;
        append(&mut self.send_buf, &noop);

        let sent = self
            .socket
            .send(&self.send_buf)
            .await
            .map_err(|e| Error::socket("send route requests", e))?;
        if sent != self.send_buf.len() {
            return Err(Error::socket(
                "send route requests",
                std::io::Error::other(format!(
                    "short send: {sent} of {} bytes",
                    self.send_buf.len()
                )),
            ));
        }

        let mut refusals: HashMap<u32, Refusal> = HashMap::new();
        loop {
            self.recv_buf.clear();
            self.socket
                .recv(&mut self.recv_buf)
                .await
                .map_err(|e| Error::socket("receive route answers", e))?;
            let done = parse_answers(&self.recv_buf, barrier, &mut refusals)?;
            if done {
                break;
            }
        }
        Ok((0..count)
            .map(|i| {
                let seq = first.wrapping_add(u32::try_from(i).unwrap_or(u32::MAX));
                refusals.remove(&seq)
            })
            .collect())
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn append(buf: &mut Vec<u8>, msg: &NetlinkMessage<RouteNetlinkMessage>) {
    let start = buf.len();
    let len = msg.buffer_len();
    // Messages in one datagram start at 4-byte boundaries.
    buf.resize(start + len.next_multiple_of(4), 0);
    msg.serialize(&mut buf[start..start + len]);
}

/// Reads the error answers in one datagram into `refusals`; true once the
/// barrier's acknowledgement is seen.
fn parse_answers(data: &[u8], barrier: u32, refusals: &mut HashMap<u32, Refusal>) -> Result<bool> {
    let mut off = 0;
    let mut done = false;
    while off < data.len() {
        let nl =
            NetlinkBuffer::new_checked(&data[off..]).map_err(|e| Error::Decode(e.to_string()))?;
        let len = nl.length() as usize;
        if nl.message_type() == NLMSG_ERROR {
            let err =
                ErrorBuffer::new_checked(nl.payload()).map_err(|e| Error::Decode(e.to_string()))?;
            let seq = nl.sequence_number();
            if seq == barrier {
                done = true;
            } else if let Some(code) = err.code() {
                let message = ext_ack_message(nl.payload(), nl.flags());
                refusals.insert(
                    seq,
                    Refusal {
                        errno: -code.get(),
                        message,
                    },
                );
            }
        }
        if len == 0 {
            break;
        }
        off += len.next_multiple_of(4);
    }
    Ok(done)
}

/// The NLMSGERR_ATTR_MSG text after the echoed request header (or the whole
/// request, when the kernel did not cap the echo).
fn ext_ack_message(payload: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = payload.get(4..)?;
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        NetlinkBuffer::new_checked(echoed).ok()?.length() as usize
    };
    let tlvs = payload.get(4 + echoed_len.next_multiple_of(4)..)?;
    NlasIterator::new(tlvs).flatten().find_map(|nla| {
        (nla.kind() == NLMSGERR_ATTR_MSG).then(|| {
            String::from_utf8_lossy(nla.value())
                .trim_end_matches('\0')
                .to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An NLMSG_ERROR answer as the kernel writes it with CAP_ACK and EXT_ACK.
    fn error_answer(seq: u32, code: i32, msg: Option<&str>) -> Vec<u8> {
        let mut payload = code.to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0u8; 16]); // echoed request header
        let mut flags = 0;
        if let Some(m) = msg {
            flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
            let mut v = m.as_bytes().to_vec();
            v.push(0);
            let nla_len = u16::try_from(4 + v.len()).expect("short");
            payload.extend_from_slice(&nla_len.to_ne_bytes());
            payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            payload.extend_from_slice(&v);
            payload.resize(payload.len().next_multiple_of(4), 0);
        }
        let mut out = u32::try_from(16 + payload.len())
            .expect("short")
            .to_ne_bytes()
            .to_vec();
        out.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn refusals_and_barrier() {
        let mut refusals = HashMap::new();
        let data = error_answer(3, -17, Some("Nexthop device is not up"));
        assert!(!parse_answers(&data, 9, &mut refusals).expect("parse"));
        assert_eq!(
            refusals.get(&3),
            Some(&Refusal {
                errno: 17,
                message: Some("Nexthop device is not up".into())
            })
        );
        let mut both = error_answer(4, -101, None);
        both.extend(error_answer(9, 0, None));
        assert!(parse_answers(&both, 9, &mut refusals).expect("parse"));
        assert_eq!(refusals[&4].message, None);
        assert!(
            refusals[&4].to_string().contains("unreachable"),
            "{}",
            refusals[&4]
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let mut refusals = HashMap::new();
        assert!(parse_answers(&[1, 2, 3], 1, &mut refusals).is_err());
    }
}
