//! `railyard-cni` with the pod's own devices (`devices` in the config): one
//! SR-IOV VF per rail, handed to that rail's delegate, and GPU-aligned NICs.
//!
//! What is simulated, because these machines have no SR-IOV NIC and no GPU:
//! - the VFs are veth links in the host netns (`ry-r<i>v<k>`), and their PCI
//!   identity is a sysfs-shaped tree in a temp dir (`physfn` links to the
//!   rail NIC's PF, `net/<name>`, `numa_node`, PCIe roots in the canonical
//!   paths), which railyard-cni reads through `devices.pciDevices`;
//! - the kubelet is `railyard_podresources::server::TestServer`, serving
//!   pod-resources over gRPC from the kubelet's own proto;
//! - the daemon is the stand-in (`common::daemon`), which chooses with the
//!   real policy function (`railyard_core::attach::select_nics`).
//!
//! What is real: railyard-cni and its gRPC client, the real host-device and
//! macvlan plugins moving and making links in real network namespaces.
//! Needs root and fails without it.

mod common;

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use common::daemon::{TestDaemon, TestNic};
use common::netns::{require_root, Netns};
use common::world::World;
use railyard_podresources::server::TestServer;
use railyard_podresources::{Memory, PodDevice};
use serde_json::{json, Value};

const RAILS: u32 = 8;

fn nic(i: u32) -> String {
    format!("ry-r{i}")
}

/// The PCI bus of rail `i`'s PF, its root complex and NUMA node: one root
/// per rail, rails 0-3 on node 0 and 4-7 on node 1 (a DGX-like host).
fn bus(i: u32) -> u32 {
    0x10 * (i + 1) + 1
}
fn root(i: u32) -> String {
    format!("pci0000:{:02x}", 0x10 * (i + 1))
}
fn numa(i: u32) -> i32 {
    i32::from(i >= 4)
}
fn vf_pci(i: u32, k: u32) -> String {
    format!("0000:{:02x}:00.{}", bus(i), k + 1)
}
fn gpu_pci(i: u32) -> String {
    format!("0000:{:02x}:00.0", bus(i) + 1)
}

/// The sysfs-shaped tree: `devices/pci…/<bdf>`, `bus/pci/devices/<bdf>`
/// links to them, and `class/net/<nic>/device` for the rail NICs.
struct FakeSysfs(tempfile::TempDir);

impl FakeSysfs {
    fn new(vfs_per_rail: u32) -> FakeSysfs {
        let dir = tempfile::tempdir().expect("sysfs tempdir");
        let s = FakeSysfs(dir);
        for i in 0..RAILS {
            let pf = format!("0000:{:02x}:00.0", bus(i));
            s.device(i, &pf, Some(&nic(i)));
            let net = s.0.path().join("class/net").join(nic(i));
            std::fs::create_dir_all(&net).unwrap();
            symlink(s.dev_dir(i, &pf), net.join("device")).unwrap();
            for k in 0..vfs_per_rail {
                let vf = s.device(i, &vf_pci(i, k), Some(&format!("{}v{k}", nic(i))));
                symlink(format!("../{pf}"), vf.join("physfn")).unwrap();
            }
            s.device(i, &gpu_pci(i), None);
        }
        s
    }

    fn dev_dir(&self, i: u32, bdf: &str) -> PathBuf {
        self.0.path().join("devices").join(root(i)).join(bdf)
    }

    fn device(&self, i: u32, bdf: &str, netdev: Option<&str>) -> PathBuf {
        let dir = self.dev_dir(i, bdf);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("numa_node"), format!("{}\n", numa(i))).unwrap();
        if let Some(n) = netdev {
            std::fs::create_dir_all(dir.join("net").join(n)).unwrap();
        }
        let bus_dir = self.pci_root();
        std::fs::create_dir_all(&bus_dir).unwrap();
        symlink(&dir, bus_dir.join(bdf)).unwrap();
        dir
    }

    fn pci_root(&self) -> PathBuf {
        self.0.path().join("bus/pci/devices")
    }

    fn net_root(&self) -> PathBuf {
        self.0.path().join("class/net")
    }
}

/// A host netns with 8 rail NICs and `vfs` simulated VFs per rail, the
/// stand-in daemon knowing where each NIC sits, the kubelet and the tree.
struct Gpu {
    world: World,
    sysfs: FakeSysfs,
    kubelet: Memory,
    _server: TestServer,
    socket: PathBuf,
}

impl Gpu {
    fn new(vfs: u32) -> Gpu {
        require_root();
        let daemon = TestDaemon::start(
            (0..RAILS)
                .map(|i| {
                    let block = format!("192.168.{}.0/24", 16 * i);
                    let cidr = format!("192.168.{}.0/20", 16 * i);
                    TestNic::v4(&nic(i), i, &block, &cidr).placed(&root(i), numa(i))
                })
                .collect(),
        );
        let host = Netns::new("gpuhost");
        for i in 0..RAILS {
            veth(&host, &nic(i), &format!("x{i}"));
            host.ip(&[
                "addr",
                "add",
                &format!("192.168.{}.1/24", 16 * i),
                "dev",
                &nic(i),
            ]);
            for k in 0..vfs {
                veth(&host, &format!("{}v{k}", nic(i)), &format!("x{i}v{k}"));
            }
        }
        let mut world = World::without_host(daemon);
        world.host = Some(host);
        let sysfs = FakeSysfs::new(vfs);
        let kubelet = Memory::new();
        let socket = sysfs.0.path().join("kubelet.sock");
        let server = TestServer::start(&socket, kubelet.clone()).expect("test kubelet");
        Gpu {
            world,
            sysfs,
            kubelet,
            _server: server,
            socket,
        }
    }

    fn host(&self) -> &Netns {
        self.world.host.as_ref().unwrap()
    }

    fn conf(&self, delegate: Value, rail_resources: bool) -> Value {
        let mut conf = self.world.conf("1.0.0", delegate);
        let mut devices = json!({
            "podResourcesSocket": self.socket,
            "pciDevices": self.sysfs.pci_root(),
            "netDevices": self.sysfs.net_root(),
        });
        if rail_resources {
            devices["railResources"] = (0..RAILS)
                .map(|i| (i.to_string(), json!(resource(i))))
                .collect();
        }
        conf["devices"] = devices;
        conf
    }
}

fn veth(host: &Netns, name: &str, peer: &str) {
    host.ip(&["link", "add", name, "type", "veth", "peer", "name", peer]);
    host.ip(&["link", "set", name, "up"]);
    host.ip(&["link", "set", peer, "up"]);
}

fn resource(i: u32) -> String {
    format!("example.com/rail{i}_vf")
}

fn vf(i: u32, k: u32) -> PodDevice {
    PodDevice {
        resource: resource(i),
        id: vf_pci(i, k),
        numa_nodes: vec![i64::from(numa(i))],
    }
}

fn gpu_device(i: u32) -> PodDevice {
    PodDevice {
        resource: "nvidia.com/gpu".into(),
        id: gpu_pci(i),
        numa_nodes: vec![i64::from(numa(i))],
    }
}

/// Each member's NIC and the device its delegate config names.
fn members(world: &World, container: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(world.state_file(container)).expect("state file");
    let state: Value = serde_json::from_str(&text).unwrap();
    state["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let dev = m["config"]["device"].as_str().unwrap_or_default();
            (m["nic"].as_str().unwrap().to_owned(), dev.to_owned())
        })
        .collect()
}

#[test]
fn an_eight_rail_pod_gets_each_rails_own_vf_and_del_returns_them() {
    let gpu = Gpu::new(2);
    // The kubelet gave pod-c1 the second VF of each rail, in two containers.
    let (a, b): (Vec<PodDevice>, Vec<PodDevice>) = (0..RAILS)
        .map(|i| vf(i, 1))
        .partition(|d| d.id < vf_pci(4, 0));
    gpu.kubelet.set_pod("ml", "pod-c1", vec![a, b]);
    let conf = gpu.conf(json!({"type": "host-device"}), true);

    let pod = Netns::new("vfpod");
    let result = gpu.world.run("ADD", "c1", &pod.path(), &conf).ok();
    let mut addrs = pod.addrs();
    addrs.remove("lo");
    assert_eq!(addrs.len(), RAILS as usize, "{addrs:?} {result}");
    for i in 0..RAILS {
        let want = format!("192.168.{}.10/24", 16 * i);
        assert_eq!(addrs[&format!("net1-{i}")], [want], "rail {i}: {addrs:?}");
    }
    let want: Vec<(String, String)> = (0..RAILS)
        .map(|i| (nic(i), format!("{}v1", nic(i))))
        .collect();
    assert_eq!(members(&gpu.world, "c1"), want, "each rail's own VF");
    let links = gpu.host().links();
    for i in 0..RAILS {
        assert!(
            !links.contains(&format!("{}v1", nic(i))),
            "VF left: {links:?}"
        );
        assert!(links.contains(&format!("{}v0", nic(i))), "other VF stays");
        assert!(links.contains(&nic(i)), "the PF stays");
    }

    gpu.world.run("DEL", "c1", &pod.path(), &conf).ok();
    assert_eq!(pod.links(), Vec::<String>::new());
    let back = gpu.host().links();
    for i in 0..RAILS {
        assert!(back.contains(&format!("{}v1", nic(i))), "{back:?}");
    }
    assert!(gpu.world.daemon.allocations().is_empty());
    assert!(!gpu.world.state_file("c1").exists());
}

#[test]
fn a_missing_vf_allocates_nothing_and_moves_nothing() {
    let gpu = Gpu::new(1);
    // No VF of rail 3's resource.
    let held: Vec<PodDevice> = (0..RAILS).filter(|&i| i != 3).map(|i| vf(i, 0)).collect();
    gpu.kubelet.set_pod("ml", "pod-c2", vec![held]);
    let conf = gpu.conf(json!({"type": "host-device"}), true);
    let pod = Netns::new("novf");
    let (code, msg) = gpu.world.run("ADD", "c2", &pod.path(), &conf).err();
    assert_eq!(code, 100, "{msg}");
    assert!(
        msg.contains("ry-r3 (the pod holds no device of rail 3)"),
        "{msg}"
    );
    assert!(gpu.world.daemon.allocations().is_empty());
    assert!(!gpu.world.state_file("c2").exists());
    assert_eq!(pod.links(), Vec::<String>::new());
    let vfs = gpu.host().links();
    let vfs = vfs
        .iter()
        .filter(|l| l.starts_with("ry-r") && l.contains('v'));
    assert_eq!(vfs.count(), RAILS as usize, "every VF is still in the host");

    // A pod the kubelet does not list: try again later, nothing held.
    let (code, msg) = gpu.world.run("ADD", "c9", &pod.path(), &conf).err();
    assert_eq!(code, 11, "{msg}");
    assert!(msg.contains("does not list pod ml/pod-c9"), "{msg}");
    assert_eq!(
        gpu.world.daemon.request_count(),
        1,
        "the daemon was asked once (c2)"
    );
}

#[test]
fn a_two_gpu_pod_gets_the_nics_under_its_gpus_and_says_why() {
    let gpu = Gpu::new(0);
    gpu.kubelet.set_pod(
        "ml",
        "pod-c3",
        vec![vec![gpu_device(5)], vec![gpu_device(2)]],
    );
    let conf = gpu.conf(json!({"type": "macvlan", "mode": "bridge"}), false);
    let pod = Netns::new("gpupod");
    let result = gpu.world.run("ADD", "c3", &pod.path(), &conf).ok();
    let nics: Vec<String> = members(&gpu.world, "c3")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(nics, [nic(2), nic(5)], "{result}");
    let choices: Vec<(&str, &str)> = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("sandbox").is_some())
        .map(|i| {
            (
                i["name"].as_str().unwrap(),
                i["railyardChoice"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        choices,
        [("net1-2", "gpu-pcie-root"), ("net1-5", "gpu-pcie-root")],
        "{result}"
    );

    // GC with nothing valid releases everything.
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    gpu.world.run_plain("GC", &gc).ok();
    assert!(gpu.world.daemon.allocations().is_empty());
    assert!(!gpu.world.state_file("c3").exists());
    assert_eq!(pod.links(), Vec::<String>::new());
}

#[test]
fn devices_config_errors_name_the_field() {
    let gpu = Gpu::new(0);
    let pod = Netns::new("badconf");
    let mut conf = gpu.conf(json!({"type": "macvlan"}), true);
    let (code, msg) = gpu.world.run("ADD", "c4", &pod.path(), &conf).err();
    assert_eq!(code, 2, "{msg}");
    assert!(
        msg.contains("devices.railResources") && msg.contains("\"macvlan\""),
        "{msg}"
    );
    conf = gpu.conf(json!({"type": "host-device"}), false);
    conf["devices"]["railResources"] = json!({"first": "x"});
    let (code, msg) = gpu.world.run("ADD", "c4", &pod.path(), &conf).err();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("devices.railResources.first"), "{msg}");
    conf = gpu.conf(json!({"type": "host-device"}), false);
    conf["devices"]["gpus"] = json!(true);
    let (_, msg) = gpu.world.run("ADD", "c4", &pod.path(), &conf).err();
    assert!(msg.contains("gpus"), "{msg}");
    assert_eq!(
        gpu.world.daemon.request_count(),
        0,
        "nothing reached the daemon"
    );
}
