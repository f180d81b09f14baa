//! The BIRD port against its conformance suite (`bgp::conformance`): the
//! in-memory twin (no root), and [`BirdFile`] on a real BIRD in a private
//! network namespace (root and `bird2`; fails, never skips, without them).
//!
//!     cargo test -p railyard-route-daemon --test bird_control

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use railyard_route_daemon::bgp::conformance::{self, BirdFixture, LINKS};
use railyard_route_daemon::bgp::file::{BIRD, BIRDC};
use railyard_route_daemon::bgp::{BirdFile, MemoryBird};
use railyard_test_support::{require_root, NamedNetns};

struct Memory {
    bird: MemoryBird,
}

#[async_trait]
impl BirdFixture for Memory {
    type Port = MemoryBird;

    fn port(&self) -> &MemoryBird {
        &self.bird
    }

    async fn reopen(&self) -> MemoryBird {
        self.bird.reopen()
    }

    async fn stop_bird(&self) {
        self.bird.stop();
    }

    async fn start_bird(&self) {
        self.bird.start();
    }
}

#[tokio::test]
async fn memory_bird_passes_the_suite() {
    let f = Memory {
        bird: MemoryBird::new("router id 10.10.0.1;\n"),
    };
    conformance::run_all(&f).await;
    // a, b, a once BIRD was back, and a through the restarted daemon's port.
    assert_eq!(f.bird.reloads(), 4);
}

/// A real BIRD in a private namespace holding the suite's links.
struct Real {
    netns: NamedNetns,
    config: PathBuf,
    socket: PathBuf,
    child: Mutex<Option<Child>>,
    port: BirdFile,
    _dir: tempfile::TempDir,
}

impl Real {
    fn new() -> Real {
        let dir = tempfile::tempdir().unwrap();
        let netns = NamedNetns::private("bird-port");
        for (k, (nic, local, _)) in LINKS.iter().enumerate() {
            let peer = format!("peer{k}");
            netns.ip_ok(&["link", "add", nic, "type", "veth", "peer", "name", &peer]);
            netns.ip_ok(&["addr", "add", local, "dev", nic]);
            netns.ip_ok(&["link", "set", nic, "up"]);
            netns.ip_ok(&["link", "set", &peer, "up"]);
        }
        let config = dir.path().join("bird.conf");
        let socket = dir.path().join("bird.ctl");
        std::fs::write(&config, "router id 10.10.0.1;\nprotocol device { }\n").unwrap();
        let real = Real {
            port: BirdFile::new(&config, &socket),
            netns,
            config,
            socket,
            child: Mutex::new(None),
            _dir: dir,
        };
        real.spawn();
        real
    }

    fn spawn(&self) {
        let child = Command::new("ip")
            .args(["netns", "exec", self.netns.name(), BIRD, "-f", "-c"])
            .arg(&self.config)
            .arg("-s")
            .arg(&self.socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        *self.child.lock().unwrap() = Some(child);
        let start = Instant::now();
        while !answers(&self.socket) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "BIRD did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn answers(socket: &Path) -> bool {
    Command::new(BIRDC)
        .arg("-s")
        .arg(socket)
        .args(["show", "status"])
        .output()
        .is_ok_and(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("Unable"))
}

impl Drop for Real {
    fn drop(&mut self) {
        self.kill();
    }
}

#[async_trait]
impl BirdFixture for Real {
    type Port = BirdFile;

    fn port(&self) -> &BirdFile {
        &self.port
    }

    async fn reopen(&self) -> BirdFile {
        BirdFile::new(&self.config, &self.socket)
    }

    async fn stop_bird(&self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
    }

    async fn start_bird(&self) {
        self.spawn();
    }
}

#[tokio::test]
async fn bird_file_on_a_real_bird_passes_the_suite() {
    require_root("railyard-route-daemon");
    assert!(
        Path::new(BIRD).exists() && Path::new(BIRDC).exists(),
        "needs BIRD 2 ({BIRD}, {BIRDC}): `make deps` installs Debian's bird2"
    );
    let f = Real::new();
    conformance::run_all(&f).await;
}
