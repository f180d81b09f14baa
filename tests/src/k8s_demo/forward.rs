//! The API server inside each host namespace. kube-apiserver listens on the root
//! namespace's loopback only, and Multus runs inside a host's network namespace
//! (its delegates must: they make the pod's host-side links and routes there),
//! where 127.0.0.1 is that namespace's own loopback. A forwarder thread per host
//! listens on 127.0.0.1:<the API server's port> inside the host namespace and
//! relays each connection to the real one in the root namespace, so the admin
//! kubeconfig (server `https://127.0.0.1:<port>`, whose certificate names
//! 127.0.0.1) works unchanged on every host. TLS passes through untouched.
//!
//! A socket stays in the namespace it was made in: the listener is bound while
//! its thread is in the host namespace, then the thread returns to the root
//! namespace, where the relayed connections are opened.
//!
//! The forwarders live as long as the process: `railyard-k8s-demo up` exits after
//! the check, and a test binary at its end. Until then an open listener keeps a
//! host namespace alive after `down` unnamed it (with its loopback only: the
//! links to it are deleted from the root and fabric sides).

use std::fs::File;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

use nix::sched::{setns, CloneFlags};

use crate::error::{Error, Result};

/// Starts forwarding `127.0.0.1:port` inside network namespace `netns` (a name
/// under /run/netns) to `127.0.0.1:port` of this process's namespace. Runs
/// until the process exits.
pub fn start(netns: &str, port: u16) -> Result<()> {
    let path = format!("/run/netns/{netns}");
    let target = File::open(&path).map_err(|e| Error::io("open the host namespace", &path, e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    thread::Builder::new()
        .name(format!("api-forward-{netns}"))
        .spawn(move || match bind_in(&target, port) {
            Ok(listener) => {
                let _ = tx.send(Ok(()));
                serve(listener, port);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(|e| Error::io("start the API forwarder", &path, e))?;
    rx.recv()
        .unwrap_or_else(|_| Err("the forwarder thread died".into()))
        .map_err(|e| Error::Refused(format!("API forwarder in {netns}: {e}")))
}

/// Binds the listener in `target`'s namespace and returns this thread to its
/// own namespace.
fn bind_in(target: &File, port: u16) -> std::result::Result<TcpListener, String> {
    let own = File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
    setns(target, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
    let bound = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind: {e}"));
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns back: {e}"))?;
    bound
}

fn serve(listener: TcpListener, port: u16) {
    for conn in listener.incoming().flatten() {
        thread::spawn(move || {
            if let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = relay(conn, upstream);
            }
        });
    }
}

/// Copies both ways until either side closes.
fn relay(a: TcpStream, b: TcpStream) -> io::Result<()> {
    let (mut a_read, mut b_write) = (a.try_clone()?, b.try_clone()?);
    let back = thread::spawn(move || {
        let _ = io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(Shutdown::Write);
    });
    let (mut b_read, mut a_write) = (b, a);
    let _ = io::copy(&mut b_read, &mut a_write);
    let _ = a_write.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}
