//! `railyard check-agent`: the connection check inside a Kubernetes cluster.
//!
//! Outside a cluster, `railyard check` enters each pod's network namespace
//! itself. Inside one it cannot, so the probes are made by agents: one pod per
//! node (the DaemonSet of `deploy/kubernetes/check.yaml`), attached to the
//! network like any workload, each running this server. The check (the Job of
//! the same file, itself attached to the network) asks every agent, over the
//! rails, to probe every other agent on every rail and to send a short transfer
//! per rail, as multi-nic-cni's concheck does with its server and client pods.
//!
//! One request per connection, one JSON line each way. A probe is a TCP
//! connection to the peer agent answered by a `pong`: it proves the path both
//! ways and that the peer is the agent, without raw sockets (ICMP would need
//! `NET_RAW` in every agent). A transfer is the same bounded stream as the
//! local check's (`throughput`): at most 256 MiB or 0.5 s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::throughput::{MAX_BYTES, MAX_TIME};

/// The agents' port (TCP, on every address of the pod).
pub const DEFAULT_PORT: u16 = 47_012;
/// How long a probe waits for the connection and the pong.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A request line longer than this is refused (a probe list of ~10,000 peers).
const MAX_LINE: u64 = 1 << 20;
/// Connections served at once; more are closed (the check retries nothing, so
/// it reports them as failed probes rather than queueing without bound).
const MAX_CONNECTIONS: usize = 256;
/// Probes one agent runs at once.
const PROBE_PARALLEL: usize = 16;

/// What the check asks of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Answered by [`Reply::Pong`]: a probe's other end.
    Ping,
    /// Probe each address (each another agent's, on `port`).
    Probe { targets: Vec<IpAddr>, port: u16 },
    /// A bounded transfer to the agent at `dst`; answered with its rate.
    Send { dst: IpAddr, port: u16 },
    /// The receiving end of `Send`: counts what arrives until EOF.
    Sink,
}

/// An agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "camelCase")]
pub enum Reply {
    Pong,
    /// One entry per target, in order: reached or not.
    Probed {
        reached: Vec<bool>,
    },
    Sent {
        mbit_per_s: Option<f64>,
        error: Option<String>,
    },
    Sunk {
        bytes: u64,
    },
    Refused {
        reason: String,
    },
}

/// Serves requests on `listener` until the process ends.
pub fn serve(listener: TcpListener) -> std::io::Result<()> {
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let busy = Arc::clone(&busy);
        std::thread::spawn(move || {
            if let Err(e) = handle(conn) {
                eprintln!("railyard check-agent: {e}");
            }
            busy.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn handle(conn: TcpStream) -> Result<(), String> {
    conn.set_read_timeout(Some(MAX_TIME * 8)).ok();
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    let request = read_line(&mut reader)?;
    let reply = match serde_json::from_str::<Request>(&request) {
        Err(e) => Reply::Refused {
            reason: format!("not a request ({e}): {request:.200}"),
        },
        Ok(Request::Ping) => Reply::Pong,
        Ok(Request::Probe { targets, port }) => Reply::Probed {
            reached: probe_all(&targets, port),
        },
        Ok(Request::Send { dst, port }) => match send(dst, port) {
            Ok(rate) => Reply::Sent {
                mbit_per_s: Some(rate),
                error: None,
            },
            Err(e) => Reply::Sent {
                mbit_per_s: None,
                error: Some(e),
            },
        },
        Ok(Request::Sink) => {
            let mut bytes = reader.buffer().len() as u64;
            reader.consume(reader.buffer().len());
            let mut buf = vec![0u8; 1 << 16];
            let mut inner = reader.into_inner();
            loop {
                match inner.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => bytes += n as u64,
                    Err(e) => return Err(format!("receiving: {e}")),
                }
            }
            Reply::Sunk { bytes }
        }
    };
    write_line(&conn, &reply)
}

/// Each target probed, [`PROBE_PARALLEL`] at a time, results in order.
fn probe_all(targets: &[IpAddr], port: u16) -> Vec<bool> {
    let mut reached = vec![false; targets.len()];
    for (chunk, out) in targets
        .chunks(PROBE_PARALLEL)
        .zip(reached.chunks_mut(PROBE_PARALLEL))
    {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|dst| s.spawn(move || ask(*dst, port, &Request::Ping, PROBE_TIMEOUT)))
                .collect();
            for (slot, h) in out.iter_mut().zip(handles) {
                *slot = matches!(h.join(), Ok(Ok(Reply::Pong)));
            }
        });
    }
    reached
}

/// The sending end of a transfer: the rate the sink counted.
fn send(dst: IpAddr, port: u16) -> Result<f64, String> {
    let addr = SocketAddr::new(dst, port);
    let mut conn = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    conn.set_write_timeout(Some(MAX_TIME)).ok();
    conn.set_read_timeout(Some(MAX_TIME * 4)).ok();
    write_line(&conn, &Request::Sink)?;
    let buf = vec![0x5au8; 1 << 16];
    let (mut sent, start) = (0u64, Instant::now());
    while sent < MAX_BYTES && start.elapsed() < MAX_TIME {
        sent += conn.write(&buf).map_err(|e| format!("send: {e}"))? as u64;
    }
    conn.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("send: {e}"))?;
    let reply = read_line(&mut BufReader::new(&conn))?;
    let took = start.elapsed();
    match serde_json::from_str::<Reply>(&reply) {
        Ok(Reply::Sunk { bytes }) if bytes == sent => {
            Ok(bytes as f64 * 8.0 / took.as_secs_f64().max(1e-6) / 1e6)
        }
        Ok(Reply::Sunk { bytes }) => Err(format!("sent {sent} bytes, {addr} received {bytes}")),
        _ => Err(format!("{addr} answered {reply:.200}")),
    }
}

/// One request to the agent at `dst`, its reply.
pub fn ask(dst: IpAddr, port: u16, request: &Request, timeout: Duration) -> Result<Reply, String> {
    let addr = SocketAddr::new(dst, port);
    let conn = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT.min(timeout))
        .map_err(|e| format!("connect to agent {addr}: {e}"))?;
    conn.set_read_timeout(Some(timeout)).ok();
    conn.set_write_timeout(Some(timeout)).ok();
    write_line(&conn, request)?;
    let line = read_line(&mut BufReader::new(&conn))?;
    serde_json::from_str(&line).map_err(|e| format!("agent {addr} answered ({e}): {line:.200}"))
}

fn write_line(mut conn: &TcpStream, value: &impl Serialize) -> Result<(), String> {
    let mut line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    line.push(b'\n');
    conn.write_all(&line).map_err(|e| format!("write: {e}"))
}

fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader
        .take(MAX_LINE)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    if !line.ends_with('\n') {
        return Err(format!(
            "no complete line within {MAX_LINE} bytes: {line:.200}"
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// An agent on every IPv4 address (127.0.0.2 is another "pod").
    fn agent() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || serve(listener));
        port
    }

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn probes_reach_agents_and_not_silence() {
        let port = agent();
        let closed = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
            l.local_addr().expect("addr").port()
        };
        let reply = ask(LO, port, &Request::Ping, PROBE_TIMEOUT).expect("ping");
        assert_eq!(reply, Reply::Pong);
        let probe = Request::Probe {
            targets: vec![LO, "127.0.0.2".parse().expect("ip")],
            port,
        };
        let reply = ask(LO, port, &probe, Duration::from_secs(5)).expect("probe");
        assert_eq!(
            reply,
            Reply::Probed {
                reached: vec![true, true]
            }
        );
        // A port nobody serves is not reached.
        let probe = Request::Probe {
            targets: vec![LO],
            port: closed,
        };
        let reply = ask(LO, port, &probe, Duration::from_secs(5)).expect("probe");
        assert_eq!(
            reply,
            Reply::Probed {
                reached: vec![false]
            }
        );
    }

    #[test]
    fn a_transfer_is_counted_by_the_sink() {
        let port = agent();
        let reply = ask(
            LO,
            port,
            &Request::Send { dst: LO, port },
            Duration::from_secs(5),
        )
        .expect("send");
        let Reply::Sent {
            mbit_per_s: Some(rate),
            error: None,
        } = reply
        else {
            panic!("{reply:?}");
        };
        assert!(rate > 0.0, "{rate}");
    }

    #[test]
    fn garbage_is_refused_with_what_was_read() {
        let port = agent();
        let conn = TcpStream::connect((LO, port)).expect("connect");
        (&conn).write_all(b"{\"op\":\"dance\"}\n").expect("write");
        let line = read_line(&mut BufReader::new(&conn)).expect("reply");
        let reply: Reply = serde_json::from_str(&line).expect("json");
        let Reply::Refused { reason } = reply else {
            panic!("{line}")
        };
        assert!(reason.contains("dance"), "{reason}");
    }
}
