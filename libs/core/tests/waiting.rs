//! Hosts left unplanned because the network was full wait in a queue: when an
//! index frees, the longest-waiting host gets it, not whoever joins next.

mod common;

use common::{host, network};
use railyard_core::{plan, Change, Network, Planner};

/// Two host indexes (hostBlock 1), one rail.
fn tiny() -> Network {
    network(
        "metadata: {name: n}\nspec:\n  subnet: 192.168.0.0/24\n  ipam: '{\"hostBlock\": 1, \"interfaceBlock\": 0}'\n",
    )
}

#[test]
fn the_longest_waiting_host_is_first_in_the_queue_whatever_its_name() {
    let mut p = Planner::new(&tiny(), None);
    for (n, name) in ["a", "b", "zz-waited-longest", "aa-joined-later"]
        .iter()
        .enumerate()
    {
        p.upsert_host(&host(name, n as u32, 1, false));
    }
    assert_eq!(p.waiting(), vec!["zz-waited-longest", "aa-joined-later"]);
    // Waiting again (a re-registration) keeps the place in the queue.
    assert_eq!(
        p.upsert_host(&host("zz-waited-longest", 2, 1, false)),
        Change::Unchanged
    );
    assert_eq!(p.waiting()[0], "zz-waited-longest");
    // The stored order is the queue order, so a restarted planner keeps it.
    let stored = p.to_plan();
    let order: Vec<&str> = stored.unplanned.iter().map(|u| u.host.as_str()).collect();
    assert_eq!(order, vec!["zz-waited-longest", "aa-joined-later"]);
    let again = Planner::new(&tiny(), Some(&stored));
    assert_eq!(
        again.waiting(),
        vec!["zz-waited-longest", "aa-joined-later"]
    );
}

#[test]
fn a_freed_index_goes_to_the_longest_waiting_host() {
    let net = tiny();
    let all = vec![
        host("a", 0, 1, false),
        host("b", 1, 1, false),
        host("zz-waited-longest", 2, 1, false),
    ];
    let p1 = plan(&net, &all, None, 0, 10);
    assert_eq!(p1.unplanned.len(), 1);
    // A newcomer that sorts first arrives while the network is still full.
    let mut later = all.clone();
    later.push(host("aa-joined-later", 3, 1, false));
    let p2 = plan(&net, &later, Some(&p1), 1, 10);
    let order: Vec<&str> = p2.unplanned.iter().map(|u| u.host.as_str()).collect();
    assert_eq!(order, vec!["zz-waited-longest", "aa-joined-later"]);
    // "a" leaves; after its grace period its index is free again.
    later.remove(0);
    let p3 = plan(&net, &later, Some(&p2), 2, 10);
    assert!(p3.hosts.contains_key("a"), "a is departed, still reserved");
    let p4 = plan(&net, &later, Some(&p3), 20, 10);
    assert_eq!(p4.hosts["zz-waited-longest"].index, 0);
    let order: Vec<&str> = p4.unplanned.iter().map(|u| u.host.as_str()).collect();
    assert_eq!(order, vec!["aa-joined-later"]);
}

#[test]
fn a_waiting_host_that_leaves_leaves_the_queue() {
    let net = tiny();
    let all = vec![
        host("a", 0, 1, false),
        host("b", 1, 1, false),
        host("c", 2, 1, false),
    ];
    let p1 = plan(&net, &all, None, 0, 10);
    let p2 = plan(&net, &all[..2], Some(&p1), 1, 10);
    assert!(p2.unplanned.is_empty(), "{:?}", p2.unplanned);
}
