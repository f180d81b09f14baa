//! The IPAM socket server with the real allocation database: the protocol over a
//! real unix socket, as the `railyard-ipam` plugin speaks it.

mod socket;

use std::collections::HashSet;

use railyard_core::ipam::Response;
use socket::{me, Daemon, Setup};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A daemon whose peers must run as `uid`, on network `rails` (two rails).
async fn start(uid: u32) -> Daemon {
    socket::start(Setup {
        network: "rails",
        spec: "  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
        uid,
        api: false,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_adds_get_distinct_addresses_on_every_rail() {
    let d = start(me()).await;
    let calls = (0..200).map(|i| {
        let d = &d;
        async move { d.add(&format!("c{i:03}"), &format!("c{i:03}")).await }
    });
    let mut seen = HashSet::new();
    for r in futures::future::join_all(calls).await {
        let Response::Added { nics } = r else {
            panic!("ADD failed: {r:?}")
        };
        assert_eq!(nics.len(), 2, "one address per rail");
        for n in nics {
            for a in n.addresses {
                assert!(seen.insert(a.addr()), "{a} handed out twice");
            }
        }
    }
    assert_eq!(seen.len(), 400);
    // A repeated ADD returns the same addresses.
    let (Response::Added { nics: a }, Response::Added { nics: b }) =
        (d.add("c007", "c007").await, d.add("c007", "c007").await)
    else {
        panic!("repeated ADD failed")
    };
    assert_eq!(a, b);
}

#[tokio::test]
async fn malformed_requests_and_foreign_peers_are_refused() {
    let d = start(me()).await;
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    s.write_all(b"{not json\n").await.unwrap();
    let mut out = String::new();
    BufReader::new(s).read_line(&mut out).await.unwrap();
    let r: Response = serde_json::from_str(&out).unwrap();
    assert!(
        matches!(r, Response::Error(ref e) if e.code == 102 && e.message.contains("malformed")),
        "{r:?}"
    );

    let other = start(me() + 1).await;
    let r = other.add("x", "x").await;
    assert!(
        matches!(r, Response::Error(ref e) if e.message.contains("not allowed")),
        "{r:?}"
    );
    let mode = std::fs::metadata(&d.socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap();
    assert_eq!(mode & 0o777, 0o600, "the socket is root only");
}
