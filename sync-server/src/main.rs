//! `curbside-server`: parse flags, start logging, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use curbside_server::{serve, shutdown_signal, AppState, Config};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CURBSIDE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::parse();
    let state = match AppState::load(&config) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("curbside-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("curbside-server: cannot listen on {}: {e}", config.addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        %addr,
        data_dir = %config.data_dir.display(),
        services = state.catalog.services.len(),
        "listening"
    );
    match serve(listener, state, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("curbside-server: {e}");
            ExitCode::FAILURE
        }
    }
}
