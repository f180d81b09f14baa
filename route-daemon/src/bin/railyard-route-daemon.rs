//! `railyard-route-daemon`: flags, logging and signals; the daemon is
//! `railyard_route_daemon::daemon`.

use std::process::ExitCode;

use clap::Parser;
use railyard_route_daemon::cli::{hostname, Args};
use railyard_route_daemon::daemon;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    railyard_telemetry::init_logging(args.log_json);
    let config = match args.config(hostname) {
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
    match daemon::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "route-daemon stopped");
            ExitCode::FAILURE
        }
    }
}
