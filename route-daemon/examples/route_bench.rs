//! needs root: creates a network namespace.
//!
//! Programs 10,000 /24 routes into one table of a fresh namespace, through
//! railyard's netlink path and through `ip -batch`, and prints the medians.
//! The design's bar: railyard within 2x of `ip -batch`.
//!
//!     cargo run --release -p railyard-route-daemon --example route_bench [-- ROUTES REPS]
//!
//! Also timed, for comparison: the same adds as rtnetlink requests awaited
//! 64 at a time (`buffer_unordered`), the obvious way with the rtnetlink crate.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::{StreamExt, TryStreamExt};
use railyard_core::{IfName, Route, RouteDiff};
use railyard_route_daemon::kernel::netlink::new_route_message;
use railyard_route_daemon::kernel::netlink::NetlinkRoutes;
use railyard_route_daemon::kernel::RouteTable;
use railyard_route_daemon::{reconcile, Netlink};
use railyard_test_support::NamedNetns;

const TABLE: u32 = 4242;

fn routes(n: usize) -> Vec<Route> {
    let dev: IfName = "rail0".parse().expect("valid interface name");
    (0..n)
        .map(|i| Route {
            dst: format!("10.{}.{}.0/24", 128 + i / 256, i % 256)
                .parse()
                .expect("valid by construction"),
            gateway: format!("10.10.1.{}", 1 + i % 200)
                .parse()
                .expect("valid by construction"),
            dev,
            table: TABLE,
        })
        .collect()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// Empties the benchmark table between runs (a table never used yet is fine).
fn flush(ns: &NamedNetns) -> Result<()> {
    match ns.ip(&["route", "flush", "table", &TABLE.to_string()]) {
        Err(e) if !e.to_string().contains("does not exist") => Err(e.into()),
        _ => Ok(()),
    }
}

fn count(ns: &NamedNetns) -> Result<usize> {
    Ok(ns
        .ip(&["route", "show", "table", &TABLE.to_string()])?
        .lines()
        .count())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let reps: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(7);
    if n > 65_536 {
        bail!("at most 65536 routes (the /24s of 10.128.0.0/9)");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root: the benchmark creates a network namespace");
    }
    let ns = NamedNetns::create(&format!("ry-bench-{}", std::process::id()))?;
    ns.ip(&["link", "set", "lo", "up"])?;
    ns.ip(&[
        "link", "add", "rail0", "type", "veth", "peer", "name", "veth-r0",
    ])?;
    ns.ip(&["addr", "add", "10.10.0.5/16", "dev", "rail0"])?;
    ns.ip(&["link", "set", "veth-r0", "up"])?;
    ns.ip(&["link", "set", "rail0", "up"])?;

    let want = routes(n);
    let batch = tempfile::NamedTempFile::new()?;
    let text: String = want
        .iter()
        .map(|r| {
            format!(
                "route add {} via {} dev rail0 table {TABLE} proto 167\n",
                r.dst, r.gateway
            )
        })
        .collect();
    std::fs::write(batch.path(), text)?;
    let batch_path = batch.path().display().to_string();

    let (mut ours, mut full, mut naive, mut iproute) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        flush(&ns)?;
        let w = want.clone();
        ours.push(ns.run(move || async move {
            let k = NetlinkRoutes::new(Netlink::connect()?)?;
            let diff = RouteDiff {
                add: w,
                ..RouteDiff::default()
            };
            let start = Instant::now();
            let report = k.apply(&diff).await?;
            let took = start.elapsed();
            ensure!(
                report.added == n,
                "applied {} of {n}: {:?}",
                report.added,
                report.failures.first()
            );
            Ok::<_, anyhow::Error>(took)
        })??);
        ensure!(
            count(&ns)? == n,
            "kernel holds {} routes, not {n}",
            count(&ns)?
        );

        flush(&ns)?;
        let w = want.clone();
        full.push(ns.run(move || async move {
            let k = NetlinkRoutes::new(Netlink::connect()?)?;
            let report = reconcile(w.clone(), &[TABLE], &k).await?;
            ensure!(report.added == n, "reconciled {} of {n}", report.added);
            // Again: what every drift check costs once the table is right.
            let again = reconcile(w, &[TABLE], &k).await?;
            ensure!(
                again.changed() == 0,
                "second reconcile changed {}",
                again.changed()
            );
            Ok::<_, anyhow::Error>((report.elapsed, again.elapsed))
        })??);

        flush(&ns)?;
        let w = want.clone();
        naive.push(ns.run(move || async move { rtnetlink_buffered(w).await })??);
        ensure!(
            count(&ns)? == n,
            "kernel holds {} routes, not {n}",
            count(&ns)?
        );

        flush(&ns)?;
        let start = Instant::now();
        ns.ip(&["-batch", &batch_path])?;
        iproute.push(start.elapsed());
        ensure!(
            count(&ns)? == n,
            "kernel holds {} routes, not {n}",
            count(&ns)?
        );
    }

    let noop = median(full.iter().map(|f| f.1).collect());
    let full = median(full.iter().map(|f| f.0).collect());
    let (ours, naive, iproute) = (median(ours), median(naive), median(iproute));
    let ratio = |d: Duration| d.as_secs_f64() / iproute.as_secs_f64();
    println!("{n} routes, median of {reps} runs");
    println!(
        "  ip -batch                          {:>8.1} ms",
        iproute.as_secs_f64() * 1e3
    );
    println!(
        "  railyard apply (pipelined)         {:>8.1} ms  {:.2}x ip -batch",
        ours.as_secs_f64() * 1e3,
        ratio(ours)
    );
    println!(
        "  railyard reconcile (dump+diff+apply) {:>6.1} ms  {:.2}x ip -batch",
        full.as_secs_f64() * 1e3,
        ratio(full)
    );
    println!(
        "  railyard reconcile, nothing to do  {:>8.1} ms",
        noop.as_secs_f64() * 1e3
    );
    println!(
        "  rtnetlink, 64 in flight            {:>8.1} ms  {:.2}x ip -batch",
        naive.as_secs_f64() * 1e3,
        ratio(naive)
    );
    Ok(())
}

/// The straightforward way: one rtnetlink request per route, 64 awaited at once.
async fn rtnetlink_buffered(want: Vec<Route>) -> Result<Duration> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    let oif = handle
        .link()
        .get()
        .match_name("rail0")
        .execute()
        .try_next()
        .await?
        .context("rail0 missing")?
        .header
        .index;
    let start = Instant::now();
    futures::stream::iter(want)
        .map(|r| {
            let handle = handle.clone();
            async move {
                handle
                    .route()
                    .add(new_route_message(&r, oif))
                    .replace()
                    .execute()
                    .await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(start.elapsed())
}
