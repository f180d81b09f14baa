//! The plugin's side of the route-daemon's allocation socket.
//!
//! Synchronous on purpose: the plugin lives for one request, so an async
//! runtime would only add start-up time. One connection carries one request
//! line and one response line (see [`railyard_core::ipam`]).
//!
//! Every way of not getting an answer (no socket file, connection refused,
//! a full accept backlog, a daemon that dies or stalls mid-request) is the
//! same fact to a runtime, "the daemon is restarting or overloaded", so all
//! of them become [`Error::DaemonUnreachable`] (code 11) and the runtime
//! retries. That is safe because every request is idempotent at the daemon.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use railyard_core::ipam::{
    AttachmentId, NicAllocation, NicChoice, PodRef, Request, Response, Selection,
};

use crate::Error;

/// How long one request may take, connect to last byte, unless configured.
/// The daemon answers from local state, so anything near this is a stall.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connect only blocks when the daemon stopped accepting; don't wait the
/// whole request budget for that.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A response is a few hundred bytes per NIC; a megabyte is a broken peer.
const MAX_RESPONSE: usize = 1 << 20;

/// A client for one daemon socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Client {
        Client {
            socket: socket.into(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Allocates for an attachment; the daemon's answer, one entry per NIC.
    pub fn add(
        &self,
        attachment: AttachmentId,
        pod: PodRef,
        selection: Selection,
        master: Option<String>,
    ) -> Result<Vec<NicAllocation>, Error> {
        let request = Request::Add {
            attachment,
            pod,
            selection,
            master,
        };
        match self.call(&request)? {
            Response::Added { nics } => Ok(nics),
            other => Err(self.unexpected("added", &other)),
        }
    }

    /// External IPAM: the NICs the pod gets and their host blocks, in the
    /// policy's order; the daemon allocates nothing.
    pub fn choose(
        &self,
        attachment: AttachmentId,
        pod: PodRef,
        selection: Selection,
    ) -> Result<Vec<NicChoice>, Error> {
        let request = Request::Choose {
            attachment,
            pod,
            selection,
        };
        match self.call(&request)? {
            Response::Chosen { nics } => Ok(nics),
            other => Err(self.unexpected("chosen", &other)),
        }
    }

    pub fn del(&self, attachment: AttachmentId) -> Result<(), Error> {
        self.expect_done(&Request::Del { attachment })
    }

    pub fn check(&self, attachment: AttachmentId) -> Result<(), Error> {
        self.expect_done(&Request::Check { attachment })
    }

    /// Returns how many attachments the daemon released.
    pub fn gc(&self, network: String, valid: Vec<AttachmentId>) -> Result<u32, Error> {
        match self.call(&Request::Gc { network, valid })? {
            Response::Collected { released } => Ok(released),
            // A daemon with nothing to release may say so briefly.
            Response::Done => Ok(0),
            other => Err(self.unexpected("collected", &other)),
        }
    }

    pub fn status(&self, network: String) -> Result<(), Error> {
        self.expect_done(&Request::Status { network })
    }

    /// One round trip. A [`Response::Error`] comes back as `Err` with the
    /// daemon's code and message, so callers only see successes.
    pub fn call(&self, request: &Request) -> Result<Response, Error> {
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect(self.timeout.min(CONNECT_TIMEOUT))?;
        let mut line = serde_json::to_vec(request).map_err(|e| Error::Internal {
            reason: format!("serializing a daemon request: {e}"),
        })?;
        line.push(b'\n');
        stream
            .set_write_timeout(Some(remaining(deadline).max(Duration::from_millis(1))))
            .and_then(|()| stream.write_all(&line))
            .map_err(|e| self.io_failure("sending the request", &e))?;
        let reply = self.read_line(&mut stream, deadline)?;
        let response: Response = serde_json::from_slice(&reply).map_err(|e| {
            Error::decode(
                format!("response of the railyard daemon at {}", self.shown()),
                e,
            )
        })?;
        match response {
            Response::Error(reply) => Err(Error::Daemon {
                socket: self.shown(),
                code: reply.code,
                message: reply.message,
            }),
            ok => Ok(ok),
        }
    }

    fn expect_done(&self, request: &Request) -> Result<(), Error> {
        match self.call(request)? {
            Response::Done => Ok(()),
            other => Err(self.unexpected("done", &other)),
        }
    }

    /// `UnixStream::connect` has no timeout: it blocks while the daemon's
    /// accept backlog is full. A non-blocking connect says so at once instead
    /// (EAGAIN), so the plugin retries until the timeout without a helper
    /// thread, whose start cost every ADD used to pay.
    fn connect(&self, timeout: Duration) -> Result<UnixStream, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match connect_nonblocking(&self.socket) {
                Ok(stream) => return Ok(stream),
                Err(Errno::EAGAIN) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(Errno::EAGAIN) => {
                    return Err(self.unreachable(format!(
                        "its accept queue stayed full for {}",
                        secs(timeout)
                    )))
                }
                Err(e) => {
                    return Err(self.unreachable(format!("connect: {}", e.desc())));
                }
            }
        }
    }

    /// Reads up to the first newline (or EOF) under one overall deadline;
    /// a per-read timeout alone would let a slow trickle run forever.
    fn read_line(&self, stream: &mut UnixStream, deadline: Instant) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let left = remaining(deadline);
            if left.is_zero() {
                return Err(self.timed_out());
            }
            if let Err(e) = stream.set_read_timeout(Some(left)) {
                return Err(self.io_failure("waiting for the response", &e));
            }
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let start = buf.len();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
                        buf.truncate(start + pos);
                        return Ok(buf);
                    }
                    if buf.len() > MAX_RESPONSE {
                        return Err(Error::decode(
                            format!("response of the railyard daemon at {}", self.shown()),
                            format!("no end of line within {MAX_RESPONSE} bytes"),
                        ));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(self.timed_out())
                }
                Err(e) => return Err(self.io_failure("waiting for the response", &e)),
            }
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Err(self.unreachable("it closed the connection without answering".into()));
        }
        Ok(buf)
    }

    fn io_failure(&self, doing: &str, e: &std::io::Error) -> Error {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            return self.timed_out();
        }
        self.unreachable(format!("{doing}: {e}"))
    }

    fn timed_out(&self) -> Error {
        self.unreachable(format!("no answer within {}", secs(self.timeout)))
    }

    fn unreachable(&self, reason: String) -> Error {
        Error::DaemonUnreachable {
            socket: self.shown(),
            reason,
        }
    }

    /// A daemon answering with the wrong kind of response runs a different
    /// protocol revision than this plugin: a deployment mismatch to report,
    /// not to retry.
    fn unexpected(&self, wanted: &str, got: &Response) -> Error {
        let got = serde_json::to_string(got).unwrap_or_else(|_| format!("{got:?}"));
        Error::decode(
            format!("response of the railyard daemon at {}", self.shown()),
            format!("expected result {wanted:?}, got {got}"),
        )
    }

    fn shown(&self) -> String {
        self.socket.display().to_string()
    }
}

/// One connect attempt; the stream it returns is blocking again (reads and
/// writes use the socket timeouts).
fn connect_nonblocking(path: &Path) -> nix::Result<UnixStream> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    let stream = UnixStream::from(fd);
    stream
        .set_nonblocking(false)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    Ok(stream)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;

    fn serve_once(dir: &Path, answer: &'static str) -> (PathBuf, std::thread::JoinHandle<String>) {
        let path = dir.join("d.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            reader.get_mut().write_all(answer.as_bytes()).unwrap();
            line
        });
        (path, handle)
    }

    fn id() -> AttachmentId {
        AttachmentId {
            network: "rdma".into(),
            container_id: "c1".into(),
            ifname: "net1".into(),
        }
    }

    #[test]
    fn sends_one_line_and_reads_one() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = serve_once(dir.path(), "{\"result\":\"done\"}\n");
        Client::new(&path, DEFAULT_TIMEOUT).del(id()).unwrap();
        let sent: Request = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(sent, Request::Del { attachment: id() });
    }

    #[test]
    fn daemon_error_keeps_code_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = serve_once(
            dir.path(),
            "{\"result\":\"error\",\"code\":101,\"message\":\"rail 1 block full\"}\n",
        );
        let err = Client::new(&path, DEFAULT_TIMEOUT).check(id()).unwrap_err();
        assert_eq!(
            (err.code(), err.to_string()),
            (101, "rail 1 block full".into())
        );
    }

    #[test]
    fn wrong_kind_of_answer_is_a_decode_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = serve_once(dir.path(), "{\"result\":\"done\"}");
        let err = Client::new(&path, DEFAULT_TIMEOUT)
            .add(id(), PodRef::default(), Selection::default(), None)
            .unwrap_err();
        assert_eq!(err.code(), codes::DECODE_FAILURE, "{err}");
        assert!(
            err.to_string().contains("expected result \"added\""),
            "{err}"
        );
    }

    #[test]
    fn missing_socket_and_silent_close_are_code_11_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        let err = Client::new(&missing, DEFAULT_TIMEOUT)
            .del(id())
            .unwrap_err();
        assert_eq!(err.code(), codes::TRY_AGAIN_LATER);
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let (path, _server) = serve_once(dir.path(), "");
        let err = Client::new(&path, DEFAULT_TIMEOUT).del(id()).unwrap_err();
        assert_eq!(err.code(), codes::TRY_AGAIN_LATER);
        assert!(err.to_string().contains("without answering"), "{err}");
    }

    #[test]
    fn a_stalled_daemon_times_out_with_code_11() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stall.sock");
        // Bound but never accepting: the connect succeeds (backlog), the
        // answer never comes.
        let _listener = UnixListener::bind(&path).unwrap();
        let started = Instant::now();
        let err = Client::new(&path, Duration::from_millis(300))
            .status("rdma".into())
            .unwrap_err();
        assert_eq!(err.code(), codes::TRY_AGAIN_LATER);
        assert!(err.to_string().contains("no answer within 0.3s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
