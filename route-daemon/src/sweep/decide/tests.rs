//! The sweep's rules, case by case, then as properties over random histories.

use proptest::prelude::*;

use super::*;

const GRACE: Duration = Duration::from_secs(60);

fn s(secs: u64) -> At {
    Duration::from_secs(secs)
}

fn id(c: &str) -> AttachmentId {
    AttachmentId {
        network: "net".into(),
        container_id: c.into(),
        ifname: "net1".into(),
    }
}

fn pod(name: &str, uid: &str) -> PodRef {
    PodRef {
        namespace: "ns".into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
    }
}

fn held(c: &str, pod: PodRef, added: u64) -> Held {
    Held {
        id: id(c),
        pod,
        added: s(added),
    }
}

fn info(name: &str, uid: &str) -> PodInfo {
    PodInfo {
        namespace: "ns".into(),
        name: name.into(),
        uid: uid.into(),
        mirror_of: None,
    }
}

fn listed(at: u64, pods: &[PodInfo]) -> Observation {
    Observation::Listed {
        at: s(at),
        pods: Present::new(pods),
    }
}

#[test]
fn a_pod_gone_is_released_after_two_observations_a_grace_apart() {
    let mut sw = Sweep::new(GRACE);
    let h = [held("c1", pod("p", "u1"), 0)];
    assert!(sw.observe(&h, &listed(10, &[info("p", "u1")])).is_empty());
    // Gone: the first absence starts the clock.
    assert!(sw.observe(&h, &listed(70, &[])).is_empty());
    assert_eq!(sw.candidates(), 1);
    // A second absence, but less than the grace after the first.
    assert!(sw.observe(&h, &listed(129, &[])).is_empty());
    assert_eq!(sw.observe(&h, &listed(130, &[])), [id("c1")]);
}

#[test]
fn a_listed_pod_in_between_starts_the_clock_again() {
    let mut sw = Sweep::new(GRACE);
    let h = [held("c1", pod("p", "u1"), 0)];
    assert!(sw.observe(&h, &listed(100, &[])).is_empty());
    assert!(sw.observe(&h, &listed(130, &[info("p", "u1")])).is_empty());
    assert!(sw.observe(&h, &listed(160, &[])).is_empty());
    assert!(sw.observe(&h, &listed(219, &[])).is_empty());
    assert_eq!(sw.observe(&h, &listed(220, &[])), [id("c1")]);
}

#[test]
fn a_failed_list_neither_counts_nor_clears() {
    let mut sw = Sweep::new(GRACE);
    let h = [held("c1", pod("p", "u1"), 0)];
    assert!(sw.observe(&h, &listed(100, &[])).is_empty());
    for _ in 0..5 {
        assert!(sw.observe(&h, &Observation::Failed).is_empty());
    }
    assert_eq!(sw.candidates(), 1);
    assert_eq!(sw.observe(&h, &listed(160, &[])), [id("c1")]);
    // Only failures after a single absence: nothing, however long.
    let mut sw = Sweep::new(GRACE);
    assert!(sw.observe(&h, &listed(100, &[])).is_empty());
    assert!(sw.observe(&h, &Observation::Failed).is_empty());
    assert_eq!(sw.candidates(), 1);
}

#[test]
fn a_young_attachment_is_kept_while_its_pod_is_being_created() {
    // The ADD-vs-sweep race: the ADD at 1000 comes before the API lists the
    // pod on this node (the sweep's list started earlier, or lags).
    let mut sw = Sweep::new(GRACE);
    let h = [held("c1", pod("p", "u1"), 1000)];
    // A list that started before the ADD says nothing about it.
    assert!(sw.observe(&h, &listed(999, &[])).is_empty());
    assert_eq!(sw.candidates(), 0);
    // Two absences a grace apart, but the attachment is younger than the grace
    // at the second: kept.
    assert!(sw.observe(&h, &listed(1001, &[])).is_empty());
    assert!(sw.observe(&h, &listed(1059, &[])).is_empty());
    // The pod shows up: the clock stops.
    assert!(sw.observe(&h, &listed(1062, &[info("p", "u1")])).is_empty());
    assert_eq!(sw.candidates(), 0);
}

#[test]
fn a_repeated_add_restarts_the_clock() {
    let mut sw = Sweep::new(GRACE);
    let h = [held("c1", pod("p", "u1"), 0)];
    assert!(sw.observe(&h, &listed(100, &[])).is_empty());
    // The runtime repeated the ADD at 150 (its pod is being created again).
    let h = [held("c1", pod("p", "u1"), 150)];
    assert!(sw.observe(&h, &listed(160, &[])).is_empty());
    assert!(sw.observe(&h, &listed(219, &[])).is_empty());
    assert_eq!(sw.observe(&h, &listed(220, &[])), [id("c1")]);
}

#[test]
fn uid_decides_when_known_and_names_when_not() {
    let mut sw = Sweep::new(GRACE);
    let h = [
        // The pod was recreated under its name: the old UID's attachment leaked.
        held("old", pod("sts-0", "u-old"), 0),
        held("new", pod("sts-0", "u-new"), 0),
        // No UID in CNI_ARGS: the name is all there is.
        held("named", pod("plain", ""), 0),
    ];
    let pods = [info("sts-0", "u-new"), info("plain", "whatever")];
    assert!(sw.observe(&h, &listed(100, &pods)).is_empty());
    assert_eq!(sw.observe(&h, &listed(160, &pods)), [id("old")]);
}

#[test]
fn a_static_pod_is_present_through_its_mirror() {
    let mut sw = Sweep::new(GRACE);
    let h = [held("c1", pod("etcd-node1", "static-hash"), 0)];
    let mirror = PodInfo {
        mirror_of: Some("static-hash".into()),
        ..info("etcd-node1", "api-uid")
    };
    for at in [100, 200, 300] {
        assert!(sw
            .observe(&h, &listed(at, std::slice::from_ref(&mirror)))
            .is_empty());
    }
}

#[test]
fn attachments_without_a_pod_are_never_swept() {
    let mut sw = Sweep::new(GRACE);
    let h = [
        held("none", PodRef::default(), 0),
        held(
            "name-only",
            PodRef {
                name: "p".into(),
                ..PodRef::default()
            },
            0,
        ),
    ];
    for at in [100, 200, 300, 400] {
        assert!(sw.observe(&h, &listed(at, &[])).is_empty());
    }
    assert_eq!(sw.candidates(), 0);
}

#[test]
fn released_or_deleted_attachments_are_forgotten() {
    let mut sw = Sweep::new(GRACE);
    let h = [held("c1", pod("p", "u1"), 0)];
    assert!(sw.observe(&h, &listed(100, &[])).is_empty());
    assert_eq!(sw.candidates(), 1);
    assert!(sw.observe(&[], &listed(110, &[])).is_empty());
    assert_eq!(sw.candidates(), 0);
}

/// One step of a random history.
#[derive(Debug, Clone)]
struct Step {
    /// Seconds since the previous step.
    dt: u64,
    /// None: the list failed. Some(mask): bit i set when pod i is listed.
    listed: Option<u8>,
    /// Bit i set when attachment i gets a (repeated) ADD just before the read.
    adds: u8,
}

fn step() -> impl Strategy<Value = Step> {
    (
        1u64..40,
        prop_oneof![1 => Just(None), 4 => any::<u8>().prop_map(Some)],
        prop_oneof![6 => Just(0u8), 1 => any::<u8>()],
    )
        .prop_map(|(dt, listed, adds)| Step { dt, listed, adds })
}

const PODS: usize = 5;

/// Attachment i belongs to pod i (uid `u{i}`), except the last, which has no
/// pod (not Kubernetes).
fn attachment_pod(i: usize) -> PodRef {
    if i == PODS - 1 {
        PodRef::default()
    } else {
        pod(&format!("p{i}"), &format!("u{i}"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Over any history: a release never hits a pod listed by that very
    /// observation, nor an attachment younger than the grace, nor happens
    /// without an earlier counting observation, at least a grace before,
    /// since which every successful list missed the pod; failed lists and
    /// pod-less attachments release nothing. And a pod gone for good is
    /// released once two lists a grace apart missed it.
    #[test]
    fn releases_only_what_was_gone_a_whole_grace(
        grace in 1u64..120,
        first_added in proptest::collection::vec(0u64..100, PODS),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let grace_d = s(grace);
        let mut sw = Sweep::new(grace_d);
        let mut added: Vec<Option<u64>> = first_added.iter().map(|&a| Some(a)).collect();
        // Successful lists so far: (at, mask).
        let mut lists: Vec<(u64, u8)> = Vec::new();
        let mut now = 100u64;
        for st in &steps {
            now += st.dt;
            for (i, a) in added.iter_mut().enumerate() {
                if st.adds & (1 << i) != 0 {
                    *a = Some(now);
                }
            }
            let h: Vec<Held> = added
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|a| held(&format!("c{i}"), attachment_pod(i), a)))
                .collect();
            let obs = match st.listed {
                None => Observation::Failed,
                Some(mask) => {
                    let pods: Vec<PodInfo> = (0..PODS)
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| info(&format!("p{i}"), &format!("u{i}")))
                        .collect();
                    lists.push((now, mask));
                    listed(now, &pods)
                }
            };
            let released = sw.observe(&h, &obs);
            if st.listed.is_none() {
                prop_assert!(released.is_empty(), "a failed list released {released:?}");
            }
            for r in released {
                let i: usize = r.container_id[1..].parse().unwrap();
                prop_assert!(i != PODS - 1, "a pod-less attachment was released");
                let mask = st.listed.unwrap();
                prop_assert!(mask & (1 << i) == 0, "released c{i} whose pod is listed");
                let a = added[i].unwrap();
                prop_assert!(now >= a + grace, "released c{i} added at {a}, now {now}, grace {grace}");
                // Some earlier list, after the ADD and a grace before now, since
                // which every list missed pod i.
                let ok = lists.iter().enumerate().any(|(j, &(at, _))| {
                    at >= a && at + grace <= now && at < now
                        && lists[j..].iter().all(|&(_, m)| m & (1 << i) == 0)
                });
                prop_assert!(ok, "released c{i} without two absences a grace apart: {lists:?}");
                added[i] = None;
            }
        }
        // Liveness: every pod-backed attachment still held, given two more
        // lists without any pod, a grace apart and a grace after its ADD, goes.
        let h: Vec<Held> = added
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|a| held(&format!("c{i}"), attachment_pod(i), a)))
            .collect();
        let t1 = now + 1;
        let t2 = t1 + grace;
        let mut out = sw.observe(&h, &listed(t1, &[]));
        let h2: Vec<Held> = h.iter().filter(|x| !out.contains(&x.id)).cloned().collect();
        out.extend(sw.observe(&h2, &listed(t2, &[])));
        let want: Vec<AttachmentId> = h
            .iter()
            .filter(|x| is_kubernetes(&x.pod))
            .map(|x| x.id.clone())
            .collect();
        out.sort();
        let mut want = want;
        want.sort();
        prop_assert_eq!(out, want);
    }
}
