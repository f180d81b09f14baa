//! `railyard-ipam-bench`: railyard's IPAM, host-local and Whereabouts side by
//! side, each called the way a runtime calls it (a process per CNI call), at
//! 1, 8 and 64 concurrent runtimes, with one address per pod and with one per
//! rail. Prints a Markdown table and writes it with SVG plots into --out.
//!
//! ```sh
//! make deps && make cni-plugins
//! cargo build --release -p railyard-e2e --bin railyard-kube
//! cargo build --release -p railyard-benches --bin railyard-ipam-bench
//! target/release/railyard-ipam-bench --pods 100 --multi-pods 16 --out docs/benchmarks
//! ```
//!
//! Flags only; the work is in `railyard_benches::peers`. `serve-daemon DIR` is
//! the railyard daemon process the run starts (not for people).

use std::path::PathBuf;
use std::process::ExitCode;

use railyard_benches::peers::{railyard, report, run};

const USAGE: &str = "usage: railyard-ipam-bench [--pods N] [--multi-pods N] [--rails N] \
[--concurrency 1,8,64] [--peers railyard,host-local,whereabouts] [--work DIR] [--out DIR]";

fn main() -> ExitCode {
    match main_() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("railyard-ipam-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut opts = run::Options {
        pods: 100,
        multi_pods: 16,
        rails: 8,
        concurrency: vec![1, 8, 64],
        peers: ["railyard", "host-local", "whereabouts"]
            .map(String::from)
            .to_vec(),
        work: std::env::temp_dir().join(format!("railyard-ipam-bench-{}", std::process::id())),
        bench_bin: std::env::current_exe().map_err(|e| e.to_string())?,
    };
    let mut out = None;
    while let Some(a) = args.next() {
        if a == "serve-daemon" {
            let dir = args.next().ok_or("serve-daemon DIR")?;
            return railyard::serve_daemon(&PathBuf::from(dir));
        }
        let mut value = || args.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{a} {v}: {e}"));
        match a.as_str() {
            "--pods" => opts.pods = num(value()?)?,
            "--multi-pods" => opts.multi_pods = num(value()?)?,
            "--rails" => opts.rails = num(value()?)?,
            "--concurrency" => {
                opts.concurrency = value()?
                    .split(',')
                    .map(|c| c.parse().map_err(|e| format!("--concurrency {c}: {e}")))
                    .collect::<Result<_, String>>()?
            }
            "--peers" => opts.peers = value()?.split(',').map(String::from).collect(),
            "--work" => opts.work = PathBuf::from(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            _ => return Err(USAGE.into()),
        }
    }
    let _ = std::fs::remove_dir_all(&opts.work);
    let rounds = run::run(&opts, |r| {
        eprintln!(
            "{:>11} {} addr/pod x{:<2}: {} pods, {:.0} pods/s{}",
            r.ipam,
            r.rails,
            r.concurrency,
            r.pods,
            r.pods_per_sec(),
            if r.correct() { "" } else { "  INCORRECT" }
        )
    })?;
    println!("{}", report::table(&rounds));
    if let Some(dir) = out {
        for f in run::write(&rounds, &dir)? {
            eprintln!("wrote {}", f.display());
        }
    }
    let _ = std::fs::remove_dir_all(&opts.work);
    let wrong: Vec<String> = rounds
        .iter()
        .filter(|r| !r.correct())
        .map(|r| {
            format!(
                "{} {} addr/pod x{}:\n  {}",
                r.ipam,
                r.rails,
                r.concurrency,
                report::problems(r)
            )
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("incorrect rounds:\n{}", wrong.join("\n")))
    }
}
