//! `railyard-bird-guard`: flags, logging and signals; the guard is
//! `railyard_route_daemon::bgp::guard`.

use std::process::ExitCode;

use clap::Parser;
use railyard_route_daemon::bgp::guard::run::{run, GuardArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = GuardArgs::parse();
    railyard_telemetry::init_logging(args.log_json);
    let started = args.config().map_err(|e| e.to_string()).and_then(|config| {
        railyard_telemetry::shutdown_on_signals()
            .map(|shutdown| (config, shutdown))
            .map_err(|e| format!("cannot handle SIGTERM/SIGINT: {e}"))
    });
    let result = match started {
        Ok((config, shutdown)) => run(config, shutdown).await,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "BIRD guard stopped");
            ExitCode::FAILURE
        }
    }
}
