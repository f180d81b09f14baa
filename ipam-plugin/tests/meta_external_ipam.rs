//! `railyard-cni` with an external IPAM (`ipam.external`, a network's
//! `multiNICIPAM: false`): the real host-local (upstream v1.10.0, built by
//! `make deps`) allocates each rail's address inside the host block the
//! daemon names (the stand-in answers `choose` with the NICs an ADD would
//! get), once per rail, then ptp makes each rail's interface with it.
//! Needs root and fails without it.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use common::daemon::{TestDaemon, TestNic};
use common::netns::Netns;
use common::world::World;
use ipnet::IpNet;
use railyard_core::ipam::Request;
use serde_json::{json, Value};

fn external_conf(world: &World, data_dir: &Path) -> Value {
    let mut conf = world.conf("1.0.0", json!({"type": "ptp"}));
    conf["ipam"]["external"] = json!({"type": "host-local", "dataDir": data_dir});
    conf
}

/// The pod's addresses by pod interface, from a result.
fn addresses(result: &Value) -> Vec<(String, IpNet)> {
    let interfaces = result["interfaces"].as_array().unwrap();
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| {
            let i = ip["interface"].as_u64().unwrap() as usize;
            let name = interfaces[i]["name"].as_str().unwrap().to_owned();
            (name, ip["address"].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// The addresses host-local holds in one rail's directory (files named by
/// address; its `last_reserved_ip.*` and `lock` are not addresses).
fn held(data_dir: &Path, rail: u32) -> Vec<IpAddr> {
    let dir: PathBuf = data_dir.join(format!("rdma.rail{rail}"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort();
    out
}

#[test]
fn host_local_gives_each_rail_an_address_in_its_host_block_and_del_frees_them() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world
        .cni_path
        .link_upstream(&["ptp", "host-local", "static"]);
    // The network's excludes reach host-local as ranges around them.
    world
        .daemon
        .set_excludes(&["192.168.0.0/28", "192.168.64.0/28"]);
    let data = tempfile::tempdir().unwrap();
    let conf = external_conf(&world, data.path());
    let (pod1, pod2) = (Netns::new("ext1"), Netns::new("ext2"));

    let first = world.run("ADD", "c1", &pod1.path(), &conf).ok();
    let got1 = addresses(&first);
    let blocks: [IpNet; 2] = [
        "192.168.0.0/24".parse().unwrap(),
        "192.168.64.0/24".parse().unwrap(),
    ];
    assert_eq!(got1.len(), 2, "one address per rail: {first}");
    for ((ifname, addr), (want_if, block)) in got1
        .iter()
        .zip([("net1-0", blocks[0]), ("net1-1", blocks[1])])
    {
        assert_eq!(ifname, want_if, "{first}");
        assert!(block.contains(&addr.addr()), "{addr} outside {block}");
        assert_eq!(addr.prefix_len(), 24, "the block's prefix: {addr}");
        let excluded: IpNet = IpNet::new(block.network(), 28).unwrap();
        assert!(!excluded.contains(&addr.addr()), "{addr} is excluded");
        let shown = pod1.ip(&["-o", "addr", "show", "dev", ifname]);
        assert!(shown.contains(&addr.to_string()), "{ifname}: {shown}");
    }
    assert_eq!(held(data.path(), 0), vec![got1[0].1.addr()]);
    assert_eq!(held(data.path(), 1), vec![got1[1].1.addr()]);
    assert!(
        world.daemon.allocations().is_empty(),
        "the daemon allocated nothing"
    );
    assert!(world
        .daemon
        .requests()
        .iter()
        .any(|r| matches!(r, Request::Choose { .. })));
    // The rail routes the daemon gave go on each rail's interface.
    let routes = pod1.ip(&["route", "show", "192.168.64.0/18"]);
    assert!(routes.contains("net1-1"), "{routes}");

    let second = world.run("ADD", "c2", &pod2.path(), &conf).ok();
    let got2 = addresses(&second);
    assert_eq!(got2.len(), 2);
    for (a, b) in got1.iter().zip(&got2) {
        assert_ne!(a.1, b.1, "a second pod gets other addresses");
    }
    assert_eq!(held(data.path(), 0).len(), 2);

    world
        .run(
            "CHECK",
            "c1",
            &pod1.path(),
            &World::with_prev(&conf, &first),
        )
        .ok();
    // A re-ADD (the runtime retrying) keeps what the pod has.
    let again = world.run("ADD", "c2", &pod2.path(), &conf).ok();
    assert_eq!(addresses(&again), got2, "same addresses on a re-ADD");
    assert_eq!(held(data.path(), 1).len(), 2, "no address taken twice");

    world
        .run("DEL", "c1", &pod1.path(), &World::with_prev(&conf, &first))
        .ok();
    assert_eq!(
        held(data.path(), 0),
        vec![got2[0].1.addr()],
        "c1's are free"
    );
    assert_eq!(held(data.path(), 1), vec![got2[1].1.addr()]);
    assert_eq!(pod1.links(), Vec::<String>::new());
    assert!(!world.state_file("c1").exists());
    // host-local's CHECK finds nothing for a pod that is gone.
    let (code, _) = world
        .run(
            "CHECK",
            "c1",
            &pod1.path(),
            &World::with_prev(&conf, &first),
        )
        .err();
    assert_eq!(code, 3, "no record: container unknown");

    world.run("DEL", "c2", &pod2.path(), &conf).ok();
    assert_eq!(held(data.path(), 0), Vec::<IpAddr>::new());
    assert_eq!(held(data.path(), 1), Vec::<IpAddr>::new());
    // DEL again: nothing left, still a success.
    world.run("DEL", "c2", &pod2.path(), &conf).ok();
}

#[test]
fn a_failure_on_one_rail_releases_the_other_rails_address() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world.cni_path.link_upstream(&["ptp", "static"]);
    let upstream = std::env::var("RAILYARD_UPSTREAM_BIN")
        .unwrap_or_else(|_| "/opt/railyard-upstream/bin".into());
    // host-local, but rail 1's call fails as a full range would.
    world.cni_path.add_script(
        "host-local",
        &format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ] && [ \"$CNI_IFNAME\" = net1-1 ]; then\n\
             echo '{{\"cniVersion\": \"1.0.0\", \"code\": 11, \"msg\": \"no IP addresses available in range set\"}}'\n\
             exit 1\nfi\nexec {upstream}/host-local\n"
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let conf = external_conf(&world, data.path());
    let pod = Netns::new("extfail");
    let (code, msg) = world.run("ADD", "c3", &pod.path(), &conf).err();
    assert_eq!(code, 11, "{msg}");
    assert!(
        msg.contains("host-local") && msg.contains("net1-1") && msg.contains("rail 1"),
        "names the plugin, the interface and the rail: {msg}"
    );
    assert_eq!(
        held(data.path(), 0),
        Vec::<IpAddr>::new(),
        "rail 0 released"
    );
    assert_eq!(pod.links(), Vec::<String>::new());
    assert!(!world.state_file("c3").exists());
}

#[test]
fn bad_external_configs_name_the_field_and_reach_nothing() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world
        .cni_path
        .link_upstream(&["ptp", "host-local", "static"]);
    let pod = Netns::new("extbad");
    let data = tempfile::tempdir().unwrap();
    for (external, code, field) in [
        (json!({"dataDir": "/x"}), 7, "ipam.external.type"),
        (json!({"type": "dhcp"}), 7, "ipam.external.type"),
        (json!({"type": "railyard-ipam"}), 7, "ipam.external.type"),
        (
            json!({"type": "host-local", "subnet": "10.9.0.0/16"}),
            2,
            "ipam.external.subnet",
        ),
        (
            json!({"type": "host-local", "dataDir": "rel"}),
            7,
            "ipam.external.dataDir",
        ),
        (json!("host-local"), 7, "ipam.external"),
    ] {
        let mut conf = external_conf(&world, data.path());
        conf["ipam"]["external"] = external.clone();
        let (got, msg) = world.run("ADD", "c4", &pod.path(), &conf).err();
        assert_eq!(got, code, "{external}: {msg}");
        assert!(msg.contains(field), "{field} missing from {msg}");
    }
    assert_eq!(
        world.daemon.request_count(),
        0,
        "nothing reached the daemon"
    );
    // Static addresses are railyard-ipam's: refused naming the field.
    let mut conf = external_conf(&world, data.path());
    conf["runtimeConfig"] = json!({"ips": ["192.168.0.77/24"]});
    let (got, msg) = world.run("ADD", "c4", &pod.path(), &conf).err();
    assert_eq!(got, 7, "{msg}");
    assert!(msg.contains("runtimeConfig.ips"), "{msg}");
    assert_eq!(world.daemon.request_count(), 0);
    assert!(!world.state_file("c4").exists());
    assert_eq!(held(data.path(), 0), Vec::<IpAddr>::new());
}

#[test]
fn gc_releases_forgotten_pods_addresses_and_status_needs_the_plugin() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world
        .cni_path
        .link_upstream(&["ptp", "host-local", "static"]);
    let data = tempfile::tempdir().unwrap();
    let mut conf = external_conf(&world, data.path());
    conf["cniVersion"] = json!("1.1.0");
    let (kept, forgotten) = (Netns::new("extkeep"), Netns::new("extgone"));
    let k = addresses(&world.run("ADD", "c5", &kept.path(), &conf).ok());
    world.run("ADD", "c6", &forgotten.path(), &conf).ok();
    assert_eq!(held(data.path(), 0).len(), 2);

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c5", "ifname": "net1"}]);
    world.run_plain("GC", &gc).ok();
    assert_eq!(held(data.path(), 0), vec![k[0].1.addr()], "c6's released");
    assert_eq!(held(data.path(), 1), vec![k[1].1.addr()]);
    assert_eq!(forgotten.links(), Vec::<String>::new());
    assert_eq!(kept.links().len(), 2);
    assert!(world.state_file("c5").exists() && !world.state_file("c6").exists());

    world.run_plain("STATUS", &conf).ok();
    // Whereabouts is not in this CNI_PATH: not ready, and an ADD fails on
    // it before the daemon is asked.
    let mut missing = conf.clone();
    missing["ipam"]["external"] = json!({"type": "whereabouts"});
    let (code, msg) = world.run_plain("STATUS", &missing).err();
    assert_eq!(code, 50, "{msg}");
    assert!(msg.contains("whereabouts"), "{msg}");
    let before = world.daemon.request_count();
    let (code, msg) = world.run("ADD", "c7", &forgotten.path(), &missing).err();
    assert_eq!(code, 5, "{msg}");
    assert!(msg.contains("whereabouts"), "{msg}");
    assert_eq!(world.daemon.request_count(), before);
    world.run("DEL", "c5", &kept.path(), &conf).ok();
    assert_eq!(held(data.path(), 0), Vec::<IpAddr>::new());
}

#[test]
fn a_failing_interface_releases_every_rails_external_address() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world.cni_path.link_upstream(&["host-local", "static"]);
    let upstream = std::env::var("RAILYARD_UPSTREAM_BIN")
        .unwrap_or_else(|_| "/opt/railyard-upstream/bin".into());
    world.cni_path.add_script(
        "ptp",
        &format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ] && [ \"$CNI_IFNAME\" = net1-1 ]; then\n\
             echo '{{\"cniVersion\": \"1.0.0\", \"code\": 999, \"msg\": \"no veth today\"}}'\n\
             exit 1\nfi\nexec {upstream}/ptp\n"
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let conf = external_conf(&world, data.path());
    let pod = Netns::new("extptp");
    let (_, msg) = world.run("ADD", "c8", &pod.path(), &conf).err();
    assert!(
        msg.contains("no veth today") && msg.contains("net1-1"),
        "{msg}"
    );
    assert_eq!(
        held(data.path(), 0),
        Vec::<IpAddr>::new(),
        "rail 0 released"
    );
    assert_eq!(
        held(data.path(), 1),
        Vec::<IpAddr>::new(),
        "rail 1 released"
    );
    assert_eq!(pod.links(), Vec::<String>::new(), "net1-0 removed");
    assert!(!world.state_file("c8").exists());
}

#[test]
fn dual_stack_rails_get_an_address_per_family_from_one_host_local_call() {
    let world = World::with_host(TestDaemon::start(vec![
        TestNic::v4("ry-h0a", 0, "192.168.0.0/24", "192.168.0.0/18")
            .with_v6("fd00:0:0:100::/120", "fd00::/48"),
        TestNic::v4("ry-h0b", 1, "192.168.64.0/24", "192.168.64.0/18")
            .with_v6("fd00:1:0:100::/120", "fd00:1::/48"),
    ]));
    world
        .cni_path
        .link_upstream(&["ptp", "host-local", "static"]);
    let data = tempfile::tempdir().unwrap();
    let conf = external_conf(&world, data.path());
    let pod = Netns::new("extdual");
    let result = world.run("ADD", "c9", &pod.path(), &conf).ok();
    let got = addresses(&result);
    let blocks: Vec<(&str, IpNet)> = vec![
        ("net1-0", "192.168.0.0/24".parse().unwrap()),
        ("net1-0", "fd00:0:0:100::/120".parse().unwrap()),
        ("net1-1", "192.168.64.0/24".parse().unwrap()),
        ("net1-1", "fd00:1:0:100::/120".parse().unwrap()),
    ];
    assert_eq!(got.len(), 4, "{result}");
    for ((ifname, addr), (want_if, block)) in got.iter().zip(&blocks) {
        assert_eq!(ifname, want_if, "{result}");
        assert!(block.contains(&addr.addr()), "{addr} outside {block}");
        assert_eq!(addr.prefix_len(), block.prefix_len());
    }
    // One call per rail: both families in that rail's directory.
    assert_eq!(held(data.path(), 0).len(), 2);
    assert_eq!(held(data.path(), 1).len(), 2);
    world.run("DEL", "c9", &pod.path(), &conf).ok();
    assert_eq!(held(data.path(), 0), Vec::<IpAddr>::new());
    assert_eq!(held(data.path(), 1), Vec::<IpAddr>::new());
}

#[test]
fn a_re_add_that_picks_other_nics_replaces_the_old_addresses() {
    let world = World::with_host(TestDaemon::two_rails("ry-h0a", "ry-h0b"));
    world
        .cni_path
        .link_upstream(&["ptp", "host-local", "static"]);
    let data = tempfile::tempdir().unwrap();
    let conf = external_conf(&world, data.path());
    let pod = Netns::new("extre");
    let first = addresses(&world.run("ADD", "c10", &pod.path(), &conf).ok());
    assert_eq!(first.len(), 2);
    // The runtime retries with a narrower selection: one NIC now.
    let mut one = conf.clone();
    one["args"] = json!({"cni": {"nics": 1}});
    let again = addresses(&world.run("ADD", "c10", &pod.path(), &one).ok());
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].0, "net1-0");
    assert_eq!(held(data.path(), 0), vec![again[0].1.addr()]);
    assert_eq!(
        held(data.path(), 1),
        Vec::<IpAddr>::new(),
        "rail 1 released"
    );
    let mut links = pod.links();
    links.sort();
    assert_eq!(links, ["net1-0"], "the old interfaces went");
    world.run("DEL", "c10", &pod.path(), &one).ok();
    assert_eq!(held(data.path(), 0), Vec::<IpAddr>::new());
}
