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
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop.send(true);
    });
    match daemon::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "route-daemon stopped");
            ExitCode::FAILURE
        }
    }
}
