//! NADs not in place: conflicts, refusals, a missing CRD, and what the status says.

use super::*;

use std::time::Duration;

use kube::core::Status;
use kube::runtime::watcher;
use railyard_k8s::nad_problems::{
    self, foreign_controller, retry_after, shared_names, NadProblem, NadReport,
};
use railyard_k8s::reconcile::NadApi;

fn named(name: &str, edit: impl FnOnce(&mut Value)) -> MultiNicNetwork {
    network(|v| {
        v["metadata"]["name"] = json!(name);
        v["metadata"]["uid"] = json!(format!("uid-{name}"));
        edit(v);
    })
}

fn nad_named(name: &str, namespaces: &[&str]) -> NadPlan {
    NadPlan {
        name: name.into(),
        config: json!({}),
        annotations: BTreeMap::new(),
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        missing_namespaces: Vec::new(),
    }
}

#[test]
fn networks_claiming_one_nad_name_conflict_where_both_target_it() {
    let me = named("net-a", |v| {
        v["metadata"]["annotations"] = json!({"railyard.dev/nad-name": "rail"})
    });
    // Its own name is the NAD name; only team-a.
    let by_name = named("rail", |v| v["spec"]["namespaces"] = json!(["team-a"]));
    // Every namespace, through the annotation.
    let everywhere = named("net-z", |v| {
        v["metadata"]["annotations"] = json!({"railyard.dev/nad-name": "rail"});
        v["spec"]["namespaces"] = json!([]);
    });
    let unrelated = named("net-b", |v| v["spec"]["namespaces"] = json!([]));
    let plan = nad_named("rail", &["default", "team-a"]);
    let all: Vec<Arc<MultiNicNetwork>> = [me.clone(), by_name.clone(), unrelated.clone()]
        .into_iter()
        .map(Arc::new)
        .collect();
    assert_eq!(
        shared_names(&me, &plan, &all),
        BTreeMap::from([("team-a".to_string(), "rail".to_string())]),
        "default is net-a's alone; net-b maps to another name"
    );
    let all: Vec<Arc<MultiNicNetwork>> = [me.clone(), by_name, everywhere, unrelated]
        .into_iter()
        .map(Arc::new)
        .collect();
    assert_eq!(
        shared_names(&me, &plan, &all),
        BTreeMap::from([
            ("default".to_string(), "net-z".to_string()),
            ("team-a".to_string(), "net-z".to_string()),
        ]),
        "the first claimant by name is named (net-z before rail)"
    );
    assert!(shared_names(&me, &plan, &[Arc::new(me.clone())]).is_empty());
    assert_eq!(nad_problems::claimed_name(&me), "rail");
    assert_eq!(nad_problems::claimed_name(&sample()), "multi-nic-sample");
}

#[test]
fn a_nad_controlled_by_another_object_is_named() {
    let ours = cached_nad("default", "multi-nic-sample", UID);
    assert_eq!(foreign_controller(&ours, &owner()), None);
    let other_network = cached_nad("default", "multi-nic-sample", "uid-other");
    assert_eq!(
        foreign_controller(&other_network, &owner()).as_deref(),
        Some("MultiNicNetwork multi-nic-sample (uid uid-other)")
    );
    let mut spider = (*ours).clone();
    spider.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "spiderpool.spidernet.io/v2beta1".into(),
        kind: "SpiderMultusConfig".into(),
        name: "rail".into(),
        uid: "uid-spider".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    assert_eq!(
        foreign_controller(&spider, &owner()).as_deref(),
        Some("SpiderMultusConfig rail (uid uid-spider)")
    );
    // A plain (non-controller) owner is no obstacle: SSA adds ours next to it.
    spider.metadata.owner_references.as_mut().unwrap()[0].controller = None;
    assert_eq!(foreign_controller(&spider, &owner()), None);
}

#[test]
fn retries_back_off_doubling_to_a_cap() {
    let waits: Vec<Duration> = [1, 2, 3, 4, 8, 50, u32::MAX]
        .into_iter()
        .map(retry_after)
        .collect();
    assert_eq!(
        waits,
        [1, 2, 4, 8, 120, 120, 120]
            .map(Duration::from_secs)
            .to_vec()
    );
}

fn api_error(code: u16) -> kube::Error {
    kube::Error::Api(Box::new(
        Status::failure("nope", "NotFound").with_code(code),
    ))
}

#[test]
fn a_404_from_the_nad_list_means_the_crd_is_missing() {
    use controller::nad_api_after;
    assert_eq!(
        nad_api_after(&Err(watcher::Error::InitialListFailed(api_error(404)))),
        Some(NadApi::Missing)
    );
    assert_eq!(
        nad_api_after(&Err(watcher::Error::WatchStartFailed(api_error(404)))),
        Some(NadApi::Missing)
    );
    assert_eq!(
        nad_api_after(&Ok(watcher::Event::InitDone)),
        Some(NadApi::Available)
    );
    // A 500 or a 403 says nothing about the CRD.
    assert_eq!(
        nad_api_after(&Err(watcher::Error::InitialListFailed(api_error(500)))),
        None
    );
    assert_eq!(
        nad_api_after(&Err(watcher::Error::InitialListFailed(api_error(403)))),
        None
    );
    assert_eq!(nad_api_after(&Ok(watcher::Event::Init)), None);
}

fn nads_applied(plan: &NadPlan, report: &NadReport) -> (MultiNicNetworkStatus, String, String) {
    let s = network_status(
        &Observed {
            generation: Some(3),
            nads: Some(plan),
            nad_report: Some(report),
            ..Observed::default()
        },
        None,
        &at(5),
    );
    let c = condition(&s, "NADsApplied").clone();
    assert_eq!(c.status, if report.is_clean() { "True" } else { "False" });
    (s, c.reason, c.message)
}

#[test]
fn refused_namespaces_are_named_with_the_apis_message() {
    let plan = nad_named("multi-nic-sample", &["default", "team-a", "team-q"]);
    let (s, reason, message) = nads_applied(&plan, &NadReport::default());
    assert_eq!(
        (reason.as_str(), message.as_str()),
        ("Applied", "NAD multi-nic-sample in 3 namespaces")
    );
    assert_eq!(s.nad_namespaces, 3);

    let quota = "network-attachment-definitions.k8s.cni.cncf.io \"multi-nic-sample\" is forbidden: exceeded quota: nads, requested: count/network-attachment-definitions.k8s.cni.cncf.io=1, used: 1, limited: 1 (403)";
    let report = NadReport {
        crd_missing: false,
        problems: vec![NadProblem::Refused {
            namespace: "team-q".into(),
            message: quota.into(),
        }],
    };
    let (s, reason, message) = nads_applied(&plan, &report);
    assert_eq!(reason, "ApplyFailed");
    assert!(
        message.contains("not written in 1 of 3 namespaces"),
        "{message}"
    );
    assert!(message.contains(&format!("team-q: {quota}")), "{message}");
    assert_eq!(s.nad_namespaces, 2, "only the namespaces that have it");
    // Ready follows the planner, not the NADs.
    assert_eq!(condition(&s, "Ready").reason, "Pending");
}

#[test]
fn conflicts_are_reported_as_name_conflicts_naming_the_other_side() {
    let plan = nad_named("rail", &["default", "team-a"]);
    let report = NadReport {
        crd_missing: false,
        problems: vec![
            NadProblem::SharedName {
                namespace: "default".into(),
                network: "net-b".into(),
            },
            NadProblem::ForeignController {
                namespace: "team-a".into(),
                owner: "SpiderMultusConfig rail (uid u)".into(),
            },
        ],
    };
    let (s, reason, message) = nads_applied(&plan, &report);
    assert_eq!(reason, "NameConflict");
    assert!(
        message.contains("default: MultiNicNetwork net-b also maps to NAD name rail"),
        "{message}"
    );
    assert!(
        message.contains("team-a: NAD rail exists and is controlled by SpiderMultusConfig rail"),
        "{message}"
    );
    assert_eq!(s.nad_namespaces, 0);
}

#[test]
fn a_missing_nad_crd_is_a_condition_not_a_stall() {
    let plan = nad_named("multi-nic-sample", &["default"]);
    let (s, reason, message) = nads_applied(&plan, &NadReport::crd_missing());
    assert_eq!(reason, "CRDMissing");
    assert!(
        message.contains("network-attachment-definitions.k8s.cni.cncf.io"),
        "{message}"
    );
    assert_eq!(s.nad_namespaces, 0);
    assert_eq!(s.nad_name.as_deref(), Some("multi-nic-sample"));
}

#[test]
fn a_long_list_of_problems_is_cut_and_counted() {
    let namespaces: Vec<String> = (0..30).map(|i| format!("ns-{i:02}")).collect();
    let ns_refs: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    let plan = nad_named("multi-nic-sample", &ns_refs);
    let report = NadReport {
        crd_missing: false,
        problems: namespaces
            .iter()
            .map(|ns| NadProblem::Refused {
                namespace: ns.clone(),
                message: "x".repeat(5000),
            })
            .collect(),
    };
    let (_, _, message) = nads_applied(&plan, &report);
    assert!(message.contains("and 20 more"), "{message}");
    assert!(message.len() < 4000, "{} bytes", message.len());
}
