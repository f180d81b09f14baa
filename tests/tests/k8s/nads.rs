//! NetworkAttachmentDefinitions against the real API server and garbage
//! collector: created by the controller in each target namespace, updated when
//! the spec changes, recreated after a deletion, removed from a dropped
//! namespace, and deleted through their owner references by
//! kube-controller-manager's garbage collector when the network goes.

use serde_json::Value;

use crate::common::{condition, env, network, Env, IPAM, IPVLAN, TIMEOUT};

/// The NAD's parsed `spec.config`, once it exists.
fn nad_config(env: &Env, name: &str, ns: &str) -> Result<(Value, Value), String> {
    let nad = env
        .get("net-attach-def", name, Some(ns))
        .ok_or_else(|| format!("no NAD {ns}/{name}"))?;
    let text = nad["spec"]["config"].as_str().ok_or("no spec.config")?;
    let config = serde_json::from_str(text).map_err(|e| format!("config not JSON: {e}"))?;
    Ok((nad, config))
}

#[test]
fn nads_follow_the_network_and_are_garbage_collected_with_it() {
    let env = env();
    let net = "t-nads";
    let ns: Vec<String> = ["t-nads-a", "t-nads-b"].map(String::from).to_vec();
    env.create_namespaces(&ns);
    env.apply(&network(net, "10.60.0.0/16", IPAM, IPVLAN, &ns));
    let mnn = env.get("mnn", net, None).expect("network exists");
    let uid = mnn["metadata"]["uid"].as_str().expect("uid").to_owned();

    // Created, owned by the network (controller, blockOwnerDeletion), labelled.
    for n in &ns {
        let (nad, config) = env.wait_for("the NAD", TIMEOUT, || nad_config(env, net, n));
        assert_eq!(config["type"], "railyard-cni", "{config}");
        assert_eq!(config["name"], net, "{config}");
        assert_eq!(config["cniVersion"], "1.0.0", "{config}");
        assert_eq!(config["ipam"]["type"], "railyard-ipam", "{config}");
        assert_eq!(
            config["delegate"],
            serde_json::json!({"type": "ipvlan", "mode": "l3"})
        );
        let owner = &nad["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], uid.as_str(), "{nad}");
        assert_eq!(owner["kind"], "MultiNicNetwork");
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["blockOwnerDeletion"], true);
        assert_eq!(
            nad["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "railyard"
        );
        assert_eq!(nad["metadata"]["labels"]["railyard.dev/network"], net);
    }
    let applied = env.wait_for("NADsApplied True", TIMEOUT, || {
        let obj = env.get("mnn", net, None).ok_or("gone")?;
        match condition(&obj, "NADsApplied") {
            Some(c) if c.0 == "True" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(applied.1, "Applied");

    // A spec change reaches every NAD.
    let macvlan = "    cniVersion: \"1.0.0\"\n    type: macvlan\n    args:\n      mode: private\n";
    env.apply(&network(net, "10.60.0.0/16", IPAM, macvlan, &ns));
    for n in &ns {
        env.wait_for("the NAD to follow the spec change", TIMEOUT, || {
            let (_, config) = nad_config(env, net, n)?;
            (config["delegate"] == serde_json::json!({"type": "macvlan", "mode": "private"}))
                .then_some(())
                .ok_or_else(|| config.to_string())
        });
    }

    // Deleted by hand: recreated (a new object, so a new uid).
    let before = env.get("net-attach-def", net, Some(&ns[0])).expect("NAD");
    env.kubectl
        .run(&[
            "delete",
            "net-attach-def",
            net,
            "-n",
            &ns[0],
            "--wait=false",
        ])
        .expect("delete the NAD");
    env.wait_for("the deleted NAD to be recreated", TIMEOUT, || {
        let now = env
            .get("net-attach-def", net, Some(&ns[0]))
            .ok_or("not yet")?;
        (now["metadata"]["uid"] != before["metadata"]["uid"])
            .then_some(())
            .ok_or_else(|| "the old one".to_owned())
    });

    // A namespace dropped from the list loses its NAD.
    env.apply(&network(net, "10.60.0.0/16", IPAM, macvlan, &ns[..1]));
    env.wait_for(
        "the NAD of the dropped namespace to go",
        TIMEOUT,
        || match env.get("net-attach-def", net, Some(&ns[1])) {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        },
    );

    // The network deleted with foreground cascading: the apiserver keeps it (with
    // the foregroundDeletion finalizer) until the garbage collector has deleted
    // every dependent that blocks owner deletion, so its disappearance shows the
    // GC went through the NADs' owner references.
    env.kubectl
        .run(&[
            "delete",
            "mnn",
            net,
            "--cascade=foreground",
            "--timeout=30s",
        ])
        .expect("foreground deletion completes (kube-controller-manager's GC)");
    assert!(env.get("mnn", net, None).is_none());
    assert!(
        env.get("net-attach-def", net, Some(&ns[0])).is_none(),
        "the NAD outlived its network"
    );
}

#[test]
fn a_network_deleted_in_the_background_takes_its_nads() {
    let env = env();
    let net = "t-nads-bg";
    let ns = vec!["t-nads-bg".to_owned()];
    env.create_namespaces(&ns);
    env.apply(&network(net, "10.61.0.0/16", IPAM, IPVLAN, &ns));
    env.wait_for("the NAD", TIMEOUT, || nad_config(env, net, &ns[0]));
    env.kubectl
        .run(&["delete", "mnn", net])
        .expect("delete the network");
    env.wait_for(
        "the garbage collector to delete the NAD",
        TIMEOUT,
        || match env.get("net-attach-def", net, Some(&ns[0])) {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        },
    );
    // The controller's part of a deletion: the spec leaves etcd.
    env.wait_for("the etcd spec to go", TIMEOUT, || {
        match env.etcd_get(&format!("/railyard/v1/networks/{net}")) {
            None => Ok(()),
            Some(v) => Err(v.to_string()),
        }
    });
}

/// docs/examples/network.yaml is multi-nic-cni's sample (its README's
/// MultiNicNetwork) with only `apiVersion` changed.
#[test]
fn the_upstream_sample_works_with_only_its_api_version_changed() {
    let env = env();
    let path =
        railyard_e2e::kube::identity::manifests_dir().join("../../docs/examples/network.yaml");
    let sample = std::fs::read_to_string(&path).expect("docs/examples/network.yaml");
    assert!(sample.contains("apiVersion: railyard.dev/v1"), "{sample}");
    let upstream = sample.replace(
        "apiVersion: railyard.dev/v1",
        "apiVersion: net.cogadvisor.io/v1",
    );
    // The upstream group is not served: the one line really has to change.
    let refused = env
        .kubectl
        .attempt(&["apply", "-f", "-"], Some(&upstream))
        .expect("kubectl");
    assert!(
        !refused.ok && refused.stderr.contains("net.cogadvisor.io"),
        "{refused:?}"
    );

    env.apply(&sample);
    let (nad, config) = env.wait_for("the sample's NAD in default", TIMEOUT, || {
        nad_config(env, "multi-nic-sample", "default")
    });
    assert_eq!(
        config,
        serde_json::json!({"cniVersion": "0.3.0", "name": "multi-nic-sample", "type": "railyard-cni",
            "ipam": {"type": "railyard-ipam"}, "delegate": {"type": "ipvlan", "mode": "l3"},
            "capabilities": {"ips": true, "mac": true}}),
        "{nad}"
    );
    let obj = env.wait_for("the sample to be Ready", TIMEOUT, || {
        let obj = env.get("mnn", "multi-nic-sample", None).ok_or("gone")?;
        match condition(&obj, "Ready") {
            Some(c) if c.0 == "True" => Ok(obj),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        condition(&obj, "Invalid").map(|c| c.0),
        Some("False".into())
    );
    let stored = env
        .etcd_get("/railyard/v1/networks/multi-nic-sample")
        .expect("the spec in the planner's etcd");
    assert_eq!(stored["spec"]["subnet"], "192.168.0.0/16", "{stored}");
    // The shipped RBAC was enough for all of it.
    let log = env.planner().log();
    assert!(
        !log.contains("forbidden"),
        "the controller was refused something:\n{log}"
    );
}
