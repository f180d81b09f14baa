//! The IPAM socket protocol between railyard-ipam and the route-daemon: one
//! JSON request line, one JSON response line (`railyard_core::ipam`).
//!
//! The input is used three ways: as a request line the daemon reads (decoded
//! as its server does); as the daemon's reply to the plugin's client
//! (`client::Client`, over a real unix socket to a fake daemon); and as the
//! reply to a whole railyard-ipam ADD through the CNI driver, which checks
//! the allocation and turns it into the CNI result.
//!
//! Properties: nothing panics; a decoded request or response written again
//! reads back equal; the client succeeds exactly on a non-error response and
//! passes a daemon error's code and message through; a successful ADD prints
//! one address per allocated address, each with its gateway.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use railyard_core::ipam::{Request, Response};
use railyard_fuzz::{check_cni_error, FakeDaemon};
use railyard_ipam_plugin::client::Client;
use railyard_ipam_plugin::cni;
use railyard_ipam_plugin::ipam::IpamPlugin;
use railyard_ipam_plugin::Error;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // The daemon's side (route-daemon/src/ipam/server.rs): a line, trimmed.
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok(req) = serde_json::from_str::<Request>(line.trim_end()) {
            let written = serde_json::to_string(&req).expect("a request serializes");
            assert!(!written.contains('\n'), "a request must stay one line");
            let back: Request = serde_json::from_str(&written).expect("reads back");
            assert_eq!(back, req);
        }
    }

    // The plugin's side: what it makes of this reply.
    let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let decoded = serde_json::from_slice::<Response>(line).ok();
    if let Some(resp) = &decoded {
        let written = serde_json::to_vec(resp).expect("a response serializes");
        assert!(!written.contains(&b'\n'));
        let back: Response = serde_json::from_slice(&written).expect("reads back");
        assert_eq!(&back, resp);
    }
    let daemon = FakeDaemon::get();
    daemon.answer(data);
    let client = Client::new(&daemon.socket, Duration::from_secs(5));
    let result = client.call(&Request::Status {
        network: "net1".into(),
    });
    let request: Value = serde_json::from_slice(&daemon.last_request()).expect("one JSON line");
    assert_eq!(request["op"], "status");
    match (&decoded, &result) {
        (Some(Response::Error(e)), Err(Error::Daemon { code, message, .. })) => {
            assert_eq!((code, message), (&e.code, &e.message));
        }
        (Some(Response::Error(e)), other) => panic!("daemon error {e:?} became {other:?}"),
        (Some(ok), Ok(got)) => assert_eq!(ok, got),
        (Some(ok), Err(e)) => panic!("{ok:?} refused: {e}"),
        (None, Ok(got)) => panic!("undecodable reply accepted as {got:?}"),
        (None, Err(e)) => check_cni_error(e),
    }

    // A whole ADD of railyard-ipam with this reply (report_nics as railyard-cni sets it).
    let stdin = serde_json::json!({
        "cniVersion": "1.1.0", "name": "net1", "type": "railyard-ipam",
        "ipam": {"type": "railyard-ipam", "socket": daemon.socket, "reportNics": true, "timeoutSeconds": 5},
    });
    let vars: HashMap<String, String> = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_IFNAME", "net1"),
        ("CNI_NETNS", "/proc/self/ns/net"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let out = cni::run(&vars, stdin.to_string().as_bytes(), &mut IpamPlugin);
    let reply: Value = serde_json::from_slice(&out.stdout).expect("the plugin prints JSON");
    if out.exit_code != 0 {
        let code = reply["code"].as_u64().unwrap_or_default();
        assert!(code != 0 && code != 999, "{reply}");
        return;
    }
    let Some(Response::Added { nics }) = &decoded else {
        panic!("ADD succeeded on a reply that is not an allocation: {reply}");
    };
    let ips = reply["ips"].as_array().expect("ips");
    let addresses: usize = nics.iter().map(|n| n.addresses.len()).sum();
    assert_eq!(ips.len(), addresses, "{reply}");
    // A network without gateways (`spec.ipam.gateway: none`) answers none:
    // an IP carries a gateway exactly when its NIC's answer has them.
    let gateways: usize = nics.iter().map(|n| n.gateways.len()).sum();
    let with_gateway = ips.iter().filter(|ip| ip["gateway"].is_string()).count();
    assert_eq!(with_gateway, gateways, "{reply}");
    assert_eq!(
        reply["interfaces"].as_array().map(Vec::len),
        Some(nics.len())
    );
});
