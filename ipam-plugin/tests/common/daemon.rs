//! TEST STAND-IN for the route-daemon's allocation service.
//!
//! The real service (in route-daemon) does not exist yet; this thread speaks
//! the same protocol (`railyard_core::ipam`, one JSON line each way over a
//! unix socket) with the simplest possible policy: a fixed host block per
//! NIC and one counter for host parts. End-to-end tests will replace it with
//! the real daemon. It records every request so tests can prove that
//! invalid invocations never reach the daemon.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use ipnet::IpNet;
use railyard_core::attach::{select_nics, Candidate};
use railyard_core::ipam::{
    codes, AttachmentId, ChosenBlock, ErrorReply, NicAllocation, NicChoice, PodRoute, Request,
    Response,
};
use railyard_core::Strategy;

/// One host NIC as the stand-in daemon sees it.
#[derive(Debug, Clone)]
pub struct TestNic {
    pub name: String,
    pub rail: u32,
    /// Per family: this host's block (pod prefix) and the whole rail.
    pub blocks: Vec<(IpNet, IpNet)>,
    /// Where the NIC sits, for GPU alignment (`None` for virtual NICs).
    pub pcie_root: Option<String>,
    pub numa: Option<i32>,
}

impl TestNic {
    /// An IPv4 NIC on `rail` with host block `block` inside rail CIDR `cidr`.
    pub fn v4(name: &str, rail: u32, block: &str, cidr: &str) -> TestNic {
        TestNic {
            name: name.into(),
            rail,
            blocks: vec![(net(block), net(cidr))],
            pcie_root: None,
            numa: None,
        }
    }

    pub fn placed(mut self, pcie_root: &str, numa: i32) -> TestNic {
        self.pcie_root = Some(pcie_root.into());
        self.numa = Some(numa);
        self
    }

    pub fn with_v6(mut self, block: &str, cidr: &str) -> TestNic {
        self.blocks.push((net(block), net(cidr)));
        self
    }
}

fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|e| panic!("test NIC block {s:?}: {e}"))
}

/// Host part `n` of `block`: .1 is the gateway, pods start at .10.
fn nth(block: IpNet, n: u32) -> IpAddr {
    match block {
        IpNet::V4(b) => IpAddr::V4((u32::from(b.network()) + n).into()),
        IpNet::V6(b) => IpAddr::V6((u128::from(b.network()) + u128::from(n)).into()),
    }
}

#[derive(Default)]
struct Shared {
    nics: Vec<TestNic>,
    next: u32,
    allocations: BTreeMap<AttachmentId, Vec<NicAllocation>>,
    requests: Vec<Request>,
    error: Option<ErrorReply>,
    silent: bool,
    /// Excluded CIDRs a Choose reports in every block (external IPAM).
    excludes: Vec<IpNet>,
    /// Per rail, the MAC an ADD answers with, as the real daemon does for a
    /// pod whose `mac_address` annotation it read from the API.
    annotated_macs: BTreeMap<u32, String>,
    /// Answer as for a network with `spec.ipam.gateway: none`: no gateways,
    /// device routes.
    no_gateways: bool,
}

/// The running stand-in; stops and removes its socket on drop.
pub struct TestDaemon {
    pub socket: PathBuf,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestDaemon {
    pub fn start(nics: Vec<TestNic>) -> TestDaemon {
        let dir = tempfile::tempdir().expect("tempdir for the daemon socket");
        let socket = dir.path().join("ipam.sock");
        let listener = UnixListener::bind(&socket).expect("bind the test daemon socket");
        let shared = Arc::new(Mutex::new(Shared {
            nics,
            ..Shared::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || serve(listener, shared, stop))
        };
        TestDaemon {
            socket,
            shared,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The usual two-rail host: NIC `a` on rail 0, NIC `b` on rail 1.
    pub fn two_rails(a: &str, b: &str) -> TestDaemon {
        TestDaemon::start(vec![
            TestNic::v4(a, 0, "192.168.0.0/24", "192.168.0.0/18"),
            TestNic::v4(b, 1, "192.168.64.0/24", "192.168.64.0/18"),
        ])
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    pub fn allocations(&self) -> BTreeMap<AttachmentId, Vec<NicAllocation>> {
        self.lock().allocations.clone()
    }

    /// Answer every following request with this error.
    pub fn fail_with(&self, code: u32, message: &str) {
        self.lock().error = Some(ErrorReply {
            code,
            message: message.into(),
        });
    }

    /// Excluded CIDRs every block of a Choose answer carries.
    pub fn set_excludes(&self, excludes: &[&str]) {
        self.lock().excludes = excludes.iter().map(|e| net(e)).collect();
    }

    /// Answer ADDs with these MACs per rail (what the real daemon answers
    /// for a pod annotated `mac_address: "0=..,1=.."`; the API lookup is
    /// the daemon's own test, `route-daemon/tests/ipam_annotations.rs`).
    pub fn annotate_macs(&self, macs: &[(u32, &str)]) {
        self.lock().annotated_macs = macs.iter().map(|(r, m)| (*r, m.to_string())).collect();
    }

    /// Read requests but never answer (a stalled daemon).
    /// Answers ADDs as the real daemon does for a network without gateways
    /// (`spec.ipam.gateway: none`): empty `gateways`, routes without `gw`.
    pub fn without_gateways(&self) {
        self.lock().no_gateways = true;
    }

    pub fn go_silent(&self) {
        self.lock().silent = true;
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: UnixListener, shared: Arc<Mutex<Shared>>, stop: Arc<AtomicBool>) {
    let mut parked = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.is_empty() {
            continue;
        }
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        let response = match serde_json::from_str::<Request>(&line) {
            Err(e) => error(codes::REFUSED, &format!("malformed request: {e}")),
            Ok(request) => {
                state.requests.push(request.clone());
                match &state.error {
                    Some(e) => Response::Error(e.clone()),
                    None => handle(&mut state, request),
                }
            }
        };
        if state.silent {
            // Keep the connection open so the client waits for its timeout.
            parked.push(reader);
            continue;
        }
        drop(state);
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        let _ = reader.get_mut().write_all(&out);
    }
}

/// The topology policy over the stand-in's NICs, with the pod's GPUs and
/// per-rail devices.
fn by_policy(
    nics: &[TestNic],
    selection: &railyard_core::ipam::Selection,
) -> Result<Vec<TestNic>, railyard_core::attach::SelectError> {
    let candidates: Vec<Candidate> = nics
        .iter()
        .map(|n| Candidate {
            name: n.name.clone(),
            interface: n.rail,
            pcie_root: n.pcie_root.clone(),
            numa_node: n.numa,
            up: true,
            ..Candidate::default()
        })
        .collect();
    let picked = select_nics(Strategy::Topology, "", &candidates, selection, None)?;
    Ok(picked
        .iter()
        .filter_map(|c| nics.iter().find(|n| n.name == c.name).cloned())
        .collect())
}

fn error(code: u32, message: &str) -> Response {
    Response::Error(ErrorReply {
        code,
        message: message.into(),
    })
}

/// The NICs an ADD (or a Choose) gets: the pod's devices by the real policy
/// function, else `master`, `masters` or every NIC, cut to `nics`.
fn chosen_nics(
    state: &Shared,
    selection: &railyard_core::ipam::Selection,
    master: Option<&String>,
) -> Result<Vec<TestNic>, Response> {
    let by_devices = !selection.gpus.is_empty() || !selection.device_rails.is_empty();
    let mut chosen: Vec<TestNic> = match (master, selection.masters.is_empty()) {
        // What the pod's devices decide, the real daemon's policy
        // function decides here too (railyard_core::attach).
        _ if by_devices => match by_policy(&state.nics, selection) {
            Ok(nics) => nics,
            Err(e) => return Err(error(e.code(), &e.to_string())),
        },
        (Some(m), _) => state
            .nics
            .iter()
            .filter(|n| &n.name == m)
            .cloned()
            .collect(),
        (None, false) => state
            .nics
            .iter()
            .filter(|n| selection.masters.contains(&n.name))
            .cloned()
            .collect(),
        (None, true) => state.nics.clone(),
    };
    if let Some(n) = selection.nics.filter(|_| !by_devices) {
        chosen.truncate(n as usize);
    }
    if chosen.is_empty() {
        return Err(error(
            codes::NO_NIC,
            "no NIC on this host matches the selection",
        ));
    }
    Ok(chosen)
}

fn handle(state: &mut Shared, request: Request) -> Response {
    match request {
        Request::Add {
            attachment,
            selection,
            master,
            ..
        } => {
            if let Some(known) = state.allocations.get(&attachment) {
                return Response::Added {
                    nics: known.clone(),
                };
            }
            let chosen = match chosen_nics(state, &selection, master.as_ref()) {
                Ok(nics) => nics,
                Err(e) => return e,
            };
            state.next += 1;
            let host = 9 + state.next;
            let nics: Vec<NicAllocation> = chosen
                .iter()
                .map(|nic| NicAllocation {
                    nic: railyard_core::IfName::new(&nic.name).expect("test NIC names are valid"),
                    interface: nic.rail,
                    addresses: nic
                        .blocks
                        .iter()
                        .map(|(b, _)| IpNet::new(nth(*b, host), b.prefix_len()).unwrap_or(*b))
                        .collect(),
                    gateways: nic
                        .blocks
                        .iter()
                        .filter(|_| !state.no_gateways)
                        .map(|(b, _)| nth(*b, 1))
                        .collect(),
                    routes: nic
                        .blocks
                        .iter()
                        .map(|(b, rail)| PodRoute {
                            dst: *rail,
                            gw: (!state.no_gateways).then(|| nth(*b, 1)),
                        })
                        .collect(),
                    mac: state.annotated_macs.get(&nic.rail).cloned(),
                })
                .collect();
            state.allocations.insert(attachment, nics.clone());
            Response::Added { nics }
        }
        Request::Del { attachment } => {
            state.allocations.remove(&attachment);
            Response::Done
        }
        Request::Check { attachment } => match state.allocations.contains_key(&attachment) {
            true => Response::Done,
            false => error(codes::UNKNOWN_CONTAINER, "attachment is not allocated"),
        },
        Request::Gc { network, valid } => {
            let before = state.allocations.len();
            state
                .allocations
                .retain(|id, _| id.network != network || valid.contains(id));
            Response::Collected {
                released: (before - state.allocations.len()) as u32,
            }
        }
        Request::Status { .. } => Response::Done,
        // External IPAM: the same NICs, their blocks, nothing allocated.
        Request::Choose { selection, .. } => {
            let chosen = match chosen_nics(state, &selection, None) {
                Ok(nics) => nics,
                Err(e) => return e,
            };
            let nics = chosen
                .iter()
                .map(|nic| NicChoice {
                    nic: railyard_core::IfName::new(&nic.name).expect("test NIC names are valid"),
                    interface: nic.rail,
                    blocks: nic
                        .blocks
                        .iter()
                        .map(|(b, _)| ChosenBlock {
                            cidr: *b,
                            gateway: Some(nth(*b, 1)),
                            excludes: state.excludes.clone(),
                        })
                        .collect(),
                    routes: nic
                        .blocks
                        .iter()
                        .map(|(b, rail)| PodRoute {
                            dst: *rail,
                            gw: Some(nth(*b, 1)),
                        })
                        .collect(),
                })
                .collect();
            Response::Chosen { nics }
        }
    }
}
