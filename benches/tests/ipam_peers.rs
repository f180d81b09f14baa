//! The IPAM peers harness as a smoke test (issue 20): 20 pods at 1 and 8
//! runtimes, one address per pod and one per rail (4 rails), through
//! railyard, host-local and Whereabouts, each called as a runtime calls it.
//! Correctness only: no address handed out twice, every call answered, and
//! nothing left in any IPAM's own store after DEL. Timings are not asserted
//! (a shared CI machine cannot promise them); `railyard-ipam-bench` measures.
//!
//! Needs root (the pod namespace), `make deps` (host-local, Whereabouts,
//! kubectl, the control plane's binaries) and `cargo build --bins` for
//! `railyard-ipam` and `railyard-kube`; it fails naming what is missing.

use std::path::PathBuf;

use railyard_benches::peers::{report, run};

#[test]
fn every_ipam_hands_out_each_address_once_and_frees_all() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "ipam_peers needs root: the pods' network namespace"
    );
    let work = std::env::temp_dir().join(format!("railyard-ipam-peers-{}", std::process::id()));
    let opts = run::Options {
        pods: 20,
        multi_pods: 5,
        rails: 4,
        concurrency: vec![1, 8],
        peers: ["railyard", "host-local", "whereabouts"]
            .map(String::from)
            .to_vec(),
        work: work.clone(),
        bench_bin: PathBuf::from(env!("CARGO_BIN_EXE_railyard-ipam-bench")),
    };
    let result = run::run(&opts, |_| {});
    let _ = std::fs::remove_dir_all(&work);
    let rounds = result.unwrap_or_else(|e| panic!("the IPAMs could not be run: {e}"));
    println!("{}", report::table(&rounds));
    assert_eq!(
        rounds.len(),
        3 * 2 * 2,
        "3 IPAMs x 2 shapes x 2 concurrencies"
    );
    for r in &rounds {
        assert!(
            r.correct(),
            "{} ({} addresses per pod, {} runtimes):\n  {}",
            r.ipam,
            r.rails,
            r.concurrency,
            report::problems(r)
        );
        assert_eq!(
            r.addresses,
            r.pods * r.rails,
            "{}: addresses handed out",
            r.ipam
        );
    }
}
