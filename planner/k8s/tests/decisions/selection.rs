//! Pod-level selection (Multus cni-args to `Selection`), leadership, cleanup and watch mapping.

use super::*;

#[test]
fn multus_cni_args_deserialize_into_selection() {
    // The pod annotation as documented in docs/kubernetes.md.
    let annotation = r#"[{"name": "multi-nic-sample", "cni-args": {"nics": 2, "masters": ["eth1"], "class": "fast", "numa": 0}}]"#;
    let elements: Vec<Value> = serde_json::from_str(annotation).unwrap();
    // Multus copies cni-args into the plugin's config as args.cni.
    let args_cni = elements[0]["cni-args"].clone();
    let selection: Selection = serde_json::from_value(args_cni).unwrap();
    assert_eq!(
        selection,
        Selection {
            nics: Some(2),
            masters: vec!["eth1".into()],
            class: Some("fast".into()),
            numa: Some(0),
            ips: Vec::new(),
            ..Selection::default()
        }
    );
}

#[test]
fn selection_uses_exactly_the_documented_names() {
    let full = Selection {
        nics: Some(1),
        masters: vec!["eth1".into()],
        class: Some("c".into()),
        numa: Some(1),
        ips: vec!["10.0.0.5".parse().unwrap()],
        pool: Some("db".into()),
        pool_ips: vec!["10.0.0.6".parse().unwrap()],
        ..Selection::default()
    };
    let v = serde_json::to_value(&full).unwrap();
    let names: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["nics", "masters", "class", "numa", "ips", "pool", "ipPool"])
    );
    assert_eq!(
        serde_json::from_value::<Selection>(json!({})).unwrap(),
        Selection::default()
    );
}

// ---------------------------------------------------------------------------
// Leadership, cleanup, watch mapping

#[test]
fn the_controller_runs_where_the_planner_leads() {
    let election = vec![
        kv(
            &format!("{}00000000000000b2", keys::ELECTION),
            b"planner-b",
            12,
        ),
        kv(
            &format!("{}00000000000000a1", keys::ELECTION),
            b"planner-a",
            7,
        ),
    ];
    assert_eq!(
        leader::leading_guard(&election, "planner-a"),
        Some(Compare::CreateRevision {
            key: format!("{}00000000000000a1", keys::ELECTION),
            rev: 7,
        })
    );
    assert_eq!(leader::leading_guard(&election, "planner-b"), None);
    assert_eq!(leader::leading_guard(&[], "planner-a"), None);
}

#[test]
fn cleanup_removes_only_kubernetes_specs_without_an_object() {
    let spec = |name: &str, uid: Option<&str>| {
        let mut m: NetworkManifest = serde_yaml::from_str(SAMPLE).unwrap();
        m.metadata.name = name.into();
        if let Some(u) = uid {
            m.metadata
                .annotations
                .insert("railyard.dev/k8s-uid".into(), u.into());
        }
        kv(&keys::network(name), &serde_json::to_vec(&m).unwrap(), 5)
    };
    let specs = vec![
        spec("gone", Some("u1")),
        spec("live", Some("u2")),
        spec("from-cli", None),
        kv(&keys::network("garbage"), b"not json", 9),
    ];
    let live = BTreeSet::from(["live".to_string()]);
    assert_eq!(
        cleanup::stale_specs(&specs, &live),
        vec![(keys::network("gone"), 5)]
    );
}

#[test]
fn a_nad_event_wakes_its_owning_network() {
    let mut nad = (*cached_nad("default", "multi-nic-sample", UID)).clone();
    let mut foreign = owner();
    foreign.api_version = "spiderpool.spidernet.io/v2beta1".into();
    foreign.kind = "SpiderMultusConfig".into();
    nad.metadata
        .owner_references
        .as_mut()
        .unwrap()
        .push(foreign);
    let owners = controller::owners_of(&nad);
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].name, "multi-nic-sample");
    assert_eq!(
        owners[0].namespace, None,
        "MultiNicNetwork is cluster-scoped"
    );
}

#[test]
fn etcd_changes_name_the_networks_to_reconcile() {
    let events = WatchUpdate::Events(vec![
        WatchEvent::Put(kv(&keys::status("a"), b"{}", 3)),
        WatchEvent::Delete {
            key: keys::network("b"),
            mod_revision: 4,
        },
    ]);
    assert_eq!(controller::changed_names(Ok(events)), vec!["a", "b"]);
    assert!(controller::changed_names(Err(StoreError::Unavailable {
        endpoint: "e".into(),
        reason: "down".into()
    }))
    .is_empty());
}
