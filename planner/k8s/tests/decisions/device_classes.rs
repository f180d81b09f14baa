//! DeviceClass objects to etcd.

use super::*;

fn device_class(name: &str, rules: Value) -> DeviceClass {
    let mut c: DeviceClass = serde_json::from_value(json!({
        "apiVersion": "railyard.dev/v1", "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"rules": rules},
    }))
    .unwrap();
    c.metadata.uid = Some(format!("uid-{name}"));
    c
}

fn refusal(rules: Value) -> (String, String) {
    match device_class("c", rules).validated() {
        Err(CoreError::Invalid { field, value, .. }) => (field, value),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn device_class_validation_names_the_field_and_the_value() {
    let ok = device_class("fast", json!([{"vendor": "15b3"}, {"minSpeedMbps": 1}]));
    assert_eq!(ok.validated(), Ok(ok.to_core()));
    let cases = [
        (json!([]), ("spec.rules", "0 rules")),
        (
            json!([{"vendor": "nvidia"}]),
            ("spec.rules[0].vendor", "nvidia"),
        ),
        (
            json!([{"driver": "ice"}, {"products": ["1017", "0x101b", "10"]}]),
            ("spec.rules[1].products[2]", "10"),
        ),
        (
            json!([{"driver": "mlx5/core"}]),
            ("spec.rules[0].driver", "mlx5/core"),
        ),
        (json!([{"driver": ""}]), ("spec.rules[0].driver", "")),
        (
            json!([{"minSpeedMbps": 0}]),
            ("spec.rules[0].minSpeedMbps", "0"),
        ),
        // Stored before the schema bounded it (the apiserver ignores formats).
        (
            json!([{"minSpeedMbps": 4_294_967_296_u64}]),
            ("spec.rules[0].minSpeedMbps", "4294967296"),
        ),
        // What the apiserver leaves of `- vender: 15b3`: it would match every NIC.
        (json!([{"driver": "ice"}, {}]), ("spec.rules[1]", "{}")),
    ];
    for (rules, (field, value)) in cases {
        assert_eq!(
            refusal(rules.clone()),
            (field.to_string(), value.to_string()),
            "{rules}"
        );
    }
    let many: Vec<Value> = (0..65).map(|_| json!({"driver": "ice"})).collect();
    assert_eq!(refusal(json!(many)).0, "spec.rules");
}

fn stored_kv(name: &str, value: &[u8], rev: i64) -> KeyValue {
    kv(&keys::device_class(name), value, rev)
}

#[test]
fn the_stored_class_is_what_the_daemon_reads_plus_the_owner_marker() {
    let c = device_class(
        "fast",
        json!([{"vendor": "0x15b3", "minSpeedMbps": 100000}]),
    );
    let value = devclass::stored_value(&c).unwrap();
    let raw: Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(raw["k8sUid"], "uid-fast");
    let daemon: railyard_core::attach::DeviceClass = serde_json::from_slice(&value).unwrap();
    assert_eq!(daemon, c.to_core());
    assert!(devclass::written_by_controller(&stored_kv(
        "fast", &value, 3
    )));
    assert!(!devclass::written_by_controller(&stored_kv(
        "cli",
        br#"{"name":"cli","rules":[{"driver":"ice"}]}"#,
        3
    )));
    assert!(!devclass::written_by_controller(&stored_kv(
        "junk", b"{", 3
    )));
}

#[test]
fn device_classes_are_written_when_changed_and_deleted_only_when_ours() {
    let fast = device_class("fast", json!([{"driver": "mlx5_core"}]));
    let new = device_class("new", json!([{"driver": "ice"}]));
    let broken = device_class("broken", json!([{"vendor": "nvidia"}]));
    let same = devclass::stored_value(&fast).unwrap();
    let objects: Vec<Arc<DeviceClass>> = vec![fast, new.clone(), broken]
        .into_iter()
        .map(Arc::new)
        .collect();
    let marked = br#"{"name":"x","rules":[{"driver":"ice"}],"k8sUid":"u"}"#;
    let stored = vec![
        stored_kv("fast", &same, 4),
        // The last valid version of an object that is now invalid: kept.
        stored_kv("broken", marked, 5),
        stored_kv("orphan", marked, 6),
        stored_kv("by-hand", br#"{"name":"by-hand","rules":[]}"#, 7),
        stored_kv("junk", b"not json", 8),
    ];
    let sync = devclass::decide(&objects, &stored).unwrap();
    assert_eq!(
        sync.put,
        vec![(
            keys::device_class("new"),
            devclass::stored_value(&new).unwrap(),
            0
        )]
    );
    assert_eq!(sync.delete, vec![(keys::device_class("orphan"), 6)]);
    assert_eq!(sync.refused.len(), 1);
    assert_eq!(sync.refused[0].0, "broken");
    assert!(
        sync.refused[0]
            .1
            .starts_with("DeviceClass broken: spec.rules[0].vendor: \"nvidia\""),
        "{}",
        sync.refused[0].1
    );

    // A changed object replaces the stored value, conditional on its revision.
    let faster = Arc::new(device_class(
        "fast",
        json!([{"driver": "mlx5_core", "minSpeedMbps": 1}]),
    ));
    let sync = devclass::decide(&[faster], &[stored_kv("fast", &same, 4)]).unwrap();
    assert_eq!(sync.put.len(), 1);
    assert_eq!(sync.put[0].2, 4);
}

/// An object the apiserver stored but the Rust type cannot read (a speed beyond
/// `i64`, stored under a CRD without bounds) is refused alone, by name; the
/// others are still written, and its last stored version is kept.
#[test]
fn an_object_that_does_not_decode_is_refused_alone() {
    let dynamic = |name: &str, rules: Value| -> Arc<kube::api::DynamicObject> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "railyard.dev/v1", "kind": "DeviceClass",
                "metadata": {"name": name, "uid": format!("uid-{name}")},
                "spec": {"rules": rules},
            }))
            .unwrap(),
        )
    };
    let objects = vec![
        dynamic(
            "huge",
            json!([{"minSpeedMbps": 18_446_744_073_709_551_615_u64}]),
        ),
        dynamic("fast", json!([{"driver": "mlx5_core"}])),
    ];
    let (read, unreadable) = devclass::decode(&objects);
    assert_eq!(read.len(), 1);
    assert_eq!(unreadable.len(), 1);
    let marked = br#"{"name":"huge","rules":[{"driver":"ice"}],"k8sUid":"uid-huge"}"#;
    let sync = devclass::decide_listed(&objects, &[stored_kv("huge", marked, 9)]).unwrap();
    assert_eq!(sync.put.len(), 1);
    assert_eq!(sync.put[0].0, keys::device_class("fast"));
    assert!(sync.delete.is_empty(), "the unreadable object still exists");
    assert_eq!(sync.refused.len(), 1);
    let (name, reason) = &sync.refused[0];
    assert_eq!(name, "huge");
    assert!(
        reason.starts_with("DeviceClass huge: cannot be read"),
        "{reason}"
    );
    assert!(reason.contains("18446744073709551615"), "{reason}");
}
