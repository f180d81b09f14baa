//! One run: start what each IPAM needs, run its rounds interleaved with the
//! others' (same network, same address space, same runtimes), write the table
//! and the plots.

use std::path::{Path, PathBuf};

use super::kube::{Plane, Whereabouts};
use super::railyard::{Railyard, RAILS};
use super::{own_bin, report, round, svg, upstream_bin, HostLocal, Ipam, Netns, Round};

#[derive(Debug)]
pub struct Options {
    /// Pods per round of one address per pod.
    pub pods: usize,
    /// Pods per multi-rail round (0: no multi-rail round).
    pub multi_pods: usize,
    /// Addresses per pod in the multi-rail round (at most 8).
    pub rails: usize,
    pub concurrency: Vec<usize>,
    /// Which IPAMs: railyard, host-local, whereabouts.
    pub peers: Vec<String>,
    /// Scratch directory (daemon log, host-local's files, the control plane).
    pub work: PathBuf,
    /// This benchmark's binary (it also serves as railyard's daemon process).
    pub bench_bin: PathBuf,
}

/// Runs every round. Fails, naming what is missing, if an IPAM cannot start.
pub fn run(opts: &Options, mut progress: impl FnMut(&Round)) -> Result<Vec<Round>, String> {
    if opts.rails == 0 || opts.rails > RAILS {
        return Err(format!("--rails must be 1..={RAILS}"));
    }
    let netns = Netns::new()?;
    let wants = |p: &str| opts.peers.iter().any(|x| x == p);
    let railyard = match wants("railyard") {
        true => Some(Railyard::start(
            &opts.bench_bin,
            own_bin("railyard-ipam")?,
            &opts.work.join("railyard"),
        )?),
        false => None,
    };
    let host_local = match wants("host-local") {
        true => Some(HostLocal {
            bin: upstream_bin("host-local")?,
            data_dir: opts.work.join("host-local"),
        }),
        false => None,
    };
    let plane = match wants("whereabouts") {
        true => {
            upstream_bin("whereabouts")?;
            Some(Plane::up(
                own_bin("railyard-kube")?,
                upstream_bin("kubectl")?,
                &opts.work.join("kube"),
            )?)
        }
        false => None,
    };
    let whereabouts = match &plane {
        Some(plane) => Some(Whereabouts::new(
            upstream_bin("whereabouts")?,
            plane,
            &opts.work,
        )?),
        None => None,
    };
    let mut ipams: Vec<&dyn Ipam> = vec![];
    if let Some(i) = &railyard {
        ipams.push(i);
    }
    if let Some(i) = &host_local {
        ipams.push(i);
    }
    if let Some(i) = &whereabouts {
        ipams.push(i);
    }
    let mut shapes = vec![(1, opts.pods)];
    if opts.multi_pods > 0 && opts.rails > 1 {
        shapes.push((opts.rails, opts.multi_pods));
    }
    let mut rounds = vec![];
    for &(rails, pods) in &shapes {
        for &c in &opts.concurrency {
            for ipam in &ipams {
                let r = round(*ipam, &netns, rails, c, pods, "b");
                progress(&r);
                rounds.push(r);
            }
        }
    }
    Ok(rounds)
}

/// Writes `ipam-table.md` and the plots into `dir`; returns the files written.
pub fn write(rounds: &[Round], dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = vec![(dir.join("ipam-table.md"), report::table(rounds))];
    let mut rails: Vec<usize> = rounds.iter().map(|r| r.rails).collect();
    rails.dedup();
    for n in rails {
        let of: Vec<&Round> = rounds.iter().filter(|r| r.rails == n).collect();
        for (op, pick) in [("add", 0), ("del", 1)] {
            let series: Vec<svg::Series> = of
                .iter()
                .map(|r| svg::Series {
                    label: format!("{} x{}", r.ipam, r.concurrency),
                    color: svg::color(&r.ipam),
                    dash: svg::dash(r.concurrency),
                    points: svg::cdf(if pick == 0 { &r.add } else { &r.del }),
                })
                .collect();
            let title = format!(
                "{} latency per pod, {n} address{} per pod",
                op.to_uppercase(),
                if n == 1 { "" } else { "es" }
            );
            files.push((
                dir.join(format!("ipam-{op}-latency-{n}rail.svg")),
                svg::chart(&title, "ms (log)", "fraction of pods", false, &series),
            ));
        }
        let mut names: Vec<&str> = of.iter().map(|r| r.ipam.as_str()).collect();
        names.dedup();
        names.sort();
        names.dedup();
        let series: Vec<svg::Series> = names
            .iter()
            .map(|name| svg::Series {
                label: name.to_string(),
                color: svg::color(name),
                dash: "",
                points: of
                    .iter()
                    .filter(|r| r.ipam == *name)
                    .map(|r| (r.concurrency as f64, r.pods_per_sec()))
                    .collect(),
            })
            .collect();
        files.push((
            dir.join(format!("ipam-throughput-{n}rail.svg")),
            svg::chart(
                &format!("pods ADDed per second, {n} address(es) per pod"),
                "concurrent runtimes (log)",
                "pods/s (log)",
                true,
                &series,
            ),
        ));
    }
    for (path, text) in &files {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}
