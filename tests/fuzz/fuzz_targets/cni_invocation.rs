//! One whole CNI invocation: the `CNI_*` environment (`CniEnv::from_map`,
//! `CniArgs::parse`) and stdin, through the driver (`cni::run`) on a handler
//! that does no IO.
//!
//! Input: environment lines `NAME=value`, an empty line, then stdin. So a
//! seed is a readable invocation (`tests/fuzz/corpus/cni_invocation/`).
//!
//! Properties: nothing panics (a panic anywhere aborts under libFuzzer, even
//! one the driver would catch); a parsed environment handed to a delegate
//! (`to_vars`) parses back to the same environment; `CNI_ARGS` round-trips;
//! the driver exits 0 or 1 and prints the spec's JSON: nothing or one result
//! line on success, one error object (code, message, the config's version)
//! on failure; VERSION always answers; an ADD's result reads back as what
//! the handler returned, in the config's version.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use railyard_fuzz::check_cni_error;
use railyard_ipam_plugin::cni::{
    self, AttachRequest, CniArgs, CniEnv, CniResult, CniVersion, GcRequest, Handler, IpConfig,
    NetConf, Route, StatusRequest,
};
use railyard_ipam_plugin::Error;
use serde_json::Value;

/// Answers every verb without IO. ADD returns the prevResult when there is
/// one (so results of every version pass through), else a fixed result.
struct Fake {
    added: Option<CniResult>,
}

impl Handler for Fake {
    fn add(&mut self, req: &AttachRequest) -> Result<CniResult, Error> {
        let result = match req.config.prev_result()? {
            Some(r) => r,
            None => CniResult {
                ips: vec![IpConfig {
                    address: "192.168.1.5/24".parse().unwrap(),
                    gateway: Some("192.168.1.1".parse().unwrap()),
                    interface: None,
                }],
                routes: vec![Route::new("192.168.0.0/16".parse().unwrap(), None)],
                ..CniResult::default()
            },
        };
        self.added = Some(result.clone());
        Ok(result)
    }
    fn del(&mut self, _: &AttachRequest) -> Result<(), Error> {
        Ok(())
    }
    fn check(&mut self, req: &AttachRequest) -> Result<(), Error> {
        req.config.prev_result().map(drop)
    }
    fn gc(&mut self, req: &GcRequest) -> Result<(), Error> {
        assert!(req.config.valid_attachments.is_some());
        Ok(())
    }
    fn status(&mut self, _: &StatusRequest) -> Result<(), Error> {
        Ok(())
    }
}

fn split(data: &[u8]) -> (HashMap<String, String>, &[u8]) {
    let (env, stdin) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let vars = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (vars, stdin)
}

fuzz_target!(|data: &[u8]| {
    let (vars, stdin) = split(data);

    if let Some(raw) = vars.get("CNI_ARGS") {
        match CniArgs::parse(raw) {
            Err(e) => check_cni_error(&e),
            Ok(args) => {
                let again = CniArgs::parse(&args.to_string()).expect("written CNI_ARGS parse");
                assert_eq!(again, args);
            }
        }
    }

    let env = match CniEnv::from_map(&vars) {
        Ok(env) => {
            // What a delegate is given parses back to the same invocation.
            let handed: HashMap<String, String> = env
                .to_vars()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let again = CniEnv::from_map(&handed).expect("a delegate's environment parses");
            assert_eq!(again, env);
            assert_eq!(env.attachment.is_some(), env.command.is_attachment());
            Some(env)
        }
        Err(e) => {
            check_cni_error(&e);
            None
        }
    };

    let mut fake = Fake { added: None };
    let out = cni::run(&vars, stdin, &mut fake);
    assert!(out.exit_code <= 1, "exit code {}", out.exit_code);
    let text = std::str::from_utf8(&out.stdout).expect("stdout is UTF-8");
    let is_version = env
        .as_ref()
        .is_some_and(|e| e.command == cni::Command::Version);
    if is_version {
        assert_eq!(out.exit_code, 0, "VERSION failed: {text}");
    }
    if out.stdout.is_empty() {
        assert_eq!(out.exit_code, 0);
        return;
    }
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "{text:?}"
    );
    let reply: Value = serde_json::from_str(text).expect("stdout is JSON");
    // The config's version, when it has one we speak.
    let sniffed = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().and_then(CniVersion::parse));
    if out.exit_code == 1 {
        let code = reply["code"].as_u64().expect("an error has a code");
        assert!(code != 0 && code != 999, "code {code}: {text}");
        assert!(
            !reply["msg"].as_str().unwrap_or_default().is_empty(),
            "{text}"
        );
        let version = sniffed.unwrap_or(CniVersion::LATEST);
        assert_eq!(
            reply["cniVersion"].as_str(),
            Some(version.as_str()),
            "{text}"
        );
        return;
    }
    if is_version {
        assert!(reply["supportedVersions"].is_array(), "{text}");
        return;
    }
    // A successful ADD: the handler's result, in the config's version.
    let added = fake.added.expect("output without an ADD");
    let conf = NetConf::parse(stdin).expect("ADD succeeded on a config that does not parse");
    assert_eq!(
        reply["cniVersion"].as_str(),
        Some(conf.cni_version.as_str())
    );
    assert_eq!(reply, added.to_value(conf.cni_version));
    let (_, read) = CniResult::from_value(&reply, "result", conf.cni_version)
        .expect("our own result reads back");
    assert_eq!(read.to_value(conf.cni_version), reply);
});
