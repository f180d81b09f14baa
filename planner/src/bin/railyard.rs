//! The `railyard` command. Argument parsing and printing only; the work is in the
//! library so it can be tested without spawning processes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
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
                Some(host) => print(output, &offline::routes_output(&plans, &host, table)?),
                None => print(output, &offline::plan_output(&plans)),
            }
        }
    }
}

fn print<T: serde::Serialize>(output: Output, value: &T) -> anyhow::Result<()> {
    let text = match output {
        Output::Json => serde_json::to_string_pretty(value)? + "\n",
        Output::Yaml => serde_yaml::to_string(value)?,
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
