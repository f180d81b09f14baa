//! One subcommand, run: read its inputs, call the library, print in the format
//! asked for. `main.rs` only sets up the runtime and the exit code.

use std::io::Write;

use railyard_core::keys;

use crate::args::{Cli, Command, Output, What};
use crate::{commands, offline};

/// Runs the parsed command line; an error is printed by `main` and exits 1.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan {
            file,
            inventory,
            routes,
            table,
            output,
        } => {
            let networks =
                offline::parse_networks(&file.display().to_string(), &offline::read(&file)?)?;
            let hosts = offline::parse_inventory(
                &inventory.display().to_string(),
                &offline::read(&inventory)?,
            )?;
            let plans = offline::plan_all(&networks, &hosts);
            match routes {
                Some(host) => print(
                    output,
                    &offline::routes_output(&plans, &networks, &hosts, &host, table)?,
                    None,
                ),
                None => print(output, &offline::plan_output(&plans), None),
            }
        }
        Command::Apply {
            file,
            force,
            wait,
            etcd,
        } => {
            let text = offline::read(&file)?;
            let store = etcd.connect().await?;
            let opts = commands::ApplyOptions { force, wait };
            let mut say = |line: &str| println!("{line}");
            commands::apply(
                store.as_ref(),
                &file.display().to_string(),
                &text,
                &opts,
                &mut say,
            )
            .await?;
            Ok(())
        }
        Command::Delete {
            name, force, etcd, ..
        } => {
            let store = etcd.connect().await?;
            println!(
                "{}",
                commands::delete_network(store.as_ref(), &name, force).await?
            );
            Ok(())
        }
        Command::Get {
            what,
            name,
            network,
            host,
            pod,
            output,
            etcd,
        } => {
            let filter = crate::allocations::Filter { network, host, pod };
            if !matches!(what, What::Allocations) && filter != Default::default() {
                anyhow::bail!("--network, --host and --pod go with `get allocations`");
            }
            let store = etcd.connect().await?;
            let store = store.as_ref();
            match what {
                What::Allocations => {
                    let read = crate::allocations::load(store, filter.network.as_deref()).await?;
                    let rows = crate::allocations::rows(&read.records, &filter);
                    for (key, why) in &read.unreadable {
                        eprintln!("railyard: unreadable allocation record {key}: {why}");
                    }
                    let table = crate::allocations::table(&rows, &[]);
                    print(output, &rows, Some(table))
                }
                What::Networks => {
                    let v = commands::networks(store).await?;
                    print(output, &v, Some(commands::networks_table(&v)))
                }
                What::Hosts => {
                    let v = commands::hosts(store).await?;
                    print(output, &v, Some(commands::hosts_table(&v)))
                }
                What::Plan => {
                    let plans = commands::plans(store, name.as_deref()).await?;
                    print(
                        output,
                        &commands::plan_view(&plans),
                        Some(commands::plan_table(&plans)),
                    )
                }
                What::Leader => {
                    let leader = railyard_store::election::leader(store, keys::ELECTION).await?;
                    let text = leader.clone().unwrap_or_else(|| "no leader".into()) + "\n";
                    print(output, &leader, Some(text))
                }
            }
        }
        Command::Who {
            address,
            output,
            etcd,
        } => {
            let store = etcd.connect().await?;
            let read = crate::allocations::load(store.as_ref(), None).await?;
            for (key, why) in &read.unreadable {
                eprintln!("railyard: unreadable allocation record {key}: {why}");
            }
            let plans = commands::plans(store.as_ref(), None).await?;
            let who = crate::allocations::who(address, &read.records, &plans);
            print(output, &who, Some(who.render()))
        }
        Command::Describe { name, etcd, .. } => {
            let store = etcd.connect().await?;
            print!("{}", commands::describe_host(store.as_ref(), &name).await?);
            Ok(())
        }
        Command::CheckAgent { port } => {
            let listener = std::net::TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
                .or_else(|_| std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)))
                .map_err(|e| anyhow::anyhow!("check-agent: listen on port {port}: {e}"))?;
            eprintln!("railyard check-agent: serving on port {port}");
            tokio::task::spawn_blocking(move || crate::agent::serve(listener)).await??;
            Ok(())
        }
        Command::Check {
            network,
            peers,
            pod_netns,
            host_netns,
            concurrency,
            kubernetes,
            namespace,
            agents,
            agent_port,
            throughput,
            output,
            etcd,
        } => {
            // In the cluster (agents), the rails come from the API's CIDR
            // view: the check's pod holds no etcd credentials.
            let store = match agents {
                Some(_) => None,
                None => Some(etcd.connect().await?),
            };
            let plan = match &store {
                None => crate::check_k8s::rails_from_api(&network).await?,
                Some(store) => commands::plans(store.as_ref(), Some(&network))
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("network {network:?} has no plan"))?,
            };
            let opts = crate::check_run::CheckOptions {
                network,
                peers,
                pod_netns,
                host_netns,
                concurrency,
                progress: true,
                throughput,
            };
            let outcome = if kubernetes {
                let pods = crate::check_k8s::pods_from_api(
                    &plan,
                    &opts.network,
                    namespace.as_deref(),
                    agents.as_deref(),
                )
                .await?;
                match agents {
                    Some(_) => crate::check_agents::run(&pods, &opts, agent_port).await?,
                    None => crate::check_run::run_pods(&plan, &pods, &opts).await?,
                }
            } else {
                let store = store.ok_or_else(|| anyhow::anyhow!("no etcd connection"))?;
                crate::check_run::run(store.as_ref(), &plan, &opts).await?
            };
            print(output, &outcome, Some(outcome.render()))?;
            if outcome.ok() {
                Ok(())
            } else {
                anyhow::bail!("connection check failed")
            }
        }
        Command::Capacity { file, output } => {
            let networks =
                offline::parse_networks(&file.display().to_string(), &offline::read(&file)?)?;
            for net in &networks {
                let rows = commands::capacity(net);
                print(output, &rows, Some(commands::capacity_table(net, &rows)))?;
            }
            Ok(())
        }
    }
}

/// Prints `value` as JSON or YAML, or `table` for the table format (JSON when a
/// command has no table form).
fn print<T: serde::Serialize>(
    output: Output,
    value: &T,
    table: Option<String>,
) -> anyhow::Result<()> {
    let text = match (output, table) {
        (Output::Table, Some(t)) => t,
        (Output::Yaml, _) => serde_yaml::to_string(value)?,
        _ => serde_json::to_string_pretty(value)? + "\n",
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
