//! A Kubernetes API server on this machine's loopback, reachable from inside
//! a host's network namespace at the same address: the daemons there use the
//! kubeconfig unchanged (its certificate names 127.0.0.1).
//!
//! A listener on `127.0.0.1:<port>` is bound in the namespace (a socket stays
//! in the namespace it was made in, so the binding thread enters it and
//! leaves again) and each connection is relayed from this process, in the
//! root namespace, to the real server. The relay lives as long as this
//! process: only in-process users (tests) can use it.

use std::collections::BTreeSet;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sched::{setns, CloneFlags};

use crate::error::{Error, Result};

/// Namespaces (and ports) already relayed: a restarted daemon finds its
/// relay still there.
static RELAYED: Mutex<BTreeSet<(PathBuf, u16)>> = Mutex::new(BTreeSet::new());

/// Relays the API server `kubeconfig` names (which must be on
/// `127.0.0.1`) into namespace `/run/netns/<netns>`, once.
pub fn api_into(netns: &str, kubeconfig: &Path) -> Result<()> {
    port_into(
        &Path::new("/run/netns").join(netns),
        loopback_port(kubeconfig)?,
    )
}

/// Relays `127.0.0.1:port` into the namespace at `ns` (a `/run/netns` path),
/// once per namespace and port.
pub fn port_into(ns: &Path, port: u16) -> Result<()> {
    let mut relayed = RELAYED.lock().unwrap_or_else(|e| e.into_inner());
    if relayed.contains(&(ns.to_owned(), port)) {
        return Ok(());
    }
    relay(ns, port)?;
    relayed.insert((ns.to_owned(), port));
    Ok(())
}

/// The port of the kubeconfig's server `https://127.0.0.1:<port>` (in its
/// YAML or JSON form).
fn loopback_port(kubeconfig: &Path) -> Result<u16> {
    let text = std::fs::read_to_string(kubeconfig)
        .map_err(|e| Error::io("read the kubeconfig", kubeconfig, e))?;
    const PREFIX: &str = "https://127.0.0.1:";
    text.match_indices(PREFIX)
        .map(|(i, _)| {
            text[i + PREFIX.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .find_map(|p| p.parse().ok())
        .ok_or_else(|| {
            Error::Refused(format!(
                "{}: its server is not https://127.0.0.1:<port>, which is all a namespace relay serves",
                kubeconfig.display()
            ))
        })
}

fn relay(ns: &Path, port: u16) -> Result<()> {
    let target = std::fs::File::open(ns).map_err(|e| Error::io("open the namespace", ns, e))?;
    let own_path = Path::new("/proc/thread-self/ns/net");
    let own = std::fs::File::open(own_path)
        .map_err(|e| Error::io("open this thread's namespace", own_path, e))?;
    let listener = std::thread::scope(|s| {
        s.spawn(|| -> std::result::Result<TcpListener, String> {
            setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            let l = TcpListener::bind(("127.0.0.1", port));
            setns(own.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            l.map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the binding thread panicked".into()))
    })
    .map_err(|e| {
        Error::Refused(format!(
            "listen on 127.0.0.1:{port} in {}: {e}",
            ns.display()
        ))
    })?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || pipe(conn, port));
        }
    });
    Ok(())
}

/// Copies both ways until each side closes.
fn pipe(conn: TcpStream, port: u16) {
    let Ok(up) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let (Ok(mut a), Ok(mut b)) = (conn.try_clone(), up.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b);
        let _ = b.shutdown(Shutdown::Write);
    });
    let (mut up, mut conn) = (up, conn);
    let _ = std::io::copy(&mut up, &mut conn);
    let _ = conn.shutdown(Shutdown::Write);
    let _ = back.join();
}
