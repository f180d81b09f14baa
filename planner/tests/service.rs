//! The planner service against a real etcd (started by the test on a loopback port;
//! the test fails if etcd cannot start).

mod support;

use std::time::Duration;

use railyard_core::keys;
use railyard_core::status::Condition;
use support::{fast_config, host, wait_for, Cluster};

const IPAM: &str = r#"{"hostBlock": 6, "interfaceBlock": 2}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_registrations_converge_in_few_transactions() {
    let c = Cluster::start().await;
    c.apply("rails", r#"{"hostBlock": 11, "interfaceBlock": 2}"#, "")
        .await;
    let planner = c.planner(fast_config("p1", Duration::from_secs(600)));
    let lease = c.store.grant(60).await.unwrap();
    let hosts: Vec<_> = (0..1000)
        .map(|n| host(&format!("node-{n:04}"), n, 2))
        .collect();
    let writes = hosts.iter().map(|h| {
        let store = c.store.clone();
        let value = serde_json::to_vec(h).unwrap();
        async move { store.put(&keys::host(&h.name), value, Some(lease)).await }
    });
    for r in futures::future::join_all(writes).await {
        r.unwrap();
    }
    let status = wait_for(Duration::from_secs(30), "1000 hosts planned", || async {
        c.status("rails").await.filter(|s| s.hosts_planned == 1000)
    })
    .await;
    assert_eq!(status.condition, Condition::Ready);
    let plan = c.plan_hosts("rails").await;
    assert_eq!(plan.len(), 1000);
    let mut indexes: Vec<u32> = plan.iter().map(|(_, h)| h.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 1000, "every host has its own index");
    let txns = planner.metrics.plan_transactions.get();
    // 1000 host keys need at least 8 transactions of 128; coalescing keeps it near that.
    assert!(txns < 60, "{txns} transactions for 1000 joins");
    planner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_keeps_its_index_within_the_grace_period_and_loses_it_after() {
    let c = Cluster::start().await;
    c.apply("rails", IPAM, "").await;
    let planner = c.planner(fast_config("p1", Duration::from_secs(3)));
    let a = c.register(&host("a", 0, 2), 30).await;
    c.register(&host("b", 1, 2), 30).await;
    let plan = wait_for(Duration::from_secs(10), "two hosts planned", || async {
        let p = c.plan_hosts("rails").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    let a_index = plan.iter().find(|(n, _)| n == "a").unwrap().1.index;

    // The daemon of host a dies (its lease is revoked) and comes back quickly.
    c.store.revoke(a).await.unwrap();
    wait_for(Duration::from_secs(10), "a marked departed", || async {
        c.plan_hosts("rails")
            .await
            .into_iter()
            .find(|(n, h)| n == "a" && h.departed_at.is_some())
    })
    .await;
    let a2 = c.register(&host("a", 0, 2), 30).await;
    let back = wait_for(Duration::from_secs(10), "a back", || async {
        c.plan_hosts("rails")
            .await
            .into_iter()
            .find(|(n, h)| n == "a" && h.departed_at.is_none())
    })
    .await;
    assert_eq!(back.1.index, a_index, "same index within the grace period");

    // Gone for longer than the grace period: the index is freed.
    c.store.revoke(a2).await.unwrap();
    wait_for(
        Duration::from_secs(15),
        "a's plan entry removed after grace",
        || async {
            let p = c.plan_hosts("rails").await;
            (p.len() == 1).then_some(())
        },
    )
    .await;
    let meta: railyard_core::PlanMeta = c
        .store
        .get(&keys::plan_meta("rails"))
        .await
        .unwrap()
        .unwrap()
        .decode_json()
        .unwrap();
    assert_eq!(meta.retired, vec![a_index]);
    planner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_gets_a_status_and_no_plan() {
    let c = Cluster::start().await;
    let planner = c.planner(fast_config("p1", Duration::from_secs(600)));
    c.register(&host("a", 0, 2), 30).await;
    c.apply("broken", r#"{"hostBlock": 12, "interfaceBlock": 4}"#, "")
        .await;
    let status = wait_for(
        Duration::from_secs(10),
        "status of the broken network",
        || async { c.status("broken").await },
    )
    .await;
    assert_eq!(status.condition, Condition::Invalid);
    let err = status.last_error.unwrap();
    assert!(
        err.contains("spec.ipam.hostBlock") && err.contains("\"12\""),
        "{err}"
    );
    let plan = c.store.range(&keys::plan_prefix("broken")).await.unwrap();
    assert!(plan.kvs.is_empty(), "no partial plan");

    // Fixing the spec plans the network.
    c.apply("broken", IPAM, "").await;
    wait_for(Duration::from_secs(10), "fixed network planned", || async {
        c.status("broken")
            .await
            .filter(|s| s.condition == Condition::Ready && s.hosts_planned == 1)
    })
    .await;
    planner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renumbering_spec_change_is_refused_while_hosts_hold_pods_unless_forced() {
    let c = Cluster::start().await;
    c.apply("rails", IPAM, "").await;
    let planner = c.planner(fast_config("p1", Duration::from_secs(600)));
    for n in 0..3 {
        c.register(&host(&format!("h{n}"), n, 2), 30).await;
    }
    wait_for(Duration::from_secs(10), "3 hosts planned", || async {
        let p = c.plan_hosts("rails").await;
        (p.len() == 3).then_some(())
    })
    .await;
    // h2 (index 2) holds a pod address.
    c.store
        .put(
            &keys::allocation("rails", "h2", "c1", "net1"),
            b"{}".to_vec(),
            None,
        )
        .await
        .unwrap();
    let before = c.plan_hosts("rails").await;

    // hostBlock 1 leaves room for indexes 0 and 1 only.
    c.apply("rails", r#"{"hostBlock": 1, "interfaceBlock": 2}"#, "")
        .await;
    let status = wait_for(Duration::from_secs(10), "refusal in status", || async {
        c.status("rails")
            .await
            .filter(|s| s.condition == Condition::Invalid)
    })
    .await;
    let err = status.last_error.unwrap();
    assert!(err.contains("host h2") && err.contains("refused"), "{err}");
    assert_eq!(c.plan_hosts("rails").await, before, "plan unchanged");

    // A new exclude that hits no live host applies live.
    c.apply(
        "rails",
        r#"{"hostBlock": 6, "interfaceBlock": 2, "excludeCIDRs": ["192.168.40.0/24"]}"#,
        "",
    )
    .await;
    wait_for(Duration::from_secs(10), "safe change applied", || async {
        c.status("rails")
            .await
            .filter(|s| s.condition == Condition::Ready)
    })
    .await;

    // Forced: applied, h2 renumbered.
    c.apply_yaml(
        "rails",
        "metadata:\n  name: rails\n  annotations: {railyard.dev/allow-renumber: \"true\"}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{\"hostBlock\": 1, \"interfaceBlock\": 2}'\n",
    )
    .await;
    let status = wait_for(Duration::from_secs(10), "forced change applied", || async {
        c.status("rails")
            .await
            .filter(|s| s.condition == Condition::Exhausted)
    })
    .await;
    assert_eq!(status.hosts_planned, 2);
    assert_eq!(status.hosts_unplanned.len(), 1, "{status:?}");
    planner.shutdown().await;
}

/// A moved gateway is an address pods may hold (the daemons' shims would
/// take it from them): refused while any host holds pods, unless forced.
#[tokio::test]
async fn a_gateway_change_is_refused_while_pods_hold_addresses_unless_forced() {
    let c = Cluster::start().await;
    c.apply("rails", IPAM, "").await;
    let planner = c.planner(fast_config("p1", Duration::from_secs(600)));
    for n in 0..2 {
        c.register(&host(&format!("h{n}"), n, 2), 30).await;
    }
    // Applied: the status has seen this very spec write and says Ready.
    let applied = |what: &'static str| {
        let c = &c;
        async move {
            let rev = c
                .store
                .get(&keys::network("rails"))
                .await
                .unwrap()
                .expect("the spec")
                .mod_revision;
            wait_for(Duration::from_secs(10), what, || async {
                c.status("rails")
                    .await
                    .filter(|s| s.condition == Condition::Ready && s.applied_revision >= rev)
            })
            .await
        }
    };
    applied("planned").await;
    // No pods yet: the gateway moves freely.
    let moved = r#"{"hostBlock": 6, "interfaceBlock": 2, "gateway": {"offset": 5}}"#;
    c.apply("rails", moved, "").await;
    applied("moved gateway applied").await;
    c.store
        .put(
            &keys::allocation("rails", "h1", "c1", "net1"),
            b"{}".to_vec(),
            None,
        )
        .await
        .unwrap();
    let again = r#"{"hostBlock": 6, "interfaceBlock": 2, "gateway": {"offset": 7}}"#;
    c.apply("rails", again, "").await;
    let status = wait_for(Duration::from_secs(10), "refusal in status", || async {
        c.status("rails")
            .await
            .filter(|s| s.condition == Condition::Invalid)
    })
    .await;
    let err = status.last_error.unwrap();
    assert!(
        err.contains("spec.ipam.gateway") && err.contains("{offset: 5}") && err.contains("refused"),
        "{err}"
    );
    // Forced: applied.
    c.apply_yaml(
        "rails",
        &format!(
            "metadata:\n  name: rails\n  annotations: {{railyard.dev/allow-renumber: \"true\"}}\nspec:\n  subnet: 192.168.0.0/16\n  ipam: '{again}'\n"
        ),
    )
    .await;
    applied("forced gateway applied").await;
    planner.shutdown().await;
}
