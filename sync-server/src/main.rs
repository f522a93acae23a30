//! `curbside-server`: parse flags, start logging, serve until SIGINT/SIGTERM; or manage devices.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use curbside_server::{
    serve, shutdown_signal, ApiKeyCommand, AppState, Command, Config, DeviceCommand,
};

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
    let mut config = Config::parse();
    if let Err(e) = config.read_admin_key() {
        eprintln!("curbside-server: {e}");
        return ExitCode::FAILURE;
    }
    let state = match AppState::load(&config) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("curbside-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &config.command {
        None | Some(Command::Serve) => run(&config, state).await,
        // Storage calls block: off the executor.
        Some(Command::Device(command)) => {
            let command = command.clone();
            tokio::task::spawn_blocking(move || {
                curbside_server::storage::off_executor(|| devices(&state, &command))
            })
            .await
            .unwrap_or(ExitCode::FAILURE)
        }
        Some(Command::ApiKey(command)) => {
            let command = command.clone();
            tokio::task::spawn_blocking(move || {
                curbside_server::storage::off_executor(|| api_keys(&state, &command))
            })
            .await
            .unwrap_or(ExitCode::FAILURE)
        }
    }
}

fn api_keys(state: &AppState, command: &ApiKeyCommand) -> ExitCode {
    let result = match command {
        ApiKeyCommand::Create { label } => curbside_server::open311::create_api_key(state, label)
            .map(|(key_id, key)| {
                // The key goes to stdout once, for the operator to hand over; the id names it.
                println!("{}", serde_json::json!({"key_id": key_id, "api_key": key}));
            }),
        ApiKeyCommand::List => state.storage.api_keys().map(|all| {
            for k in all {
                println!("{}", serde_json::to_string(&k).unwrap_or_default());
            }
        }),
        ApiKeyCommand::Revoke { key_id } => state
            .storage
            .revoke_api_key(key_id, state.clock.now_ms())
            .map(|found| {
                if found {
                    println!("revoked {key_id}");
                } else {
                    eprintln!("curbside-server: no api key {key_id}");
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curbside-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &Config, state: Arc<AppState>) -> ExitCode {
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
        inspectors = state.admin_key.is_some(),
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

fn devices(state: &AppState, command: &DeviceCommand) -> ExitCode {
    let result = match command {
        DeviceCommand::List => state.storage.devices().map(|all| {
            for d in all {
                println!("{}", serde_json::to_string(&d).unwrap_or_default());
            }
        }),
        DeviceCommand::Revoke { device_id } => state
            .storage
            .revoke_device(device_id, state.clock.now_ms())
            .map(|found| {
                if found {
                    println!("revoked {device_id}");
                } else {
                    eprintln!("curbside-server: no device {device_id}");
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curbside-server: {e}");
            ExitCode::FAILURE
        }
    }
}
