//! The CRDs of deploy/kubernetes/crds on a real API server: they install and are
//! served, and their schema and CEL rules refuse invalid MultiNicNetworks at
//! admission with a message naming the field. (planner's `k8s_crds` evaluates the
//! same rules client-side with kube-cel; this is the apiserver's own verdict,
//! including its CEL cost estimate, which refuses a CRD outright.)

use railyard_e2e::kube::identity;

use crate::common::{env, IPAM};

const CRDS: [&str; 5] = [
    "multinicnetworks.railyard.dev",
    "hostinterfaces.railyard.dev",
    "cidrs.railyard.dev",
    "ipallocations.railyard.dev",
    "deviceclasses.railyard.dev",
];

#[test]
fn crds_apply_and_are_served() {
    let env = env();
    // Applied once by the control plane's start; a second apply must be a no-op
    // the server accepts (no field the server rewrites, nothing it refuses).
    let dir = identity::manifests_dir().join("crds");
    let out = env
        .kubectl
        .run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            &format!("-f={}", dir.display()),
        ])
        .expect("the CRDs apply");
    for crd in CRDS {
        assert!(out.contains(crd), "{crd} not applied: {out}");
        let obj = env.get("crd", crd, None).expect("CRD exists");
        let established = crate::common::condition(&obj, "Established");
        assert_eq!(
            established.as_ref().map(|c| c.0.as_str()),
            Some("True"),
            "{crd}: {established:?}"
        );
        let names = crate::common::condition(&obj, "NamesAccepted");
        assert_eq!(names.map(|c| c.0), Some("True".into()), "{crd}");
    }
    let resources = env
        .kubectl
        .run(&["api-resources", "--api-group=railyard.dev", "-o", "wide"])
        .expect("api-resources");
    for short in ["mnn", "hif", "devclass"] {
        assert!(
            resources.contains(short),
            "short name {short} not served:\n{resources}"
        );
    }
    // The category and the short name reach railyard's DeviceClass, not DRA's.
    env.kubectl
        .run(&["get", "railyard"])
        .expect("kubectl get railyard");
    env.kubectl
        .run(&["get", "devclass"])
        .expect("kubectl get devclass");
}

/// An invalid network, what the error must name, and the value that makes it invalid.
struct Invalid {
    name: &'static str,
    spec: String,
    expect: &'static [&'static str],
}

fn spec(subnet: &str, plugin: &str, policy: &str, extra: &str) -> String {
    format!(
        "  subnet: \"{subnet}\"\n  ipam: '{IPAM}'\n  plugin:\n{plugin}  attachPolicy:\n{policy}{extra}"
    )
}

const IPVLAN: &str = "    type: ipvlan\n    args:\n      mode: l3\n";
const NONE: &str = "    strategy: none\n";

#[test]
fn cel_and_schema_refuse_invalid_networks_naming_the_field() {
    let env = env();
    let cases = [
        Invalid {
            name: "cel-subnet",
            spec: spec("192.168.0.0/33", IPVLAN, NONE, ""),
            expect: &["spec.subnet", "must be a CIDR"],
        },
        Invalid {
            name: "cel-subnet-three",
            spec: spec("10.0.0.0/16,fd00::/48,10.1.0.0/16", IPVLAN, NONE, ""),
            expect: &["spec.subnet", "separated by a comma"],
        },
        Invalid {
            name: "cel-masternets",
            spec: spec(
                "10.20.0.0/16",
                IPVLAN,
                NONE,
                "  masterNets:\n  - 10.0.0.1\n",
            ),
            expect: &["spec.masterNets", "every entry must be a CIDR"],
        },
        Invalid {
            name: "cel-ipvlan-mode",
            spec: spec(
                "10.21.0.0/16",
                "    type: ipvlan\n    args:\n      mode: l4\n",
                NONE,
                "",
            ),
            expect: &["spec.plugin", "ipvlan mode must be l2, l3 or l3s"],
        },
        Invalid {
            name: "cel-macvlan-mode",
            spec: spec(
                "10.22.0.0/16",
                "    type: macvlan\n    args:\n      mode: l3\n",
                NONE,
                "",
            ),
            expect: &["spec.plugin", "macvlan mode must be"],
        },
        Invalid {
            name: "cel-devclass",
            spec: spec("10.23.0.0/16", IPVLAN, "    strategy: devClass\n", ""),
            expect: &["spec.attachPolicy", "target names the DeviceClass"],
        },
        Invalid {
            name: "enum-strategy",
            spec: spec("10.24.0.0/16", IPVLAN, "    strategy: fastest\n", ""),
            expect: &["spec.attachPolicy.strategy", "Unsupported value", "fastest"],
        },
        Invalid {
            name: "enum-plugin",
            spec: spec("10.25.0.0/16", "    type: bridge\n", NONE, ""),
            expect: &["spec.plugin.type", "Unsupported value", "bridge"],
        },
        Invalid {
            name: "pattern-namespace",
            spec: spec("10.26.0.0/16", IPVLAN, NONE, "  namespaces:\n  - Team_A\n"),
            expect: &["spec.namespaces[0]", "Team_A"],
        },
        Invalid {
            name: "dotted.name",
            spec: spec("10.27.0.0/16", IPVLAN, NONE, ""),
            expect: &["metadata.name must be a DNS label"],
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let yaml = format!(
            "apiVersion: railyard.dev/v1\nkind: MultiNicNetwork\nmetadata:\n  name: {}\nspec:\n{}",
            case.name, case.spec
        );
        let answer = env
            .kubectl
            .attempt(&["create", "-f", "-"], Some(&yaml))
            .expect("kubectl runs");
        if answer.ok {
            failures.push(format!("{}: accepted:\n{yaml}", case.name));
            continue;
        }
        let missing: Vec<_> = case
            .expect
            .iter()
            .filter(|e| !answer.stderr.contains(*e))
            .collect();
        if !answer.stderr.contains("is invalid") || !missing.is_empty() {
            failures.push(format!(
                "{}: refused without naming {missing:?}: {}",
                case.name, answer.stderr
            ));
        }
        assert!(
            env.get("mnn", case.name, None).is_none(),
            "{}: an object exists after the refusal",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
