//! The etcd key schema and the stored plan (`railyard_core::keys`,
//! `railyard_core::stored`, the plan's `PlanMeta` and `HostPlan` values).
//!
//! Input: four lines (a network, a host, a container ID, an interface name),
//! then a stored value as JSON (a plan meta, a host entry or a tombstone).
//!
//! Properties: for names that pass validation, every key decodes back to its
//! parts the way the readers split them (planner, route-daemon, CLI): the
//! last segment is the object's name, a network's prefix holds its own keys
//! and no other network's, an allocation key splits into exactly its four
//! parts; a stored value read and written again is canonical (encode(decode(x))
//! reads back equal) and a plan split into meta and hosts reassembles to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use railyard_core::stored::Tombstone;
use railyard_core::{keys, validate_dns_label, validate_host_name, validate_key_segment};
use railyard_core::{HostPlan, Plan, PlanMeta};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// How the planner and the daemons read a plan key: `(network, None)` for the
/// meta, `(network, Some(host))` for a host entry.
fn read_plan_key(key: &str) -> Option<(&str, Option<&str>)> {
    let (net, tail) = key.strip_prefix(keys::PLANS)?.split_once('/')?;
    if net.is_empty() {
        return None;
    }
    if tail == "meta" {
        return Some((net, None));
    }
    let host = tail.strip_prefix("hosts/")?;
    (!host.is_empty() && !host.contains('/')).then_some((net, Some(host)))
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(bytes).ok()?;
    let written = serde_json::to_vec(&v).expect("serializes");
    let back: T = serde_json::from_slice(&written).expect("written value reads back");
    let again = serde_json::to_vec(&back).expect("serializes");
    assert_eq!(written, again, "not canonical");
    Some(back)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let network = parts.next().unwrap_or_default();
    let host = parts.next().unwrap_or_default();
    let container = parts.next().unwrap_or_default();
    let ifname = parts.next().unwrap_or_default();
    let value = parts.next().unwrap_or_default();

    for key in [network, host, &text] {
        let last = keys::last_segment(key);
        assert!(key.ends_with(last) && !last.contains('/'));
        let _ = read_plan_key(key);
    }

    let net_ok = validate_dns_label("network", network).is_ok();
    let host_ok = validate_host_name("host", host).is_ok();
    if net_ok {
        let meta = keys::plan_meta(network);
        assert_eq!(read_plan_key(&meta), Some((network, None)));
        assert!(meta.starts_with(&keys::plan_prefix(network)));
        for k in [
            keys::network(network),
            keys::status(network),
            keys::tombstone(network),
        ] {
            assert_eq!(keys::last_segment(&k), network);
            assert!(k.starts_with(keys::ROOT));
        }
        // A network's prefixes never hold another network's keys.
        if validate_dns_label("host", host).is_ok() && host != network {
            let other = host;
            assert!(!keys::plan_meta(other).starts_with(&keys::plan_prefix(network)));
            assert!(!keys::allocations_of(other).starts_with(&keys::allocations_of(network)));
        }
    }
    if net_ok && host_ok {
        let k = keys::plan_host(network, host);
        assert_eq!(read_plan_key(&k), Some((network, Some(host))), "{k}");
        assert_eq!(keys::last_segment(&k), host);
        assert!(k.starts_with(&keys::plan_hosts_prefix(network)));
        assert_eq!(keys::last_segment(&keys::host(host)), host);
        if validate_key_segment("c", container).is_ok() && validate_key_segment("i", ifname).is_ok()
        {
            let a = keys::allocation(network, host, container, ifname);
            assert!(a.starts_with(&keys::allocations_of_host(network, host)));
            let split: Vec<&str> = a
                .strip_prefix(keys::ALLOCATIONS)
                .unwrap()
                .split('/')
                .collect();
            assert_eq!(split, [network, host, container, ifname], "{a}");
        }
    }

    // Stored values.
    let bytes = value.as_bytes();
    let meta = round_trip::<PlanMeta>(bytes);
    let host_plan = round_trip::<HostPlan>(bytes);
    let _ = round_trip::<Tombstone>(bytes);
    if let Some(meta) = meta {
        if let Some(spec) = &meta.spec {
            let _ = spec.validate(&meta.network);
        }
        let hosts = host_plan.map(|h| (host.to_owned(), h));
        let plan = Plan::assemble(meta.clone(), hosts.clone());
        let (split, entries) = plan.split();
        assert_eq!(
            split,
            PlanMeta {
                spec: None,
                spec_revision: 0,
                ..meta.clone()
            }
        );
        assert_eq!(entries.len(), usize::from(hosts.is_some()));
        let again = Plan::assemble(split, entries.clone());
        assert_eq!(again, plan);
        let _ = railyard_core::desired_routes(&plan, host, 254);
    }
});
