//! The `railyard` command. Argument parsing and printing only; the work is in the
//! library so it can be tested without spawning processes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use railyard_planner::cli;
use railyard_planner::etcd_args::EtcdArgs;
use railyard_planner::offline::{self, TableChoice};

#[derive(Parser)]
#[command(
    name = "railyard",
    version,
    about = "Plan and inspect multi-NIC rail networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute the plan offline from a network file and a host inventory.
    Plan {
        /// MultiNicNetwork manifest(s), YAML or JSON; several documents allowed.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Hosts and their NICs (a list of {name, nics: [{name, addresses}]}).
        #[arg(long)]
        inventory: PathBuf,
        /// Print this host's desired routes instead of the plan.
        #[arg(long, value_name = "HOST")]
        routes: Option<String>,
        /// Route table: per-network (default), main, or a number.
        #[arg(long, default_value = "per-network")]
        table: TableChoice,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// Store network specs in etcd and wait for the planner's verdict.
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Accept a change that renumbers hosts holding pod addresses.
        #[arg(long)]
        force: bool,
        /// How long to wait for the planner to accept or refuse each network
        /// (e.g. 5s, 500ms); after it the network is reported as pending.
        #[arg(long, default_value = "5s", value_parser = railyard_planner::etcd_args::parse_duration)]
        wait: std::time::Duration,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Delete a network (its plan and status go with it). Refused while pods
    /// hold addresses in it, unless --force.
    Delete {
        #[arg(value_parser = ["network"])]
        kind: String,
        name: String,
        /// Delete even though pods hold addresses (their range stays reserved).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List networks, hosts, the plan, or the planner leader.
    Get {
        what: What,
        /// With `plan`: only this network.
        name: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Everything known of one host: NICs, blocks, expected routes, allocations.
    Describe {
        #[arg(value_parser = ["host"])]
        kind: String,
        name: String,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Connection check: every pod pings every other pod on every rail (pods and
    /// hosts are network namespaces, as in deploy/local). Exits non-zero on any failure.
    Check {
        /// The network to check.
        network: String,
        /// Probe only this many peers per pod (default: all).
        #[arg(long)]
        peers: Option<usize>,
        /// A pod's network namespace; {pod} and {host} are replaced.
        #[arg(long, default_value = "{pod}")]
        pod_netns: String,
        /// A host's network namespace; {host} is replaced.
        #[arg(long, default_value = "{host}")]
        host_netns: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// The hostBlock trade-off of a network: hosts versus pods per host per rail.
    Capacity {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum What {
    Networks,
    Hosts,
    Plan,
    Leader,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Json,
    Yaml,
    Table,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
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
                Some(host) => print(output, &offline::routes_output(&plans, &host, table)?, None),
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
            let opts = cli::ApplyOptions { force, wait };
            let mut say = |line: &str| println!("{line}");
            cli::apply(
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
                cli::delete_network(store.as_ref(), &name, force).await?
            );
            Ok(())
        }
        Command::Get {
            what,
            name,
            output,
            etcd,
        } => {
            let store = etcd.connect().await?;
            let store = store.as_ref();
            match what {
                What::Networks => {
                    let v = cli::networks(store).await?;
                    print(output, &v, Some(cli::networks_table(&v)))
                }
                What::Hosts => {
                    let v = cli::hosts(store).await?;
                    print(output, &v, Some(cli::hosts_table(&v)))
                }
                What::Plan => {
                    let plans = cli::plans(store, name.as_deref()).await?;
                    print(
                        output,
                        &cli::plan_view(&plans),
                        Some(cli::plan_table(&plans)),
                    )
                }
                What::Leader => {
                    let leader = railyard_planner::election::leader(store).await?;
                    let text = leader.clone().unwrap_or_else(|| "no leader".into()) + "\n";
                    print(output, &leader, Some(text))
                }
            }
        }
        Command::Describe { name, etcd, .. } => {
            let store = etcd.connect().await?;
            print!("{}", cli::describe_host(store.as_ref(), &name).await?);
            Ok(())
        }
        Command::Check {
            network,
            peers,
            pod_netns,
            host_netns,
            concurrency,
            output,
            etcd,
        } => {
            let store = etcd.connect().await?;
            let plans = cli::plans(store.as_ref(), Some(&network)).await?;
            let plan = plans
                .into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("network {network:?} has no plan"))?;
            let opts = railyard_planner::check_run::CheckOptions {
                network,
                peers,
                pod_netns,
                host_netns,
                concurrency,
                progress: true,
            };
            let outcome = railyard_planner::check_run::run(store.as_ref(), &plan, &opts).await?;
            let mut table = railyard_planner::check::render(&outcome.report);
            table.push_str(&format!("{} host paths checked", outcome.paths_checked));
            if outcome.path_problems.is_empty() {
                table.push_str(", all leave through the rail's NIC\n");
            } else {
                table.push('\n');
                for p in &outcome.path_problems {
                    table.push_str(&format!(
                        "PATH {} on {} -> {}: expected dev {}, got {}\n",
                        p.pod, p.host, p.dst, p.expected_dev, p.actual
                    ));
                }
            }
            print(output, &outcome, Some(table))?;
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
                let rows = cli::capacity(net);
                print(output, &rows, Some(cli::capacity_table(net, &rows)))?;
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
