//! Status conditions and the HostInterface and CIDR views, driven as in a
//! cluster: host registrations appear in the planner's etcd (written here as a
//! route-daemon writes them), the planner plans them, and the controller mirrors
//! etcd into the network's status and the view objects.

use serde_json::Value;

use crate::common::{condition, env, network, Env, IPVLAN, TIMEOUT};

const HOSTS: [&str; 3] = ["t-view-0", "t-view-1", "t-view-2"];

fn network_obj(env: &Env, name: &str) -> Result<Value, String> {
    env.get("mnn", name, None)
        .ok_or_else(|| format!("no network {name}"))
}

fn status_is(obj: &Value, kind: &str, want: &str) -> Result<(String, String, String), String> {
    match condition(obj, kind) {
        Some(c) if c.0 == want => Ok(c),
        other => Err(format!("{kind}: {other:?}; status {}", obj["status"])),
    }
}

#[test]
fn status_and_views_follow_the_planners_etcd() {
    let env = env();
    for (i, host) in HOSTS.iter().enumerate() {
        let a = format!("10.70.1.{}/24", 10 + i);
        let b = format!("10.70.2.{}/24", 10 + i);
        env.register_host(host, &[("eth1", &a), ("eth2", &b)]);
    }
    let ns = vec!["t-views".to_owned()];
    env.create_namespaces(&ns);
    let ipam = |host_block: u32| {
        format!(
            r#"{{"type": "multi-nic-ipam", "hostBlock": {host_block}, "interfaceBlock": 2, "vlanMode": "l3"}}"#
        )
    };
    env.apply(&network("t-views", "10.80.0.0/16", &ipam(6), IPVLAN, &ns));
    // Two host indexes for three hosts: one waits.
    env.apply(&network(
        "t-views-full",
        "10.81.0.0/16",
        &ipam(1),
        IPVLAN,
        &ns,
    ));
    // Refused by the controller (CEL cannot read the ipam string).
    env.apply(&network(
        "t-views-invalid",
        "10.82.0.0/16",
        &ipam(30),
        IPVLAN,
        &ns,
    ));

    // ipvlan l2 does not cross hosts over railyard's routes: refused.
    env.apply(&network(
        "t-views-l2",
        "10.83.0.0/16",
        &ipam(6),
        "    cniVersion: \"1.0.0\"\n    type: ipvlan\n    args:\n      mode: l2\n",
        &ns,
    ));

    // Ready: every host planned on both rails.
    let obj = env.wait_for("t-views Ready with 3 hosts", TIMEOUT, || {
        let obj = network_obj(env, "t-views")?;
        status_is(&obj, "Ready", "True")?;
        (obj["status"]["hostsPlanned"] == 3)
            .then_some(obj.clone())
            .ok_or_else(|| obj["status"].to_string())
    });
    assert_eq!(obj["status"]["interfaces"], 2, "{}", obj["status"]);
    assert_eq!(
        condition(&obj, "Invalid").map(|c| c.1),
        Some("Valid".into())
    );
    assert_eq!(
        condition(&obj, "Exhausted").map(|c| c.0),
        Some("False".into())
    );

    // Exhausted: the third host found no index; Ready is False for it.
    let full = env.wait_for("t-views-full Exhausted", TIMEOUT, || {
        status_is(&network_obj(env, "t-views-full")?, "Exhausted", "True")
    });
    assert_eq!(full.1, "NoFreeIndex", "{full:?}");
    let full_obj = network_obj(env, "t-views-full").expect("network");
    assert_eq!(
        condition(&full_obj, "Ready").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(
        full_obj["status"]["hostsUnplanned"], 1,
        "{}",
        full_obj["status"]
    );

    // Invalid: named field and value; nothing reaches etcd or the namespaces.
    let invalid = env.wait_for("t-views-invalid Invalid", TIMEOUT, || {
        status_is(&network_obj(env, "t-views-invalid")?, "Invalid", "True")
    });
    assert_eq!(invalid.1, "InvalidSpec");
    assert!(
        invalid.2.contains("spec.ipam.hostBlock") && invalid.2.contains("30"),
        "{invalid:?}"
    );
    assert!(env
        .etcd_get("/railyard/v1/networks/t-views-invalid")
        .is_none());
    let l2 = env.wait_for("t-views-l2 Invalid", TIMEOUT, || {
        status_is(&network_obj(env, "t-views-l2")?, "Invalid", "True")
    });
    assert_eq!(l2.1, "InvalidSpec");
    assert!(
        l2.2.contains("spec.plugin.args.mode") && l2.2.contains("\"l2\""),
        "the refusal names the field and the value: {l2:?}"
    );
    assert!(env.etcd_get("/railyard/v1/networks/t-views-l2").is_none());
    assert!(env
        .get("net-attach-def", "t-views-invalid", Some("t-views"))
        .is_none());

    // HostInterface per registration, with the NICs as registered.
    for (i, host) in HOSTS.iter().enumerate() {
        let hif = env.wait_for("the HostInterface", TIMEOUT, || {
            env.get("hif", host, None)
                .ok_or_else(|| "not yet".to_owned())
        });
        assert_eq!(hif["spec"]["hostName"], *host, "{hif}");
        let nics = hif["spec"]["interfaces"].as_array().expect("interfaces");
        let eth1 = nics.iter().find(|n| n["name"] == "eth1").expect("eth1");
        assert_eq!(
            eth1["addresses"],
            serde_json::json!([format!("10.70.1.{}/24", 10 + i)])
        );
        assert_eq!(
            hif["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "railyard"
        );
    }

    // The CIDR: both rails, every host's blocks inside the network's subnet.
    let cidr = env.wait_for("the CIDR with 3 hosts", TIMEOUT, || {
        let c = env.get("cidr", "t-views", None).ok_or("no CIDR yet")?;
        (c["spec"]["hosts"].as_array().map(Vec::len) == Some(3))
            .then_some(c.clone())
            .ok_or_else(|| c["spec"].to_string())
    });
    assert_eq!(cidr["spec"]["network"], "t-views");
    let rails: Vec<&str> = cidr["spec"]["interfaces"]
        .as_array()
        .expect("rails")
        .iter()
        .filter_map(|r| r["netAddress"].as_str())
        .collect();
    assert_eq!(rails, ["10.70.1.0/24", "10.70.2.0/24"], "{cidr}");
    for h in cidr["spec"]["hosts"].as_array().expect("hosts") {
        let blocks = h["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), 2, "{h}");
        assert!(
            blocks
                .iter()
                .all(|b| b["cidr"].as_str().is_some_and(|c| c.starts_with("10.80."))),
            "{h}"
        );
    }

    // IPAllocation: one per network and host, from the records the daemons
    // mirror; it goes with the host's last record.
    let record_key = format!(
        "/railyard/v1/allocations/t-views/{}/c0ffee01/net1",
        HOSTS[0]
    );
    env.etcd_put(
        &record_key,
        &serde_json::json!({
            "id": {"network": "t-views", "containerId": "c0ffee01", "ifname": "net1"},
            "pod": {"namespace": "t-views", "name": "trainer-0"},
            "nics": [{"nic": "eth1", "interface": 0, "addresses": ["10.80.0.2/24"],
                      "gateways": ["10.80.0.1"], "routes": []}],
        }),
    );
    let name = format!("t-views.{}", HOSTS[0]);
    let alloc = env.wait_for("the IPAllocation", TIMEOUT, || {
        env.get("ipallocation", &name, None)
            .ok_or_else(|| "not yet".to_owned())
    });
    assert_eq!(alloc["spec"]["pods"], 1, "{alloc}");
    assert_eq!(
        alloc["spec"]["allocations"][0],
        serde_json::json!({"pod": "t-views/trainer-0", "containerID": "c0ffee01", "ifname": "net1",
                           "rails": [{"rail": 0, "nic": "eth1", "addresses": ["10.80.0.2"]}]})
    );
    env.etcd_delete(&record_key);
    env.wait_for("the IPAllocation to go", TIMEOUT, || {
        match env.get("ipallocation", &name, None) {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        }
    });

    // A host whose registration goes (its daemon's lease ran out): its
    // HostInterface is deleted; the plan keeps it for the grace period.
    env.unregister_host(HOSTS[2]);
    env.wait_for(
        "the departed host's HostInterface to go",
        TIMEOUT,
        || match env.get("hif", HOSTS[2], None) {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        },
    );
    env.wait_for("the CIDR to mark the host departed", TIMEOUT, || {
        let c = env.get("cidr", "t-views", None).ok_or("no CIDR")?;
        let gone = c["spec"]["hosts"]
            .as_array()
            .and_then(|hs| hs.iter().find(|h| h["host"] == HOSTS[2]))
            .map(|h| h["departedAt"].is_string());
        (gone == Some(true))
            .then_some(())
            .ok_or_else(|| c["spec"].to_string())
    });
    env.wait_for("hostsDeparted 1", TIMEOUT, || {
        let obj = network_obj(env, "t-views")?;
        (obj["status"]["hostsDeparted"] == 1)
            .then_some(())
            .ok_or_else(|| obj["status"].to_string())
    });

    // A network deleted: its CIDR goes with its plan.
    env.kubectl
        .run(&["delete", "mnn", "t-views-full"])
        .expect("delete");
    env.wait_for("the deleted network's CIDR to go", TIMEOUT, || {
        match env.get("cidr", "t-views-full", None) {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        }
    });
}
