//! The committed seed corpus, written by the real encoders from the repo's own
//! examples. Run again after a format change:
//!
//!     cargo test --manifest-path tests/fuzz/Cargo.toml --lib -- --ignored
//!
//! It only adds or overwrites its own `seed-*` files; inputs the fuzzer found
//! (crashes kept as regressions, `regress-*`) stay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use railyard_allocdb::{AddArgs, AllocDb, NetworkConfig, Options};
use railyard_core::ipam::{
    AttachmentId, ErrorReply, NicAllocation, PodRef, PodRoute, Request, Response, Selection,
};
use railyard_core::stored::Tombstone;
use railyard_core::{plan, HostInventory, NetworkManifest, Nic};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

struct Corpus {
    dir: PathBuf,
}

impl Corpus {
    fn new(target: &str) -> Corpus {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                std::fs::remove_file(p).unwrap();
            }
        }
        Corpus { dir }
    }

    fn put(&self, name: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}

/// Every JSON object in `text` (a README, a test) that has a `cniVersion`.
fn configs_in(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('{') {
        let mut de = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        if let Some(Ok(v)) = de.next() {
            if v.get("cniVersion").is_some() && v.get("type").is_some() && !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// Every raw string in `text` that reads as a MultiNicNetwork manifest.
fn manifests_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in text.split("r#\"").skip(1) {
        let Some((body, _)) = block.split_once("\"#") else {
            continue;
        };
        if body.contains("spec:") && serde_yaml::from_str::<NetworkManifest>(body).is_ok() {
            out.push(body.trim_start_matches('\n').to_owned());
        }
    }
    // The spec snippets of libs/core/tests/spec.rs: `rejects("  subnet: ...\n", ..)`.
    for call in ["rejects(", "validate("] {
        for block in text.split(call).skip(1) {
            let block = block.trim_start();
            let Some(lit) = block.strip_prefix('"') else {
                continue;
            };
            let Ok(spec) = serde_json::from_str::<String>(&format!("\"{}", rust_literal(lit)))
            else {
                continue;
            };
            let doc = format!("metadata: {{name: net-a}}\nspec:\n{spec}");
            if serde_yaml::from_str::<NetworkManifest>(&doc).is_ok() {
                out.push(doc);
            }
        }
    }
    // Whole manifests in one literal: `network("metadata: {name: n6}\nspec: ...")`.
    for block in text.split("\"metadata:").skip(1) {
        let lit = format!("metadata:{}", rust_literal(block));
        if let Ok(doc) = serde_json::from_str::<String>(&format!("\"{lit}")) {
            if serde_yaml::from_str::<NetworkManifest>(&doc).is_ok() {
                out.push(doc);
            }
        }
    }
    for block in text.split("```yaml").skip(1) {
        let Some((body, _)) = block.split_once("```") else {
            continue;
        };
        for doc in body.split("\n---") {
            if doc.contains("kind: MultiNicNetwork")
                && serde_yaml::from_str::<NetworkManifest>(doc).is_ok()
            {
                out.push(doc.trim_start_matches('\n').to_owned());
            }
        }
    }
    out
}

/// A Rust string literal's body up to its closing quote, with the closing
/// quote: close enough to JSON's escapes for the test snippets.
fn rust_literal(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            _ => {}
        }
    }
    out
}

fn example_network() -> (NetworkManifest, railyard_core::Network, Vec<HostInventory>) {
    let m: NetworkManifest = serde_yaml::from_str(&read("docs/examples/network.yaml")).unwrap();
    let net = m.validate().unwrap();
    let hosts: Vec<HostInventory> =
        serde_yaml::from_str(&read("docs/examples/hosts.yaml")).unwrap();
    (m, net, hosts)
}

fn cni_seeds() -> Vec<(String, Value)> {
    let mut confs = Vec::new();
    for file in ["ipam-plugin/README.md", "docs/kubernetes.md", "README.md"] {
        for (i, v) in configs_in(&read(file)).into_iter().enumerate() {
            confs.push((format!("{}-{i}", file.replace('/', "_")), v));
        }
    }
    // The shapes the tests use that the docs do not show.
    confs.push((
        "gc-1.1.0".into(),
        json!({"cniVersion": "1.1.0", "name": "rdma", "type": "railyard-ipam",
               "ipam": {"type": "railyard-ipam", "network": "rdma", "timeoutSeconds": 5},
               "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "net1"}],
               "cni.dev/attachments": [{"containerID": "c1", "ifname": "net1"}]}),
    ));
    confs.push((
        "ipam-args-1.0.0".into(),
        json!({"cniVersion": "1.0.0", "name": "rdma", "type": "macvlan", "master": "eth1",
               "ipam": {"type": "railyard-ipam", "socket": "/run/railyard/ipam.sock", "reportNics": true},
               "args": {"cni": {"nics": 2, "masters": ["eth1", "eth2"], "class": "fast", "numa": 0,
                                "ips": ["192.168.0.10/24"]}},
               "runtimeConfig": {"ips": ["192.168.64.10"], "deviceID": "0000:3b:00.1"}}),
    ));
    confs.push((
        "meta-host-device-1.1.0".into(),
        json!({"cniVersion": "1.1.0", "name": "rdma", "type": "railyard-cni",
               "ipam": {"type": "railyard-ipam"}, "stateDir": "/var/lib/cni/railyard",
               "ifNameTemplate": "net{rail}", "podPolicyRouting": true,
               "delegate": {"type": "host-device", "spareDevices": "{nic}s*"}}),
    ));
    confs.push((
        "meta-in-process-1.0.0".into(),
        json!({"cniVersion": "1.0.0", "name": "rdma", "type": "railyard-cni",
               "ipam": {"type": "railyard-ipam"}, "inProcessDelegates": true,
               "delegate": {"type": "ipvlan", "mode": "l3", "mtu": 9000}}),
    ));
    confs.push((
        "meta-devices-chain-1.0.0".into(),
        json!({"cniVersion": "1.0.0", "name": "gpu-rails", "type": "railyard-cni",
               "ipam": {"type": "railyard-ipam"},
               "delegate": {"type": "sriov"},
               "devices": {"railResources": {"0": "nvidia.com/rail0_vf", "1": "nvidia.com/rail1_vf"},
                           "gpuResources": ["nvidia.com/gpu"],
                           "podResourcesSocket": "/var/lib/kubelet/pod-resources/kubelet.sock"},
               "chain": [{"type": "rdma"},
                         {"type": "tuning", "mtu": 4200, "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1"}},
                         {"type": "bandwidth", "ingressRate": 100000000, "ingressBurst": 200000}],
               "railyardDevices": {"gpus": [{"id": "0000:3c:00.0", "pcieRoot": "pci0000:3a", "numaNode": 0}],
                                   "deviceRails": [{"rail": 0, "nics": ["ens1f0"]}]}}),
    ));
    // prevResults of every version, as a chained plugin gets them.
    let result = json!({
        "interfaces": [{"name": "eth1", "mac": "0a:58:0a:00:00:01", "mtu": 9000, "sandbox": "/proc/self/ns/net"}],
        "ips": [{"address": "192.168.0.10/24", "gateway": "192.168.0.1", "interface": 0},
                {"address": "fd00::a/64", "gateway": "fd00::1"}],
        "routes": [{"dst": "192.168.0.0/18", "gw": "192.168.0.1", "mtu": 1500, "table": 100},
                   {"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["svc"], "options": ["ndots:5"]}
    });
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let mut prev = result.clone();
        prev["cniVersion"] = v.into();
        if v.starts_with("0.") {
            for ip in prev["ips"].as_array_mut().unwrap() {
                let fam = if ip["address"].as_str().unwrap().contains(':') {
                    "6"
                } else {
                    "4"
                };
                ip["version"] = fam.into();
            }
        }
        confs.push((
            format!("prev-{v}"),
            json!({"cniVersion": v, "name": "rdma", "type": "tuning", "prevResult": prev}),
        ));
    }
    confs
}

fn write_cni() {
    let config = Corpus::new("cni_config");
    let invocation = Corpus::new("cni_invocation");
    let seeds = cni_seeds();
    for (name, v) in &seeds {
        config.put(name, serde_json::to_vec_pretty(v).unwrap());
    }
    let envs: [(&str, &str); 6] = [
        ("ADD", "CNI_COMMAND=ADD\nCNI_CONTAINERID=c0ffee\nCNI_NETNS=/proc/self/ns/net\nCNI_IFNAME=net1\nCNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-0;K8S_POD_UID=1234;K8S_POD_INFRA_CONTAINER_ID=c0ffee\nCNI_PATH=/opt/cni/bin:/usr/lib/cni\n"),
        ("DEL", "CNI_COMMAND=DEL\nCNI_CONTAINERID=c0ffee\nCNI_NETNS=/var/run/netns/gone\nCNI_IFNAME=net1\nCNI_PATH=/opt/cni/bin\n"),
        ("CHECK", "CNI_COMMAND=CHECK\nCNI_CONTAINERID=c0ffee\nCNI_NETNS=/proc/self/ns/net\nCNI_IFNAME=net1\nCNI_PATH=/opt/cni/bin\n"),
        ("GC", "CNI_COMMAND=GC\nCNI_PATH=/opt/cni/bin\n"),
        ("STATUS", "CNI_COMMAND=STATUS\nCNI_PATH=/opt/cni/bin\n"),
        ("VERSION", "CNI_COMMAND=VERSION\n"),
    ];
    for (cmd, env) in envs {
        for (name, v) in &seeds {
            let fits = match cmd {
                "GC" | "STATUS" => v["cniVersion"] == "1.1.0",
                "ADD" | "DEL" | "CHECK" => true,
                _ => name == "prev-1.1.0" || name == "gc-1.1.0",
            };
            if fits {
                invocation.put(&format!("{cmd}-{name}"), format!("{env}\n{v}"));
            }
        }
    }
    invocation.put("VERSION-empty", "CNI_COMMAND=VERSION\n\n");
    invocation.put(
        "ADD-no-netns",
        "CNI_COMMAND=ADD\nCNI_CONTAINERID=c\nCNI_IFNAME=eth0\n\n{}",
    );
}

fn write_spec() {
    let c = Corpus::new("network_spec");
    let mut n = 0;
    let mut put = |s: &str| {
        c.put(&format!("{n:02}.yaml"), s);
        n += 1;
    };
    put(&read("docs/examples/network.yaml"));
    for f in [
        "libs/core/tests/spec.rs",
        "libs/core/tests/common.rs",
        "libs/core/tests/plan.rs",
        "libs/core/tests/routes.rs",
        "libs/core/tests/nic_grace.rs",
        "libs/core/src/ifacer.rs",
        "docs/kubernetes.md",
        "tests/src/cluster/spec.rs",
    ] {
        for m in manifests_in(&read(f)) {
            put(&m);
        }
    }
    // The same manifests as JSON (kubectl's other form).
    let (m, _, _) = example_network();
    c.put("json", serde_json::to_vec_pretty(&m).unwrap());
}

async fn write_log() {
    let c = Corpus::new("alloc_log");
    let (_, net, hosts) = example_network();
    let p = plan(&net, &hosts, None, 0, 0);
    let host = &hosts[0];
    let cfg = NetworkConfig::from_plan(&net, &p, &host.name);
    let nics: Vec<Nic> = host.nics.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = AllocDb::open(dir.path(), Options::default()).unwrap();
    let log = || std::fs::read(dir.path().join("allocations.log")).unwrap();
    db.set_network(cfg.clone()).await.unwrap();
    c.put("network", log());
    let id = |c: &str| AttachmentId {
        network: net.name.clone(),
        container_id: c.into(),
        ifname: "net1".into(),
    };
    for (i, pod) in ["a", "b", "c"].iter().enumerate() {
        let mut args = AddArgs::new(id(pod));
        args.pod = PodRef {
            namespace: "default".into(),
            name: format!("pod-{pod}"),
            uid: format!("uid-{i}"),
            controller: None,
        };
        if i == 1 {
            args.selection.nics = Some(1);
        }
        db.add(&args, &nics, &[]).await.unwrap();
    }
    c.put("adds", log());
    db.del(&id("a")).await.unwrap();
    db.gc(&net.name, &[id("c")]).await.unwrap();
    c.put("releases", log());
    db.compact().await.unwrap();
    db.add(&AddArgs::new(id("d")), &nics, &[]).await.unwrap();
    c.put("snapshot-then-add", log());
    // The plan drops a block that still holds a pod: a leftover block.
    let mut smaller = cfg.clone();
    smaller.blocks.truncate(1);
    db.set_network(smaller).await.unwrap();
    c.put("block-left-plan", log());
    drop(db);
    // A torn tail, as a crash mid-write leaves it.
    let mut torn = log();
    let cut = torn.len() - 7;
    torn.truncate(cut);
    c.put("torn", torn);
}

fn write_protocol() {
    let c = Corpus::new("ipam_protocol");
    let id = AttachmentId {
        network: "multi-nic-sample".into(),
        container_id: "c0ffee".into(),
        ifname: "net1".into(),
    };
    let requests = [
        Request::Add {
            attachment: id.clone(),
            pod: PodRef {
                namespace: "default".into(),
                name: "pod-0".into(),
                uid: "1234".into(),
                controller: None,
            },
            selection: Selection {
                nics: Some(2),
                masters: vec!["eth1".into(), "eth2".into()],
                class: Some("fast".into()),
                numa: Some(0),
                ips: vec!["192.168.0.10".parse().unwrap()],
                ..Selection::default()
            },
            master: Some("eth1".into()),
        },
        Request::Add {
            attachment: id.clone(),
            pod: PodRef::default(),
            selection: Selection::default(),
            master: None,
        },
        Request::Del {
            attachment: id.clone(),
        },
        Request::Check {
            attachment: id.clone(),
        },
        Request::Gc {
            network: "multi-nic-sample".into(),
            valid: vec![id.clone()],
        },
        Request::Status {
            network: "multi-nic-sample".into(),
        },
    ];
    for (i, r) in requests.iter().enumerate() {
        let mut line = serde_json::to_vec(r).unwrap();
        line.push(b'\n');
        c.put(&format!("request-{i}"), line);
    }
    let nic = |name: &str, rail: u32, third: u32| NicAllocation {
        nic: name.parse().unwrap(),
        interface: rail,
        addresses: vec![format!("192.168.{third}.2/24").parse().unwrap()],
        gateways: vec![format!("192.168.{third}.1").parse().unwrap()],
        routes: vec![PodRoute {
            dst: format!("192.168.{}.0/18", third / 64 * 64).parse().unwrap(),
            gw: Some(format!("192.168.{third}.1").parse().unwrap()),
        }],
        mac: None,
    };
    let mut dual = nic("eth2", 1, 65);
    dual.addresses.push("fd00:1::2/64".parse().unwrap());
    dual.gateways.push("fd00:1::1".parse().unwrap());
    let responses = [
        Response::Added {
            nics: vec![nic("eth1", 0, 1), dual],
        },
        Response::Done,
        Response::Collected { released: 3 },
        Response::Error(ErrorReply {
            code: 11,
            message: "no plan for network \"multi-nic-sample\" on this host yet".into(),
        }),
    ];
    for (i, r) in responses.iter().enumerate() {
        let mut line = serde_json::to_vec(r).unwrap();
        line.push(b'\n');
        c.put(&format!("response-{i}"), line);
    }
}

fn write_keys() {
    let c = Corpus::new("plan_keys");
    let (_, net, hosts) = example_network();
    let p = plan(&net, &hosts, None, 0, 0);
    let (mut meta, entries) = p.split();
    meta.spec = Some(net.spec.clone());
    meta.spec_revision = 42;
    let entries: BTreeMap<_, _> = entries.clone();
    let head = "multi-nic-sample\nnode-a\nc0ffee\nnet1\n";
    c.put(
        "meta",
        format!("{head}{}", serde_json::to_string(&meta).unwrap()),
    );
    for (h, e) in &entries {
        c.put(
            &format!("host-{h}"),
            format!(
                "multi-nic-sample\n{h}\nc0ffee\nnet1\n{}",
                serde_json::to_string(e).unwrap()
            ),
        );
    }
    let tomb = Tombstone {
        network: "old-net".into(),
        subnets: net.subnets.clone(),
        deleted_at: 1_700_000_000,
    };
    c.put(
        "tombstone",
        format!(
            "old-net\nnode-b.example.com\n0123456789abcdef\neth0\n{}",
            serde_json::to_string(&tomb).unwrap()
        ),
    );
}

#[test]
#[ignore = "writes the seed corpus; run by hand after a format change"]
fn write_seed_corpus() {
    write_cni();
    write_spec();
    write_protocol();
    write_keys();
    crate::block_on(write_log());
}
