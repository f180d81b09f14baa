//! The per-rail throughput of `railyard check --throughput`: a short TCP
//! transfer from one pod to another on each rail, in Mbit/s, like the BANDWIDTH
//! column of multi-nic-cni's concheck. No iperf: the receiver and the sender are
//! two threads of this process, each moved into its pod's network namespace
//! (`setns` on a thread changes only that thread, and a socket stays in the
//! namespace it was made in). Bounded in bytes and in time, and only between
//! named namespaces on this machine (the local cluster's pods).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

/// At most this much is sent per transfer...
pub const MAX_BYTES: u64 = 256 << 20;
/// ...and for at most this long.
pub const MAX_TIME: Duration = Duration::from_millis(500);
/// The receiver's port in the destination pod.
const PORT: u16 = 47_011;

/// Sends to `dst` (an address of the pod in network namespace `to`) from the
/// pod in namespace `from`; the received rate in Mbit/s, or an error saying
/// which step failed.
pub fn measure(from: &str, to: &str, dst: IpAddr) -> Result<f64, String> {
    let listener = in_netns(to, move || {
        TcpListener::bind(SocketAddr::new(dst, PORT)).map_err(|e| format!("listen on {dst}: {e}"))
    })?;
    let receiver = std::thread::spawn(move || -> Result<(u64, Duration), String> {
        let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        conn.set_read_timeout(Some(MAX_TIME * 4)).ok();
        let mut buf = vec![0u8; 1 << 16];
        let (mut got, start) = (0u64, Instant::now());
        loop {
            match conn.read(&mut buf) {
                Ok(0) => return Ok((got, start.elapsed())),
                Ok(n) => got += n as u64,
                Err(e) => return Err(format!("receive: {e}")),
            }
        }
    });
    let sent = in_netns(from, move || {
        let addr = SocketAddr::new(dst, PORT);
        let mut conn = TcpStream::connect_timeout(&addr, MAX_TIME)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        conn.set_write_timeout(Some(MAX_TIME)).ok();
        let buf = vec![0x5au8; 1 << 16];
        let (mut sent, start) = (0u64, Instant::now());
        while sent < MAX_BYTES && start.elapsed() < MAX_TIME {
            sent += conn.write(&buf).map_err(|e| format!("send: {e}"))? as u64;
        }
        Ok(sent)
    });
    if sent.is_err() {
        // Unblock the receiver's accept so its thread ends.
        let _ = in_netns(to, move || {
            TcpStream::connect_timeout(&SocketAddr::new(dst, PORT), MAX_TIME)
                .map_err(|e| e.to_string())
        });
    }
    let sent = sent?;
    let (got, took) = receiver
        .join()
        .map_err(|_| "the receiver panicked".to_owned())??;
    if got != sent {
        return Err(format!("sent {sent} bytes, received {got}"));
    }
    Ok(got as f64 * 8.0 / took.as_secs_f64().max(1e-6) / 1e6)
}

/// Runs `f` on a fresh thread inside network namespace `name` (/run/netns).
fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let path = format!("/run/netns/{name}");
    let ns = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    std::thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("enter {path}: {e}"))?;
        f()
    })
    .join()
    .map_err(|_| "the probe thread panicked".to_owned())?
}
