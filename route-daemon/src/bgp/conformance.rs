//! The behaviour every [`BirdControl`] must have, as one suite that
//! [`MemoryBird`](super::MemoryBird) and [`BirdFile`](super::BirdFile) on a
//! real BIRD both run (`tests/bird_control.rs`). The in-memory twin stands in
//! for BIRD in the daemon's tests only because it passes these same cases.
//!
//! A case mismatch panics with a message; [`run_all`] runs the cases in
//! order, each starting from where the previous one left BIRD.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use railyard_core::fabric::{AcceptRange, Bgp, Session};
use railyard_core::IfName;

use super::port::{declared_protocols, Applied, BirdControl, BirdError};
use super::render;

/// The port under test and the BIRD behind it.
#[async_trait]
pub trait BirdFixture: Send + Sync {
    type Port: BirdControl;

    /// The port the cases drive.
    fn port(&self) -> &Self::Port;
    /// A new port on the same file and BIRD: what a restarted daemon gets.
    async fn reopen(&self) -> Self::Port;
    /// BIRD stops (killed).
    async fn stop_bird(&self);
    /// BIRD starts again from its file; returns once it answers.
    async fn start_bird(&self);
}

/// The links the texts name; a real fixture makes them (a /31 each).
pub const LINKS: [(&str, &str, &str); 2] = [
    ("rail0", "10.10.0.1/31", "10.10.0.0"),
    ("rail1", "10.11.0.1/31", "10.11.0.0"),
];

fn session(k: usize) -> Session {
    let (nic, local, neighbor) = LINKS[k];
    Session {
        nic: IfName::new(nic).expect("a valid name"),
        local: local.parse().expect("valid"),
        neighbor: neighbor.parse().expect("valid"),
        bgp: Bgp {
            asn: 64_512,
            peer_asn: 65_000,
            hold_time: 9,
        },
        announce: vec![format!("192.168.{}.0/24", 64 * k).parse().expect("valid")],
        accept: vec![AcceptRange {
            range: format!("192.168.{}.0/18", 64 * k).parse().expect("valid"),
            prefix: 24,
        }],
    }
}

/// The generated configuration with `links` sessions.
pub fn text(links: usize) -> String {
    let sessions: Vec<Session> = (0..links).map(session).collect();
    render(Ipv4Addr::new(10, 10, 0, 1), &sessions)
}

/// A text BIRD refuses (an unclosed block).
pub const REFUSED: &str = "router id 10.10.0.1;\nprotocol static 'ry_broken' {\n  ipv4;\n";

async fn in_force<F: BirdFixture>(port: &F::Port, want: &str, case: &str) {
    let got = port.protocols().await.expect("BIRD answers");
    assert_eq!(got, declared_protocols(want), "{case}: protocols in force");
}

/// Every case, in order.
pub async fn run_all<F: BirdFixture>(f: &F) {
    let (a, b) = (text(1), text(2));
    let port = f.port();

    let case = "no beat yet: none is reported";
    assert_eq!(port.last_beat().await, Ok(None), "{case}");

    let case = "a new text is written and reloaded";
    assert_eq!(port.apply(&a).await, Ok(Applied::Reloaded), "{case}");
    in_force::<F>(port, &a, case).await;

    let case = "the same text again changes nothing";
    assert_eq!(port.apply(&a).await, Ok(Applied::Unchanged), "{case}");

    let case = "a changed text is reloaded";
    assert_eq!(port.apply(&b).await, Ok(Applied::Reloaded), "{case}");
    in_force::<F>(port, &b, case).await;

    let case = "a refused text changes nothing, file or BIRD";
    assert!(
        matches!(port.apply(REFUSED).await, Err(BirdError::Refused(_))),
        "{case}"
    );
    in_force::<F>(port, &b, case).await;
    assert_eq!(port.apply(&b).await, Ok(Applied::Unchanged), "{case}");

    let case = "with BIRD down the file is written, read at its start, and reloaded again";
    f.stop_bird().await;
    assert!(
        matches!(port.apply(&a).await, Err(BirdError::Unreachable(_))),
        "{case}"
    );
    f.start_bird().await;
    in_force::<F>(port, &a, case).await;
    assert_eq!(port.apply(&a).await, Ok(Applied::Reloaded), "{case}");
    assert_eq!(port.apply(&a).await, Ok(Applied::Unchanged), "{case}");

    let case = "a restarted daemon's port reloads once, then changes nothing";
    let fresh = f.reopen().await;
    assert_eq!(fresh.apply(&a).await, Ok(Applied::Reloaded), "{case}");
    assert_eq!(fresh.apply(&a).await, Ok(Applied::Unchanged), "{case}");
    in_force::<F>(&fresh, &a, case).await;

    let case = "a beat is seen by every port, and a later beat is later";
    let before = SystemTime::now() - Duration::from_secs(2);
    port.beat().await.expect(case);
    let first = fresh.last_beat().await.expect(case).expect(case);
    let after = SystemTime::now() + Duration::from_secs(2);
    assert!(before <= first && first <= after, "{case}: {first:?}");
    // File times may be as coarse as the kernel's tick: wait past it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    fresh.beat().await.expect(case);
    let second = port.last_beat().await.expect(case).expect(case);
    assert!(second > first, "{case}: {first:?} then {second:?}");

    let case = "BIRD down or up, beats go on (the guard starts BIRD on them)";
    f.stop_bird().await;
    port.beat().await.expect(case);
    f.start_bird().await;
}
