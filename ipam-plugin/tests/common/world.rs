//! One meta-plugin test's world: a host netns with two rail NICs (or
//! none, for tests that stop before any interface is made), the stand-in
//! daemon, a CNI_PATH and a state dir of its own.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::daemon::TestDaemon;
use super::netns::{require_root, two_rail_host, Netns};
use super::{attach_env, exec, meta_bin, plain_env, CniPath, Outcome};

/// One test's world: host netns, stand-in daemon, CNI_PATH, state dir.
pub struct World {
    pub host: Option<Netns>,
    pub daemon: TestDaemon,
    pub cni_path: CniPath,
    pub state: tempfile::TempDir,
}

impl World {
    pub fn with_host(daemon: TestDaemon) -> World {
        require_root();
        World {
            host: Some(two_rail_host()),
            ..World::without_host(daemon)
        }
    }

    pub fn without_host(daemon: TestDaemon) -> World {
        World {
            host: None,
            daemon,
            cni_path: CniPath::new(),
            state: tempfile::tempdir().expect("state dir"),
        }
    }

    pub fn conf(&self, version: &str, delegate: Value) -> Value {
        json!({
            "cniVersion": version,
            "name": "rdma",
            "type": "railyard-cni",
            "ipam": {"type": "railyard-ipam", "socket": self.daemon.socket},
            "delegate": delegate,
            "stateDir": self.state.path(),
        })
    }

    pub fn state_file(&self, container: &str) -> PathBuf {
        self.state.path().join(format!("{container}@net1.json"))
    }

    pub fn run(&self, command: &str, container: &str, pod: &str, conf: &Value) -> Outcome {
        let env = attach_env(command, container, "net1", pod, &self.cni_path.value());
        self.exec(&env, conf)
    }

    pub fn run_plain(&self, command: &str, conf: &Value) -> Outcome {
        self.exec(&plain_env(command, &self.cni_path.value()), conf)
    }

    pub fn exec(&self, env: &[(&str, String)], conf: &Value) -> Outcome {
        let netns = self.host.as_ref().map(|h| h.name());
        exec(&meta_bin(), env, conf.to_string().as_bytes(), netns)
    }

    pub fn with_prev(conf: &Value, prev: &Value) -> Value {
        let mut c = conf.clone();
        c["prevResult"] = prev.clone();
        c
    }
}
