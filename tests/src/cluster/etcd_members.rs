//! A multi-member etcd for a local cluster (`ClusterSpec::etcd_members` 3 or
//! 5), built so a test can do to one member what happens to real ones: kill
//! it, restart it on its data, and cut it off from its peers.
//!
//! Each member runs in a namespace of its own with two links:
//! - `client0` on the management bridge (`10.254.<id>.<2+m>`), where the
//!   planners (root namespace) and the daemons (host namespaces) reach it;
//! - `peer0` on a bridge of its own in the `<prefix>etcd-peers` namespace
//!   (`10.253.<id>.<2+m>`), which carries only raft traffic.
//!
//! Taking a member's peer link down ([`Cluster::partition_etcd_member`]) is a
//! real partition (no packet filter: the kernel drops the frames) that leaves
//! the member reachable by clients: the minority member still accepts their
//! connections but can serve nothing that needs a leader, the case in which a
//! client that does not fail over by itself hangs or errors. Taking both of
//! its links down ([`Cluster::isolate_etcd_member`]) cuts it off from clients
//! too, silently, as a dead switch port or host would.
//!
//! Every namespace, link and process is written to the state file before it
//! exists, so `down` removes them like the rest of the cluster.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::cmd::{ip, ip_batch, netns_add, netns_exists};
use super::spec::ClusterSpec;
use super::Cluster;
use crate::error::{Error, Result};

/// Every member listens on the same ports, in its own namespace.
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// How long a (re)started member gets to report healthy.
const READY: Duration = Duration::from_secs(20);

impl ClusterSpec {
    /// Member `m`'s namespace.
    pub fn etcd_member_ns(&self, m: usize) -> String {
        format!("{}etcd-{m}", self.prefix)
    }

    /// The namespace holding the bridge the members' peer links plug into.
    pub fn etcd_peers_ns(&self) -> String {
        format!("{}etcd-peers", self.prefix)
    }

    /// The role (process record and log name) of member `m`.
    pub fn etcd_member_role(&self, m: usize) -> String {
        format!("etcd-{m}")
    }

    /// Member `m`'s client address on the management bridge: .2 upwards, below
    /// the hosts' .10 upwards (the gateway is .1).
    pub fn etcd_member_addr(&self, m: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 254, self.mgmt_id, member_octet(m))
    }

    fn etcd_member_peer_url(&self, m: usize) -> String {
        let addr = Ipv4Addr::new(10, 253, self.mgmt_id, member_octet(m));
        format!("http://{addr}:{PEER_PORT}")
    }

    pub fn etcd_member_endpoint(&self, m: usize) -> String {
        format!("http://{}:{CLIENT_PORT}", self.etcd_member_addr(m))
    }

    /// Every member's client URL, comma separated, as `--etcd-endpoints` takes them.
    pub fn etcd_member_endpoints(&self) -> String {
        (0..self.etcd_members)
            .map(|m| self.etcd_member_endpoint(m))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The root namespace's end of member `m`'s client link (a bridge port).
    fn etcd_client_veth(&self, m: usize) -> String {
        format!("rym{}e{m}", self.mgmt_id)
    }

    fn etcd_argv(&self, m: usize) -> Vec<String> {
        let name = |m: usize| format!("m{m}");
        let cluster: Vec<String> = (0..self.etcd_members)
            .map(|k| format!("{}={}", name(k), self.etcd_member_peer_url(k)))
            .collect();
        let client = self.etcd_member_endpoint(m);
        let peer = self.etcd_member_peer_url(m);
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.etcd_member_ns(m),
            super::etcd::bin(),
            format!("--name={}", name(m)),
            format!(
                "--data-dir={}",
                self.state_dir.join("etcd").join(name(m)).display()
            ),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", cluster.join(",")),
            // Ignored once the member has data: a restart rejoins with it.
            "--initial-cluster-state=new".into(),
            format!("--initial-cluster-token={}etcd", self.prefix),
            // The same timing as the single member's (etcd.rs): elections in
            // about half a second, which the fault tier measures.
            "--heartbeat-interval=50".into(),
            "--election-timeout=500".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
            "--log-level=warn".into(),
        ]
    }
}

fn member_octet(m: usize) -> u8 {
    u8::try_from(m + 2).unwrap_or(u8::MAX)
}

impl Cluster {
    /// Makes the members' namespaces and links (once), starts every member and
    /// waits until each reports healthy (which needs a quorum, so they start
    /// together).
    pub(super) fn start_etcd_members(&mut self) -> Result<()> {
        self.make_etcd_topology()?;
        let n = self.spec().etcd_members;
        for m in 0..n {
            self.launch_etcd_member(m)?;
        }
        for m in 0..n {
            self.wait_etcd_member(m, READY)?;
        }
        Ok(())
    }

    fn make_etcd_topology(&mut self) -> Result<()> {
        let spec = self.spec().clone();
        let peers = spec.etcd_peers_ns();
        if !netns_exists(&peers) {
            self.state.add_netns(&peers);
            self.state.save()?;
            netns_add(&peers)?;
            ip_batch(
                Some(&peers),
                &[
                    "link add peers type bridge".to_owned(),
                    "link set peers up".to_owned(),
                ],
            )?;
        }
        for m in 0..spec.etcd_members {
            let ns = spec.etcd_member_ns(m);
            if netns_exists(&ns) {
                continue;
            }
            let veth = spec.etcd_client_veth(m);
            self.state.add_netns(&ns);
            if !self.state.links.contains(&veth) {
                self.state.links.push(veth.clone());
            }
            self.state.save()?;
            netns_add(&ns)?;
            ip_batch(
                None,
                &[
                    format!("link add {veth} type veth peer name client0 netns {ns}"),
                    format!("link set {veth} master {} up", spec.mgmt_bridge()),
                ],
            )?;
            ip_batch(
                Some(&ns),
                &[format!(
                    "link add peer0 type veth peer name p{m} netns {peers}"
                )],
            )?;
            ip_batch(Some(&peers), &[format!("link set p{m} master peers up")])?;
            let peer_addr = Ipv4Addr::new(10, 253, spec.mgmt_id, member_octet(m));
            ip_batch(
                Some(&ns),
                &[
                    format!("addr add {}/24 dev client0", spec.etcd_member_addr(m)),
                    format!("addr add {peer_addr}/24 dev peer0"),
                    "link set client0 up".to_owned(),
                    "link set peer0 up".to_owned(),
                ],
            )?;
        }
        Ok(())
    }

    fn launch_etcd_member(&mut self, m: usize) -> Result<()> {
        let spec = self.spec().clone();
        self.launch(&spec.etcd_member_role(m), spec.etcd_argv(m), &[])
    }

    /// (Re)starts member `m` on its data dir and waits until it is healthy:
    /// back in the cluster, with a leader, caught up enough to serve.
    pub fn start_etcd_member(&mut self, m: usize) -> Result<()> {
        self.launch_etcd_member(m)?;
        self.wait_etcd_member(m, READY)
    }

    /// SIGKILL to member `m` (a crash; its data dir is kept for a restart).
    pub fn kill_etcd_member(&mut self, m: usize) {
        let role = self.spec().etcd_member_role(m);
        self.crash_role(&role);
    }

    /// Cuts member `m` off from the other members: its peer link goes down (at
    /// the bridge's end, as a switch port would). Clients still reach it.
    pub fn partition_etcd_member(&mut self, m: usize) -> Result<()> {
        let peers = self.spec().etcd_peers_ns();
        ip(&["-n", &peers, "link", "set", &format!("p{m}"), "down"]).map(|_| ())
    }

    /// Cuts member `m` off from everyone: its peer link and its client link
    /// go down. Clients' connections to it go silent (no reset): only their
    /// timeouts tell them.
    pub fn isolate_etcd_member(&mut self, m: usize) -> Result<()> {
        self.partition_etcd_member(m)?;
        let veth = self.spec().etcd_client_veth(m);
        ip(&["link", "set", &veth, "down"]).map(|_| ())
    }

    /// Undoes [`Cluster::partition_etcd_member`] and
    /// [`Cluster::isolate_etcd_member`].
    pub fn heal_etcd_member(&mut self, m: usize) -> Result<()> {
        let peers = self.spec().etcd_peers_ns();
        ip(&["-n", &peers, "link", "set", &format!("p{m}"), "up"])?;
        let veth = self.spec().etcd_client_veth(m);
        ip(&["link", "set", &veth, "up"]).map(|_| ())
    }

    /// Waits until member `m` answers `/health` with true, which etcd says
    /// only with a leader and a read that went through.
    pub fn wait_etcd_member(&self, m: usize, timeout: Duration) -> Result<()> {
        let spec = self.spec();
        let start = Instant::now();
        while !etcd_member_healthy(spec, m) {
            if start.elapsed() > timeout {
                let log = spec.log(&spec.etcd_member_role(m));
                return Err(Error::Timeout {
                    what: format!("etcd member {m} healthy"),
                    secs: timeout.as_secs_f64(),
                    detail: format!("log {}:\n{}", log.display(), super::process::tail(&log, 15)),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The member that leads the raft group now, as the members report it
    /// (`etcd_server_is_leader` in their metrics); `None` during an election.
    pub fn etcd_leader(&self) -> Option<usize> {
        let spec = self.spec();
        (0..spec.etcd_members).find(|&m| etcd_member_is_leader(spec, m))
    }
}

/// Member `m` says it leads (`etcd_server_is_leader` in its metrics). Right
/// after a partition the cut-off leader may still say so for an election
/// timeout, next to the majority's new leader.
pub fn etcd_member_is_leader(spec: &ClusterSpec, m: usize) -> bool {
    http_get(spec, m, "/metrics")
        .is_some_and(|body| body.lines().any(|l| l == "etcd_server_is_leader 1"))
}

/// `GET /health` of member `m` says true.
pub fn etcd_member_healthy(spec: &ClusterSpec, m: usize) -> bool {
    http_get(spec, m, "/health").is_some_and(|b| b.contains("\"health\":\"true\""))
}

/// Member `m`'s applied revision, from its own store (`/v3/maintenance/status`
/// answers locally, without the leader): after a restart it shows whether
/// the member caught up.
pub fn etcd_member_revision(spec: &ClusterSpec, m: usize) -> Option<i64> {
    let body = http("POST", spec, m, "/v3/maintenance/status", "{}")?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["header"]["revision"].as_str()?.parse().ok()
}

fn http_get(spec: &ClusterSpec, m: usize, path: &str) -> Option<String> {
    http("GET", spec, m, path, "")
}

/// One plain HTTP/1.0 request to member `m`'s client port; the body of a 200.
fn http(method: &str, spec: &ClusterSpec, m: usize, path: &str, body: &str) -> Option<String> {
    let addr = SocketAddr::from((spec.etcd_member_addr(m), CLIENT_PORT));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    let timeout = Some(Duration::from_secs(1));
    s.set_read_timeout(timeout).ok()?;
    s.set_write_timeout(timeout).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
}
