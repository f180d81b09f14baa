//! The connection check inside a cluster: the same probes and table as
//! `check_run`, made by the agents (`agent.rs`) instead of by entering each
//! pod's namespace. The pods are the agents' (found through the API like any
//! pod of the network, by a label selector), so the table says whether every
//! node's agent reaches every other node's on every rail.
//!
//! The check talks to each agent at one of the agent's rail addresses: it
//! runs in a pod attached to the network itself (the Job of
//! `deploy/kubernetes/check.yaml`), so it needs no cluster network and no
//! Service, only the rails it checks.

use std::net::IpAddr;
use std::time::Duration;

use crate::agent::{self, Reply, Request};
use crate::check::{self, Pod};
use crate::check_run::{blocking, CheckOptions, CheckOutcome, RailThroughput};
use crate::error::{CliError, Result};

/// Every agent probes its peers (all, or `opts.peers`) on every rail, the
/// agents in parallel; then one transfer per rail when asked.
pub async fn run(agents: &[Pod], opts: &CheckOptions, port: u16) -> Result<CheckOutcome> {
    if agents.len() < 2 {
        return Err(CliError::Usage(format!(
            "network {:?} has {} attached check agent(s); the check needs at least 2 \
             (is the check-agent DaemonSet running, and is its namespace in the network's \
             namespaces?)",
            opts.network,
            agents.len()
        )));
    }
    let probes = check::probes(agents, opts.peers);
    let (agents_owned, probes_owned) = (agents.to_vec(), probes.clone());
    let results = blocking("the probes", move || {
        probe(&agents_owned, &probes_owned, port)
    })
    .await?;
    let report = check::report(&opts.network, agents, &probes, &results);
    let throughput = if opts.throughput {
        let agents = agents.to_vec();
        blocking("the throughput probe", move || transfer(&agents, port)).await?
    } else {
        Vec::new()
    };
    Ok(CheckOutcome {
        report,
        paths_checked: None,
        path_problems: Vec::new(),
        throughput,
    })
}

/// The probes grouped by the agent that makes them: one request per agent,
/// all agents at once. An agent that cannot be asked fails all its probes.
fn probe(agents: &[Pod], probes: &[check::Probe], port: u16) -> Vec<bool> {
    let mut results = vec![false; probes.len()];
    let mut by_agent: Vec<Vec<usize>> = vec![Vec::new(); agents.len()];
    for (i, p) in probes.iter().enumerate() {
        by_agent[p.from].push(i);
    }
    let answers: Vec<Vec<bool>> = std::thread::scope(|s| {
        let handles: Vec<_> = by_agent
            .iter()
            .enumerate()
            .map(|(from, mine)| {
                s.spawn(move || {
                    let targets: Vec<IpAddr> = mine.iter().map(|&i| probes[i].dst).collect();
                    // One second per probe the agent runs at once, and some slack.
                    let timeout = Duration::from_secs(5 + targets.len() as u64 / 8);
                    let request = Request::Probe { targets, port };
                    match ask_agent(&agents[from], port, &request, timeout) {
                        Ok(Reply::Probed { reached }) if reached.len() == mine.len() => reached,
                        outcome => {
                            eprintln!("agent {}: {outcome:?}", agents[from].name);
                            vec![false; mine.len()]
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (mine, reached) in by_agent.iter().zip(answers) {
        for (&i, ok) in mine.iter().zip(reached) {
            results[i] = ok;
        }
    }
    results
}

/// One transfer per rail, one after the other (they would share the path).
fn transfer(agents: &[Pod], port: u16) -> Vec<RailThroughput> {
    check::transfers(agents)
        .into_iter()
        .map(|t| {
            let request = Request::Send { dst: t.dst, port };
            let result = match ask_agent(&agents[t.from], port, &request, Duration::from_secs(10)) {
                Ok(Reply::Sent {
                    mbit_per_s: Some(rate),
                    ..
                }) => Ok(rate),
                Ok(Reply::Sent { error, .. }) => Err(error.unwrap_or_default()),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e),
            };
            RailThroughput::of(t, agents, result)
        })
        .collect()
}

/// `request` to the agent of `pod`, at the first of its addresses that answers.
fn ask_agent(pod: &Pod, port: u16, request: &Request, timeout: Duration) -> Result<Reply, String> {
    let mut last = format!("{} has no address", pod.name);
    for addr in pod.addresses.values().flatten() {
        match agent::ask(*addr, port, request, timeout) {
            Ok(reply) => return Ok(reply),
            Err(e) => last = e,
        }
    }
    Err(last)
}
