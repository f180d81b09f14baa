//! `railyard-bird-guard`: flags, logging and signals; the guard is
//! `railyard_route_daemon::bgp::guard`.

use std::process::ExitCode;

use clap::Parser;
use railyard_route_daemon::bgp::guard::run::{run, GuardArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = GuardArgs::parse();
    railyard_telemetry::init_logging(args.log_json);
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = match railyard_telemetry::shutdown_on_signals() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("error: cannot handle SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "BIRD guard stopped");
            ExitCode::FAILURE
        }
    }
}
