mod common;

use common::{host, hosts, network, upstream};
use railyard_core::{plan, Planner};

#[test]
fn upstream_worked_example() {
    let net = upstream();
    let inv = hosts(3, 2);
    let p = plan(&net, &inv, None, 0, 600);
    assert_eq!(p.interfaces.len(), 2);
    assert_eq!(p.interfaces[0].net_address.to_string(), "10.0.0.0/24");
    assert_eq!(p.interfaces[0].cidrs[0].to_string(), "192.168.0.0/18");
    assert_eq!(p.interfaces[1].net_address.to_string(), "10.0.1.0/24");
    assert_eq!(p.interfaces[1].cidrs[0].to_string(), "192.168.64.0/18");
    for (name, h) in &p.hosts {
        let i = h.index;
        assert_eq!(h.blocks.len(), 2, "{name}");
        for (j, b) in h.blocks.iter().enumerate() {
            assert_eq!(b.interface, j as u32);
            assert_eq!(b.nic, format!("eth{j}"));
            assert_eq!(
                b.cidr.to_string(),
                format!("192.168.{}.0/24", 64 * j as u32 + i)
            );
        }
    }
    let indexes: Vec<u32> = p.hosts.values().map(|h| h.index).collect();
    assert_eq!(indexes, vec![0, 1, 2]);
    assert!(p.unplanned.is_empty());
}

#[test]
fn master_nets_fix_the_interface_order() {
    let net = network(
        r#"
metadata: {name: n}
spec:
  subnet: 192.168.0.0/16
  ipam: '{"hostBlock": 6, "interfaceBlock": 2}'
  masterNets: ["10.0.1.0/24", "10.0.0.0/24"]
"#,
    );
    let mut inv = hosts(2, 3); // eth2 (10.0.2.0/24) is not a master net
    inv[0].nics.reverse();
    let p = plan(&net, &inv, None, 0, 600);
    assert_eq!(p.interfaces.len(), 2);
    assert_eq!(p.interfaces[0].net_address.to_string(), "10.0.1.0/24");
    assert_eq!(p.interfaces[1].net_address.to_string(), "10.0.0.0/24");
    let b = &p.hosts["host-00000"].blocks;
    assert_eq!(
        (b[0].nic.as_str(), b[0].cidr.to_string()),
        ("eth1", "192.168.0.0/24".into())
    );
    assert_eq!(
        (b[1].nic.as_str(), b[1].cidr.to_string()),
        ("eth0", "192.168.64.0/24".into())
    );
}

#[test]
fn hosts_keep_their_index_across_joins_and_leaves() {
    let net = upstream();
    let first = plan(&net, &hosts(5, 2), None, 0, 600);
    // host-00002 leaves; a newcomer joins; everyone else keeps their index.
    let mut inv = hosts(5, 2);
    inv.remove(2);
    inv.push(host("aaa-new", 9, 2, false));
    let second = plan(&net, &inv, Some(&first), 100, 600);
    for name in ["host-00000", "host-00001", "host-00003", "host-00004"] {
        assert_eq!(first.hosts[name].index, second.hosts[name].index, "{name}");
    }
    // The departed host's index is reserved, not reused.
    assert_eq!(second.hosts["host-00002"].departed_at, Some(100));
    assert_eq!(second.hosts["aaa-new"].index, 5);
    // Back within the grace period: same index.
    let third = plan(&net, &hosts(5, 2), Some(&second), 200, 600);
    assert_eq!(third.hosts["host-00002"].index, 2);
    assert_eq!(third.hosts["host-00002"].departed_at, None);
}

#[test]
fn departed_index_is_freed_after_grace_and_reused_last() {
    let net = network(
        "metadata: {name: n}\nspec:\n  subnet: 192.168.0.0/24\n  ipam: '{\"hostBlock\": 2, \"interfaceBlock\": 0}'\n",
    );
    let p1 = plan(&net, &hosts(2, 1), None, 0, 600);
    let p2 = plan(&net, &hosts(1, 1), Some(&p1), 10, 600); // host-00001 (index 1) leaves
    let p3 = plan(&net, &hosts(1, 1), Some(&p2), 610, 600); // grace over
    assert!(!p3.hosts.contains_key("host-00001"));
    assert_eq!(p3.retired, vec![1]);
    // Newcomers take never-used 2 and 3 first, then the retired 1.
    let mut inv = hosts(1, 1);
    for (k, n) in ["x", "y", "z"].iter().enumerate() {
        inv.push(host(n, 10 + k as u32, 1, false));
    }
    let p4 = plan(&net, &inv, Some(&p3), 620, 600);
    assert_eq!(p4.hosts["x"].index, 2);
    assert_eq!(p4.hosts["y"].index, 3);
    assert_eq!(p4.hosts["z"].index, 1);
    assert!(p4.retired.is_empty());
}

#[test]
fn exhaustion_names_the_hosts_left_out() {
    let net = network(
        "metadata: {name: n}\nspec:\n  subnet: 192.168.0.0/24\n  ipam: '{\"hostBlock\": 2, \"interfaceBlock\": 0}'\n",
    );
    let p = plan(&net, &hosts(6, 1), None, 0, 600);
    assert_eq!(p.hosts.len(), 4);
    let left: Vec<&str> = p.unplanned.iter().map(|u| u.host.as_str()).collect();
    assert_eq!(left, vec!["host-00004", "host-00005"]);
    assert!(
        p.unplanned[0].reason.contains("no free host index"),
        "{}",
        p.unplanned[0].reason
    );
    assert!(
        p.unplanned[0].reason.contains("4 hosts"),
        "{}",
        p.unplanned[0].reason
    );
}

#[test]
fn too_many_rails_are_reported_not_planned() {
    let net = network(
        "metadata: {name: n}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 1}'\n",
    );
    let p = plan(&net, &hosts(2, 3), None, 0, 600);
    assert_eq!(p.interfaces.len(), 2);
    assert_eq!(p.unplanned_interfaces.len(), 1);
    assert_eq!(
        p.unplanned_interfaces[0].net_address.to_string(),
        "10.0.2.0/24"
    );
    assert_eq!(p.hosts["host-00000"].blocks.len(), 2);
}

#[test]
fn host_without_a_rail_nic_is_unplanned_with_reason() {
    let net = network(
        "metadata: {name: n}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n  masterNets: [10.9.0.0/24]\n",
    );
    let p = plan(&net, &hosts(1, 1), None, 0, 600);
    assert!(p.hosts.is_empty());
    assert!(
        p.unplanned[0].reason.contains("masterNets"),
        "{}",
        p.unplanned[0].reason
    );
    assert!(
        p.unplanned[0].reason.contains("10.0.0.0/24"),
        "{}",
        p.unplanned[0].reason
    );
}

#[test]
fn excludes_remove_whole_rails_and_host_indexes() {
    let net = network(
        r#"
metadata: {name: n}
spec:
  subnet: 192.168.0.0/16
  ipam: '{"hostBlock": 6, "interfaceBlock": 2, "excludeCIDRs": ["192.168.64.0/18", "192.168.1.0/24", "192.168.2.0/23", "192.168.0.0/28"]}'
"#,
    );
    let p = plan(&net, &hosts(3, 2), None, 0, 600);
    // Rail index 1 is excluded, so the second NIC subnet gets index 2.
    let idx: Vec<u32> = p.interfaces.iter().map(|i| i.index).collect();
    assert_eq!(idx, vec![0, 2]);
    // Host indexes 1, 2 and 3 are excluded; /28 is left to the allocator.
    let hidx: Vec<u32> = p.hosts.values().map(|h| h.index).collect();
    assert_eq!(hidx, vec![0, 4, 5]);
    assert_eq!(
        p.hosts["host-00001"].blocks[1].cidr.to_string(),
        "192.168.132.0/24"
    );
}

#[test]
fn spec_change_that_excludes_a_live_index_is_reported() {
    let net = upstream();
    let p1 = plan(&net, &hosts(3, 2), None, 0, 600);
    let shrunk = network(
        "metadata: {name: multi-nic-sample}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 1, \"interfaceBlock\": 2}'\n",
    );
    let planner = Planner::new(&shrunk, Some(&p1));
    let r = planner
        .renumbered()
        .iter()
        .find(|r| r.subject == "host host-00002")
        .expect("host-00002 is renumbered");
    assert!(r.reason.contains("beyond hostBlock"), "{}", r.reason);
    // The others keep their index, but their blocks move (hostBlock 6 -> 1
    // widens every block): that is renumbering too (tests/renumber.rs).
    assert!(planner.renumbered().len() > 1);
}

#[test]
fn ipv6_and_dual_stack() {
    let v6 = network(
        "metadata: {name: n6}\nspec:\n  subnet: 'fd10::/48'\n  ipam: '{\"hostBlock\": 8, \"interfaceBlock\": 2}'\n",
    );
    let inv: Vec<_> = (0..2).map(|n| host(&format!("h{n}"), n, 2, true)).collect();
    let p = plan(&v6, &inv, None, 0, 600);
    assert_eq!(p.interfaces[0].net_address.to_string(), "fd00::/64");
    assert_eq!(p.interfaces[1].cidrs[0].to_string(), "fd10:0:0:4000::/50");
    assert_eq!(
        p.hosts["h1"].blocks[1].cidr.to_string(),
        "fd10:0:0:4040::/58"
    );
    assert_eq!(p.hosts["h1"].blocks[1].nic_address.to_string(), "fd00:1::2");

    let dual = network(
        "metadata: {name: nd}\nspec:\n  subnet: '192.168.0.0/16, fd10::/48'\n  ipam: '{\"hostBlock\": 6, \"interfaceBlock\": 2}'\n",
    );
    let p = plan(&dual, &inv, None, 0, 600);
    let b: Vec<String> = p.hosts["h1"]
        .blocks
        .iter()
        .map(|b| b.cidr.to_string())
        .collect();
    assert_eq!(
        b,
        vec![
            "192.168.1.0/24",
            "fd10:0:0:100::/56",
            "192.168.65.0/24",
            "fd10:0:0:4100::/56"
        ]
    );
}

#[test]
fn nic_addresses_inside_the_pod_subnet_or_link_local_are_ignored() {
    let net = upstream();
    let mut h = host("h", 0, 1, false);
    h.nics[0]
        .addresses
        .insert(0, "169.254.1.1/16".parse().unwrap());
    h.nics[0]
        .addresses
        .insert(0, "192.168.5.1/24".parse().unwrap());
    let p = plan(&net, &[h], None, 0, 600);
    assert_eq!(p.interfaces.len(), 1);
    assert_eq!(p.interfaces[0].net_address.to_string(), "10.0.0.0/24");
}

#[test]
fn incremental_join_matches_full_plan() {
    let net = upstream();
    let inv = hosts(40, 2);
    let full = plan(&net, &inv, None, 0, 600);
    let mut p = Planner::new(&net, None);
    p.register_rails(&inv);
    for h in &inv {
        p.upsert_host(h);
    }
    assert_eq!(p.into_plan(), full);
}

#[test]
fn plan_split_and_assemble_round_trip() {
    let p = plan(&upstream(), &hosts(4, 2), None, 0, 600);
    let (meta, hosts) = p.split();
    let json = serde_json::to_string(&meta).unwrap();
    let back = railyard_core::Plan::assemble(
        serde_json::from_str(&json).unwrap(),
        hosts.iter().map(|(k, v)| (k.clone(), v.clone())),
    );
    assert_eq!(back, p);
}
