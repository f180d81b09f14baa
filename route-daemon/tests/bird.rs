//! The BIRD configuration the route-daemon generates for a routed host
//! (`docs/design/routed-rails.md`), run by a real BIRD against real leaves.
//!
//! - `generated_configurations_parse`: every shape of the generated file
//!   passes `bird -p` (no root).
//! - `a_host_announces_its_blocks_per_rail_and_refuses_a_rogue_leaf` (root):
//!   a host namespace running BIRD on the generated file, two leaf
//!   namespaces (one per rail) running BIRD with a session to it, each leaf
//!   also offering the host routes it must refuse. Checked: each leaf learns
//!   exactly the host's block of its rail into its kernel; the host accepts
//!   only a peer block of that rail, counts the rest as filtered, and puts
//!   nothing into its kernel; a host leaving (regenerated file, `birdc
//!   configure`) withdraws at once; a host that dies is withdrawn after the
//!   hold time; a restarted leaf learns the blocks again. The times are
//!   printed (`--nocapture`).
//!
//! Both need BIRD (`bird2`, which `make deps` installs) and fail, never
//! skip, without it.
//!
//!     cargo test -p railyard-route-daemon --test bird -- --nocapture

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use railyard_core::fabric::{routed_links, router_id, sessions, Bgp, RoutedNetwork, Session};
use railyard_core::{plan, HostInventory, IfName, NetworkManifest, Nic, Plan};
use railyard_route_daemon::bgp::render;
use railyard_test_support::{require_root, NamedNetns};

const BIRD: &str = "/usr/sbin/bird";
const BIRDC: &str = "/usr/sbin/birdc";

fn require_bird() {
    assert!(
        Path::new(BIRD).exists() && Path::new(BIRDC).exists(),
        "needs BIRD 2 ({BIRD}, {BIRDC}): `make deps` installs Debian's bird2 (deploy/deps/debian.list)"
    );
}

/// A routed network over two rails (`masterNets` 10.10.0.0/16 and
/// 10.11.0.0/16), dual stack when `v6`, and `hosts` hosts: host `n`'s
/// `rail<k>` is `10.1k.0.(2n+1)/31` (and `fd1k::(2n+1)/127`), its leaf the
/// even address below.
fn routed(hosts: u32, v6: bool, hold: u16) -> (Plan, Vec<HostInventory>, Bgp) {
    let subnet = if v6 {
        "192.168.0.0/16,fd00::/48"
    } else {
        "192.168.0.0/16"
    };
    let m: NetworkManifest = serde_yaml::from_str(&format!(
        "metadata: {{name: rails}}
spec:
  subnet: \"{subnet}\"
  ipam: {{hostBlock: 6, interfaceBlock: 2}}
  masterNets: [10.10.0.0/16, 10.11.0.0/16]
  fabric: {{mode: routed, bgp: {{asn: 64512, peerAsn: 65000, holdTime: {hold}}}}}
"
    ))
    .unwrap();
    let net = m.validate().unwrap();
    let inv: Vec<HostInventory> = (0..hosts)
        .map(|n| HostInventory {
            name: format!("h{n}"),
            nics: (0..2)
                .map(|k| {
                    let mut addresses: Vec<IpNet> =
                        vec![format!("10.1{k}.0.{}/31", 2 * n + 1).parse().unwrap()];
                    if v6 {
                        addresses.push(format!("fd1{k}::{:x}/127", 2 * n + 1).parse().unwrap());
                    }
                    Nic {
                        name: format!("rail{k}"),
                        addresses,
                        up: true,
                        ..Nic::default()
                    }
                })
                .collect(),
        })
        .collect();
    let p = plan(&net, &inv, None, 0, 600);
    assert!(p.unplanned.is_empty(), "{:?}", p.unplanned);
    let bgp = match net.spec.fabric().unwrap() {
        railyard_core::fabric::Fabric::Routed(b) => b,
        other => panic!("{other:?}"),
    };
    (p, inv, bgp)
}

/// The configuration host `me` generates, and its sessions.
fn host_config(p: &Plan, inv: &[HostInventory], bgp: Bgp, me: &str) -> (String, Vec<Session>) {
    let host = inv.iter().find(|h| h.name == me).unwrap();
    let addresses: Vec<(IfName, IpNet)> = host
        .nics
        .iter()
        .flat_map(|n| {
            let name = IfName::new(&n.name).unwrap();
            n.addresses.iter().map(move |a| (name, *a))
        })
        .collect();
    let (links, problems) = routed_links(&p.hosts[me].blocks, &addresses);
    assert!(problems.is_empty(), "{problems:?}");
    let nets = [RoutedNetwork {
        name: "rails",
        bgp,
        plan: p,
    }];
    let (s, conflicts) = sessions(&nets, me, &links);
    assert!(conflicts.is_empty(), "{conflicts:?}");
    (render(router_id(&s, p.hosts[me].index), &s), s)
}

fn bird_parses(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bird.conf");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIRD)
        .args(["-p", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bird -p refused the generated file: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_configurations_parse() {
    require_bird();
    for v6 in [false, true] {
        let (p, inv, bgp) = routed(4, v6, 9);
        let (text, s) = host_config(&p, &inv, bgp, "h2");
        assert_eq!(s.len(), if v6 { 4 } else { 2 });
        bird_parses(&text);
        // Departed: no session, still a valid file.
        let mut gone = p.clone();
        gone.hosts.get_mut("h2").unwrap().departed_at = Some(1);
        let (text, s) = host_config(&gone, &inv, bgp, "h2");
        assert!(s.is_empty());
        bird_parses(&text);
    }
}

/// A BIRD in a namespace, in the foreground, killed when dropped.
struct Bird {
    child: Child,
    socket: PathBuf,
    config: PathBuf,
    netns: String,
}

impl Bird {
    fn start(netns: &NamedNetns, dir: &Path, name: &str, text: &str) -> Bird {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, text).unwrap();
        let socket = dir.join(format!("{name}.ctl"));
        let mut bird = Bird {
            child: Command::new("ip")
                .args(["netns", "exec", netns.name(), BIRD, "-f", "-c"])
                .arg(&config)
                .arg("-s")
                .arg(&socket)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
            socket,
            config,
            netns: netns.name().to_owned(),
        };
        wait_for(
            &format!("{name}'s control socket"),
            Duration::from_secs(10),
            || bird.try_birdc(&["show", "status"]).is_some(),
        );
        bird.check_alive();
        bird
    }

    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("bird in {} exited: {status}", self.netns);
        }
    }

    fn try_birdc(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(BIRDC)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn birdc(&self, args: &[&str]) -> String {
        self.try_birdc(args)
            .unwrap_or_else(|| panic!("birdc {args:?} in {} failed", self.netns))
    }

    /// What the route-daemon does after a plan change: the new file, then
    /// `birdc configure`.
    fn reconfigure(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
        let out = self.birdc(&["configure"]);
        // "Reconfigured", or "Reconfiguration in progress" while sessions
        // whose protocols changed are shut down; a refused file says why.
        assert!(
            out.contains("Reconfigured") || out.contains("Reconfiguration in progress"),
            "{out}"
        );
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.child.id());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if ok() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A leaf: one session to the host, what it learns into its kernel, and
/// `offer` (routes a rogue or misconfigured leaf would send) to the host.
/// (Not the host's own block: the leaf would prefer its static over the
/// host's announcement and keep the block out of its kernel. That the host
/// refuses its own block is checked by the core's unit and property tests.)
fn leaf_config(leaf: IpAddr, host: IpAddr, hold: u16, offer: &[String]) -> String {
    let statics: String = offer
        .iter()
        .map(|r| format!("  route {r} blackhole;\n"))
        .collect();
    format!(
        "router id {leaf};
protocol device {{ scan time 10; }}
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
protocol static offered {{
  ipv4;
{statics}}}
protocol bgp host {{
  local {leaf} as 65000;
  neighbor {host} as 64512;
  interface \"h0\";
  direct;
  hold time {hold}; keepalive time 1;
  connect delay time 1; connect retry time 2; error wait time 1, 10;
  ipv4 {{ import all; export where proto = \"offered\"; next hop self; }};
}}
"
    )
}

/// The leaf's kernel routes learned over BGP (`proto bird`).
fn bird_routes(ns: &NamedNetns) -> String {
    ns.ip_ok(&["route", "show", "table", "all", "proto", "bird"])
}

/// `Import updates:` of a protocol: received, rejected, filtered, ignored, accepted.
fn import_updates(bird: &Bird, protocol: &str) -> Option<[u64; 5]> {
    let out = bird.birdc(&["show", "protocols", "all", protocol]);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("Import updates:"))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(2)
        .filter_map(|w| w.parse().ok())
        .collect();
    n.try_into().ok()
}

/// A host namespace and a leaf namespace per rail: the host's `rail<k>` is
/// `10.1k.0.1/31`, the leaf's end (`h0`) `10.1k.0.0/31`.
fn fabric(name: &str) -> (NamedNetns, [NamedNetns; 2]) {
    let host = NamedNetns::private(name);
    let leaves = [NamedNetns::private("leaf0"), NamedNetns::private("leaf1")];
    for (k, leaf) in leaves.iter().enumerate() {
        let nic = format!("rail{k}");
        host.ip_ok(&[
            "link",
            "add",
            &nic,
            "type",
            "veth",
            "peer",
            "name",
            "h0",
            "netns",
            leaf.name(),
        ]);
        host.ip_ok(&["addr", "add", &format!("10.1{k}.0.1/31"), "dev", &nic]);
        host.ip_ok(&["link", "set", &nic, "up"]);
        leaf.ip_ok(&["addr", "add", &format!("10.1{k}.0.0/31"), "dev", "h0"]);
        leaf.ip_ok(&["link", "set", "h0", "up"]);
    }
    (host, leaves)
}

/// Host `h`'s IPv4 block on rail `k`.
fn block_of(p: &Plan, h: &str, k: u32) -> IpNet {
    p.hosts[h]
        .blocks
        .iter()
        .find(|b| b.interface == k && b.cidr.addr().is_ipv4())
        .unwrap()
        .cidr
}

#[test]
fn a_host_announces_its_blocks_per_rail_and_refuses_a_rogue_leaf() {
    require_root("railyard-route-daemon");
    require_bird();
    let hold = 3;
    let (p, inv, bgp) = routed(3, false, hold);
    let (text, s) = host_config(&p, &inv, bgp, "h0");
    let dir = tempfile::tempdir().unwrap();
    let (host, leaves) = fabric("bgp-host");
    let block = |h: &str, k: u32| block_of(&p, h, k);
    let rail = |k: u32| p.interfaces.iter().find(|i| i.index == k).unwrap().cidrs[0];
    let mut leaf_birds = Vec::new();
    for (k, leaf) in leaves.iter().enumerate() {
        let k = k as u32;
        let offer = vec![
            block("h1", k).to_string(),     // a peer's block: accepted
            "0.0.0.0/0".to_string(),        // a default
            "10.99.0.0/16".to_string(),     // not railyard's
            block("h1", 1 - k).to_string(), // the other rail's block
            IpNet::new(block("h2", k).addr(), 25).unwrap().to_string(), // a longer prefix
            rail(k).to_string(),            // the whole rail
        ];
        let cfg = leaf_config(
            format!("10.1{k}.0.0").parse().unwrap(),
            format!("10.1{k}.0.1").parse().unwrap(),
            hold,
            &offer,
        );
        leaf_birds.push(Bird::start(leaf, dir.path(), &format!("leaf{k}"), &cfg));
    }
    let started = Instant::now();
    let mut host_bird = Bird::start(&host, dir.path(), "host", &text);

    // Each leaf learns exactly the host's block of its rail, via the host.
    for (k, leaf) in leaves.iter().enumerate() {
        let k = k as u32;
        let want = format!("{} via 10.1{k}.0.1", block("h0", k));
        wait_for(
            &format!("leaf{k} learning {want}"),
            Duration::from_secs(20),
            || bird_routes(leaf).contains(&want),
        );
        let learned = bird_routes(leaf);
        assert!(
            !learned.contains(&block("h0", 1 - k).to_string()),
            "leaf{k} learned the other rail's block: {learned}"
        );
        assert_eq!(learned.lines().count(), 1, "leaf{k}: {learned}");
    }
    eprintln!(
        "announced: both leaves hold the host's blocks {:?} after BIRD started",
        started.elapsed()
    );

    // The host takes only the peer block of each rail; the rest is filtered.
    for (k, session) in s.iter().enumerate() {
        let name = format!("ry_rail{k}_v4");
        wait_for(
            &format!("{name}'s imports"),
            Duration::from_secs(10),
            || import_updates(&host_bird, &name).is_some_and(|u| u[0] == 6),
        );
        let [received, _, filtered, _, accepted] = import_updates(&host_bird, &name).unwrap();
        assert_eq!((received, filtered, accepted), (6, 5, 1), "{name}");
        let table = host_bird.birdc(&["show", "route", "protocol", &name]);
        assert!(
            table.contains(&block("h1", k as u32).to_string()),
            "{table}"
        );
        assert!(session.accepts(&block("h1", k as u32)));
    }
    assert_eq!(
        bird_routes(&host),
        "",
        "the host's kernel got routes from BIRD"
    );
    assert!(!host
        .ip_ok(&["route", "show", "table", "all"])
        .contains("default"));

    // Leaving: the host's daemon regenerates without its blocks and reloads.
    let mut gone = p.clone();
    gone.hosts.get_mut("h0").unwrap().departed_at = Some(1);
    let (empty, none) = host_config(&gone, &inv, bgp, "h0");
    assert!(none.is_empty());
    let t = Instant::now();
    host_bird.reconfigure(&empty);
    for (k, leaf) in leaves.iter().enumerate() {
        wait_for(
            &format!("leaf{k} withdrawing"),
            Duration::from_secs(5),
            || bird_routes(leaf).is_empty(),
        );
    }
    let withdrawn = t.elapsed();
    eprintln!("left: both leaves lost the host's blocks {withdrawn:?} after birdc configure");
    assert!(withdrawn < Duration::from_secs(2), "{withdrawn:?}");

    // Back, then dead. A BIRD that exits closes its TCP sessions, so the
    // leaves withdraw at once; a host that hangs or loses power sends
    // nothing, and the leaves withdraw when the hold time runs out (a frozen
    // BIRD stands for it: SIGSTOP).
    host_bird.reconfigure(&text);
    for leaf in &leaves {
        wait_for("re-announced", Duration::from_secs(20), || {
            !bird_routes(leaf).is_empty()
        });
    }
    let t = Instant::now();
    host_bird.signal("STOP");
    for leaf in &leaves {
        wait_for(
            "a silent host withdrawn",
            Duration::from_secs(u64::from(hold) + 5),
            || bird_routes(leaf).is_empty(),
        );
    }
    let silent = t.elapsed();
    eprintln!("silent: both leaves lost the blocks {silent:?} after the host's BIRD froze (hold time {hold} s)");
    assert!(
        silent >= Duration::from_secs(u64::from(hold) - 1),
        "{silent:?}"
    );
    // Measured here: 5.2 to 5.8 s for hold 3, 7.1 s for 6, 10.2 s for 9
    // (BIRD expires its hold timer 1 to 2.8 s after the hold time).
    assert!(
        silent <= Duration::from_secs(u64::from(hold) + 4),
        "{silent:?}"
    );
    host_bird.signal("CONT");
    for leaf in &leaves {
        wait_for("back after thawing", Duration::from_secs(20), || {
            !bird_routes(leaf).is_empty()
        });
    }
    let t = Instant::now();
    host_bird.kill();
    for leaf in &leaves {
        wait_for("an exited host withdrawn", Duration::from_secs(5), || {
            bird_routes(leaf).is_empty()
        });
    }
    eprintln!(
        "exited: both leaves lost the blocks {:?} after the host's BIRD was killed",
        t.elapsed()
    );

    // A leaf restart: the host's session comes back and the leaf relearns.
    let mut host_bird = Bird::start(&host, dir.path(), "host", &text);
    for leaf in &leaves {
        wait_for("announced again", Duration::from_secs(20), || {
            !bird_routes(leaf).is_empty()
        });
    }
    let leaf0_config = std::fs::read_to_string(dir.path().join("leaf0.conf")).unwrap();
    leaf_birds[0].kill();
    let t = Instant::now();
    leaf_birds[0] = Bird::start(&leaves[0], dir.path(), "leaf0", &leaf0_config);
    let want = format!("{} via 10.10.0.1", block("h0", 0));
    wait_for(
        "leaf0 relearning after its restart",
        Duration::from_secs(30),
        || bird_routes(&leaves[0]).contains(&want),
    );
    eprintln!(
        "leaf restart: leaf0 relearned the host's block {:?} after it started again",
        t.elapsed()
    );
    host_bird.check_alive();
}

/// The guard (`railyard-bird-guard`) in a host namespace, the route-daemon's
/// heartbeat written by the test (what the daemon's loop writes every
/// second, `BirdControl::beat`), two real leaves. Checked: no BIRD and
/// nothing announced before a beat; beats start BIRD and the leaves learn
/// the host's blocks; beats stopping withdraw them once `--silent-after` has
/// passed, not before; beats again announce them again; a BIRD that dies is
/// started again; the guard stopped stops BIRD and the leaves withdraw. The
/// times are printed (`--nocapture`).
#[test]
fn the_guard_withdraws_a_silent_daemons_blocks_and_announces_them_when_it_beats_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    require_root("railyard-route-daemon");
    require_bird();
    let silent_after = Duration::from_secs(3);
    let (p, inv, bgp) = routed(2, false, 3);
    let (text, _) = host_config(&p, &inv, bgp, "h0");
    let dir = tempfile::tempdir().unwrap();
    let (host, leaves) = fabric("guard-host");
    let _leaf_birds: Vec<Bird> = leaves
        .iter()
        .enumerate()
        .map(|(k, leaf)| {
            let cfg = leaf_config(
                format!("10.1{k}.0.0").parse().unwrap(),
                format!("10.1{k}.0.1").parse().unwrap(),
                3,
                &[],
            );
            Bird::start(leaf, dir.path(), &format!("leaf{k}"), &cfg)
        })
        .collect();
    let config = dir.path().join("host.conf");
    let socket = dir.path().join("host.ctl");
    std::fs::write(&config, &text).unwrap();
    let heartbeat = railyard_route_daemon::bgp::heartbeat_path(&config);
    let mut guard = Command::new("ip")
        .args(["netns", "exec", host.name()])
        .arg(env!("CARGO_BIN_EXE_railyard-bird-guard"))
        .arg("--bird-config")
        .arg(&config)
        .arg("--bird-socket")
        .arg(&socket)
        .arg(format!("--silent-after={}s", silent_after.as_secs()))
        .arg("--poll=100ms")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let beating = Arc::new(AtomicBool::new(false));
    let beater = {
        let (beating, heartbeat) = (Arc::clone(&beating), heartbeat.clone());
        std::thread::spawn(move || loop {
            if beating.load(Ordering::SeqCst) {
                std::fs::write(&heartbeat, "beat\n").unwrap();
            }
            if Arc::strong_count(&beating) == 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        })
    };
    let announced = |leaf: &NamedNetns, k: u32| {
        bird_routes(leaf).contains(&format!("{} via 10.1{k}.0.1", block_of(&p, "h0", k)))
    };
    let leaves = &leaves;
    let announced = &announced;
    let all = |on: bool| {
        move || {
            leaves
                .iter()
                .enumerate()
                .all(|(k, l)| announced(l, k as u32) == on)
        }
    };
    let bird_answers = || {
        Command::new(BIRDC)
            .arg("-s")
            .arg(&socket)
            .args(["show", "status"])
            .output()
            .is_ok_and(|o| o.status.success())
    };

    std::thread::sleep(Duration::from_secs(1));
    assert!(!bird_answers(), "BIRD started before the daemon beat");
    assert!(all(false)(), "announced before the daemon beat");

    beating.store(true, Ordering::SeqCst);
    let t = wait_for(
        "announced on the first beats",
        Duration::from_secs(20),
        all(true),
    );
    eprintln!("guard: both leaves hold the host's blocks {t:?} after the daemon began to beat");

    beating.store(false, Ordering::SeqCst);
    let silent_from = std::fs::metadata(&heartbeat).unwrap().modified().unwrap();
    std::thread::sleep(silent_after - Duration::from_millis(1200));
    assert!(all(true)(), "withdrawn before --silent-after passed");
    let t = wait_for("withdrawn once silent", Duration::from_secs(10), all(false));
    let silent = silent_from.elapsed().unwrap();
    eprintln!("guard: both leaves lost the blocks {silent:?} after the last beat (--silent-after {silent_after:?})");
    assert!(silent >= silent_after, "{silent:?}");
    assert!(
        silent <= silent_after + Duration::from_secs(2),
        "{silent:?} ({t:?} of waiting)"
    );
    assert!(!bird_answers(), "BIRD still runs");

    beating.store(true, Ordering::SeqCst);
    let t = wait_for(
        "announced again on beats",
        Duration::from_secs(20),
        all(true),
    );
    eprintln!("guard: both leaves hold the blocks again {t:?} after the daemon beat again");

    // BIRD dies on its own while the daemon beats: started again.
    let pid = bird_pid(guard.id()).expect("the guard runs BIRD");
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("BIRD gone", Duration::from_secs(5), || !bird_answers());
    let t = wait_for("BIRD started again", Duration::from_secs(10), bird_answers);
    assert_ne!(bird_pid(guard.id()), Some(pid), "the same BIRD");
    wait_for(
        "announced after the restart",
        Duration::from_secs(20),
        all(true),
    );
    eprintln!("guard: a killed BIRD was started again {t:?} later");

    // The guard stopped (its pod deleted): BIRD stops, the leaves withdraw.
    let t = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &guard.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = guard.wait().unwrap();
    assert!(status.success(), "guard exited with {status}");
    wait_for(
        "withdrawn after the guard stopped",
        Duration::from_secs(5),
        all(false),
    );
    eprintln!(
        "guard: stopped; both leaves lost the blocks {:?} later",
        t.elapsed()
    );
    assert!(!bird_answers(), "BIRD outlived its guard");
    drop(beating);
    beater.join().unwrap();
}

/// The pid of the guard's BIRD: its child (`ip netns exec` runs the guard
/// in place, so the guard's pid is the spawned one).
fn bird_pid(guard: u32) -> Option<String> {
    let tasks = std::fs::read_dir(format!("/proc/{guard}/task")).ok()?;
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .next()
}
