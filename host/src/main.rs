//! The `weft` command: parse the command line, set up logging, load the configuration, run.

use std::process::ExitCode;

use clap::Parser;
use weft::cli::commands::{Cli, Command, execute};
use weft::config::Config;
use weft::ops::telemetry;

/// jemalloc, not glibc's allocator: each event's allocations are made by the fetch loop and freed
/// by a lane on another thread, and glibc takes the allocating thread's arena lock for each such
/// free; at 45,000 events/s that contention was a fifth of Weft's CPU (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` reads its configuration first: it may ask for span export.
    let config = match &cli.command {
        Command::Run { config } => match Config::load(config) {
            Ok(config) => Some(config),
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let format = cli.log_format;
    let settings = config.as_ref().map(|c| c.telemetry.clone()).unwrap_or_default();
    let telemetry = match tokio::task::spawn_blocking(move || telemetry::init(format, &settings)).await {
        Ok(Ok(telemetry)) => telemetry,
        Ok(Err(error)) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("error: setting up logging: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match execute(cli.command, config, shutdown_signal()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
