//! The controller runs with exactly deploy/kubernetes/rbac.yaml (every other test
//! of this binary uses the shipped role); here a copy of the ClusterRole with one
//! verb removed shows a missing grant is caught, not silently ignored: the
//! apiserver's 403 reaches the network's status and the planner's log, and the
//! object that needed the verb is not written. Its own control plane, because a
//! second controller on the shared one would act on every test's networks.

use std::time::Duration;

use railyard_e2e::kube::identity;

use crate::common::{condition, network, start_with_rbac, IPAM, IPVLAN, TIMEOUT};

const NAD_VERBS: &str = r#"verbs: ["get", "list", "watch", "create", "patch", "delete"]"#;

#[test]
fn a_removed_verb_is_reported_and_its_object_not_written() {
    let shipped =
        std::fs::read_to_string(identity::manifests_dir().join("rbac.yaml")).expect("rbac.yaml");
    // The NAD rule, without `create` (a first server-side apply is a create).
    assert_eq!(
        shipped.matches(NAD_VERBS).count(),
        2,
        "rbac.yaml changed shape: expected the NAD and view rules to carry {NAD_VERBS}"
    );
    let nad_rule = "resources: [\"network-attachment-definitions\"]\n    ";
    let crippled = shipped.replacen(
        &format!("{nad_rule}{NAD_VERBS}"),
        &format!("{nad_rule}verbs: [\"get\", \"list\", \"watch\", \"patch\", \"delete\"]"),
        1,
    );
    assert_ne!(crippled, shipped, "the NAD rule was not found in rbac.yaml");
    let env = start_with_rbac("k8s-rbac", Some(&crippled)).expect("control plane");

    let ns = vec!["t-rbac".to_owned()];
    env.create_namespaces(&ns);
    env.apply(&network("t-rbac", "10.95.0.0/16", IPAM, IPVLAN, &ns));

    let refused = env.wait_for(
        "NADsApplied False with the apiserver's refusal",
        TIMEOUT,
        || {
            let obj = env.get("mnn", "t-rbac", None).ok_or("no network")?;
            match condition(&obj, "NADsApplied") {
                Some(c) if c.0 == "False" => Ok(c),
                other => Err(format!("{other:?}")),
            }
        },
    );
    eprintln!("without create on NADs: {refused:?}");
    assert_eq!(refused.1, "ApplyFailed", "{refused:?}");
    assert!(
        refused.2.contains("forbidden")
            && refused.2.contains("t-rbac")
            && refused.2.contains("403"),
        "the message should carry the apiserver's 403 and name the namespace: {refused:?}"
    );
    assert!(
        env.get("net-attach-def", "t-rbac", Some("t-rbac"))
            .is_none(),
        "a NAD was written without the create verb"
    );
    let log = env.planner().log();
    assert!(
        log.contains("forbidden") && log.contains("network-attachment-definitions"),
        "the planner's log does not report the refusal:\n{log}"
    );
    // Everything the role still grants went on: the spec in etcd, the status.
    assert!(env.etcd_get("/railyard/v1/networks/t-rbac").is_some());

    // Granted again: the retry (backoff from 1 s) writes the NAD.
    env.apply(&shipped);
    env.wait_for(
        "the NAD once create is granted",
        Duration::from_secs(45),
        || {
            env.get("net-attach-def", "t-rbac", Some("t-rbac"))
                .ok_or_else(|| "not yet".to_owned())
        },
    );

    // Without `patch` on multinicnetworks/status: the NAD and the etcd spec are
    // written, the status is not, and the log says why.
    let status_rule = "resources: [\"multinicnetworks/status\"]\n    verbs: [\"patch\"]";
    assert!(
        shipped.contains(status_rule),
        "rbac.yaml changed shape: {status_rule}"
    );
    env.apply(&shipped.replacen(
        status_rule,
        "resources: [\"multinicnetworks/status\"]\n    verbs: [\"get\"]",
        1,
    ));
    env.apply(&network("t-rbac-status", "10.96.0.0/16", IPAM, IPVLAN, &ns));
    env.wait_for("the NAD of t-rbac-status", TIMEOUT, || {
        env.get("net-attach-def", "t-rbac-status", Some("t-rbac"))
            .ok_or_else(|| "not yet".to_owned())
    });
    let line = env.wait_for("the refused status patch in the log", TIMEOUT, || {
        env.planner()
            .log()
            .lines()
            .find(|l| l.contains("forbidden") && l.contains("multinicnetworks/status"))
            .map(str::to_owned)
            .ok_or_else(|| "not logged".to_owned())
    });
    eprintln!("without patch on status: {line}");
    let obj = env.get("mnn", "t-rbac-status", None).expect("network");
    assert!(
        obj["status"]["conditions"].is_null(),
        "a status was written: {}",
        obj["status"]
    );
    assert!(env
        .etcd_get("/railyard/v1/networks/t-rbac-status")
        .is_some());

    // Without `update` on multinicnetworks/finalizers, the admission plugin
    // OwnerReferencesPermissionEnforcement (on in the local plane) refuses a NAD
    // whose owner reference sets blockOwnerDeletion: why rbac.yaml grants it.
    let finalizers_rule = "resources: [\"multinicnetworks/finalizers\"]\n    verbs: [\"update\"]";
    assert!(
        shipped.contains(finalizers_rule),
        "rbac.yaml changed shape: {finalizers_rule}"
    );
    env.apply(&shipped.replacen(
        finalizers_rule,
        "resources: [\"multinicnetworks/finalizers\"]\n    verbs: [\"get\"]",
        1,
    ));
    env.apply(&network("t-rbac-owner", "10.97.0.0/16", IPAM, IPVLAN, &ns));
    let refused = env.wait_for("NADsApplied False for t-rbac-owner", TIMEOUT, || {
        let obj = env.get("mnn", "t-rbac-owner", None).ok_or("no network")?;
        match condition(&obj, "NADsApplied") {
            Some(c) if c.0 == "False" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    });
    eprintln!("without update on finalizers: {refused:?}");
    assert!(
        refused.2.contains("blockOwnerDeletion"),
        "the message should carry the admission plugin's reason: {refused:?}"
    );
    assert!(env
        .get("net-attach-def", "t-rbac-owner", Some("t-rbac"))
        .is_none());
}
