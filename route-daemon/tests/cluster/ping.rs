//! ICMP echo over a raw socket, so the connectivity test needs no `ping` binary
//! (iputils is not on every machine that runs these tests). Blocking: call it
//! on a thread inside the source namespace.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    bind, recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag,
    SockProtocol, SockType, SockaddrStorage,
};
use nix::sys::time::TimeVal;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// Sends echo requests from `src` to `dst` (one every 200 ms) until a reply
/// comes or `timeout` passes; returns the round trip of the answered one.
pub fn ping(src: IpAddr, dst: IpAddr, timeout: Duration) -> Result<Duration, String> {
    let v6 = dst.is_ipv6();
    let (family, proto) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    let fd = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)
        .map_err(|e| format!("raw socket: {e}"))?;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(src, 0)),
    )
    .map_err(|e| format!("bind {src}: {e}"))?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let id = (std::process::id() as u16) ^ 0x5259;
    let to = SockaddrStorage::from(SocketAddr::new(dst, 0));
    let deadline = Instant::now() + timeout;
    let mut seq: u16 = 0;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        seq = seq.wrapping_add(1);
        let sent = Instant::now();
        let request = echo_request(v6, id, seq);
        sendto(fd.as_raw_fd(), &request, &to, MsgFlags::empty())
            .map_err(|e| format!("send to {dst}: {e}"))?;
        while sent.elapsed() < Duration::from_millis(200) {
            let Ok((n, from)) = recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf) else {
                continue; // timed out or interrupted: keep waiting until the next send
            };
            let from_dst = from.and_then(|a| peer_ip(&a)) == Some(dst);
            if from_dst && is_reply(v6, &buf[..n], id) {
                return Ok(sent.elapsed());
            }
        }
    }
    Err(format!(
        "no echo reply from {dst} (source {src}) within {timeout:?}"
    ))
}

fn peer_ip(a: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"railyard");
    // The kernel fills in the ICMPv6 checksum (it covers a pseudo header).
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// A reply to one of our requests. ICMPv4 raw sockets hand over the IP header too.
fn is_reply(v6: bool, packet: &[u8], id: u16) -> bool {
    let icmp = if v6 {
        packet
    } else {
        let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        packet.get(ihl..).unwrap_or_default()
    };
    let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    icmp.len() >= 8 && icmp[0] == want && icmp[4..6] == id.to_be_bytes()
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
