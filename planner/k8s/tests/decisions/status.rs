//! The MultiNicNetwork status from the planner status.

use super::*;

/// Built from JSON, as the controller reads it from etcd: fields the planner adds
/// later (with serde defaults) need no change here.
fn planner_status(condition: Condition) -> NetworkStatus {
    serde_json::from_value(json!({
        "network": "multi-nic-sample",
        "condition": condition,
        "hostsPlanned": 62,
        "hostsDeparted": 1,
        "hostsUnplanned": [],
        "interfaces": 4,
        "capacity": {"hostsTotal": 64, "hostsFree": 1, "interfacesTotal": 4, "podsPerHostPerRail": [254]},
        "planRevision": 1234,
    }))
    .expect("a planner status")
}

fn observe(p: &NetworkStatus) -> Observed<'_> {
    Observed {
        generation: Some(3),
        planner: Some(p),
        ..Observed::default()
    }
}

#[test]
fn ready_network_reports_numbers_and_four_conditions() {
    let p = planner_status(Condition::Ready);
    let s = network_status(&observe(&p), None, &at(100));
    let kinds: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(kinds, vec!["Ready", "Invalid", "Exhausted", "NADsApplied"]);
    let ready = condition(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Planned")
    );
    assert_eq!(ready.message, "62 hosts planned on 4 rails");
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(ready.last_transition_time, at(100));
    assert_eq!(condition(&s, "Invalid").status, "False");
    assert_eq!(condition(&s, "Exhausted").status, "False");
    assert_eq!(
        (
            s.hosts_planned,
            s.hosts_departed,
            s.hosts_unplanned,
            s.interfaces
        ),
        (62, 1, 0, 4)
    );
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.plan_revision, 1234);
    let cap = s.capacity.unwrap();
    assert_eq!(
        (cap.hosts_total, cap.hosts_free, cap.interfaces_total),
        (64, 1, 4)
    );
    assert_eq!(cap.pods_per_host_per_rail, vec![254]);
}

#[test]
fn exhausted_network_names_the_hosts_left_out() {
    let mut p = planner_status(Condition::Exhausted);
    p.hosts_unplanned = (0..25)
        .map(|i| Unplanned {
            host: format!("node-{i}"),
            reason: "no free host index".into(),
        })
        .collect();
    p.unplanned_interfaces = vec![UnplannedInterface {
        net_address: "10.9.0.0/24".parse().unwrap(),
        reason: "no free interface index".into(),
    }];
    let s = network_status(&observe(&p), None, &at(100));
    let ready = condition(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Exhausted")
    );
    let ex = condition(&s, "Exhausted");
    assert_eq!(
        (ex.status.as_str(), ex.reason.as_str()),
        ("True", "NoFreeIndex")
    );
    assert!(
        ex.message.starts_with(
            "25 hosts and 1 NIC subnets found no free index: node-0 (no free host index)"
        ),
        "{}",
        ex.message
    );
    assert!(
        ex.message.contains("10.9.0.0/24") && ex.message.ends_with("and 20 more"),
        "{}",
        ex.message
    );
    assert_eq!(s.hosts_unplanned, 25);
    assert_eq!(
        s.unplanned_hosts.len(),
        20,
        "listed up to a cap, counted in full"
    );
}

#[test]
fn planner_refusal_is_invalid_with_its_reason() {
    let mut p = planner_status(Condition::Invalid);
    p.last_error = Some(format!("spec change refused: it would renumber host node-1; set annotation {ALLOW_RENUMBER}: \"true\""));
    let s = network_status(&observe(&p), None, &at(100));
    let invalid = condition(&s, "Invalid");
    assert_eq!(
        (invalid.status.as_str(), invalid.reason.as_str()),
        ("True", "PlannerRejected")
    );
    assert!(invalid.message.contains("renumber host node-1"));
    assert_eq!(condition(&s, "Ready").status, "False");
}

#[test]
fn not_yet_planned_is_unknown_not_false() {
    let s = network_status(&Observed::default(), None, &at(100));
    let ready = condition(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("Unknown", "Pending")
    );
    assert_eq!(condition(&s, "Invalid").status, "False");
    assert_eq!(s.capacity, None);
}

#[test]
fn transition_time_moves_only_when_the_status_changes() {
    let ready = planner_status(Condition::Ready);
    let first = network_status(&observe(&ready), None, &at(100));
    let again = network_status(&observe(&ready), Some(&first), &at(200));
    assert_eq!(again, first, "nothing changed: identical status, no patch");
    let mut exhausted = planner_status(Condition::Exhausted);
    exhausted.hosts_unplanned = vec![Unplanned {
        host: "node-99".into(),
        reason: "no free host index".into(),
    }];
    let changed = network_status(&observe(&exhausted), Some(&again), &at(300));
    assert_eq!(condition(&changed, "Ready").last_transition_time, at(300));
    assert_eq!(
        condition(&changed, "Exhausted").last_transition_time,
        at(300)
    );
    assert_eq!(
        condition(&changed, "Invalid").last_transition_time,
        at(100),
        "Invalid stayed False"
    );
}
