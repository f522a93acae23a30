//! Curbside's server. It keeps its state in an embedded SQLite file in its data directory,
//! speaks Open311 GeoReport v2 to any client, and the Curbside sync protocol (changes merged
//! with curbside-core's own code, resumable photo uploads) to Curbside apps.
//!
//! [`app`] builds the router (tests drive it in-process); [`serve`] runs it on a listener until
//! a shutdown signal, finishing requests in flight.

mod config;
mod db;
mod error;
mod media;
mod open311;
mod sync;

pub use sync::compact;

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use curbside_core::Catalog;
use tokio::net::TcpListener;

pub use config::Config;
pub use db::ServerDb;
pub use error::ServerError;

/// What every handler sees.
pub struct AppState {
    pub catalog: Catalog,
    /// Open311 `jurisdiction_id` this server answers for (e.g. `toronto.ca`).
    pub jurisdiction: String,
    pub db: ServerDb,
    pub admin_key: Option<String>,
    /// Ward boundaries, for numbering a new request's ward and inspectors' scope.
    pub wards: std::sync::OnceLock<curbside_core::Jurisdiction>,
    /// Where uploaded photos live (`media/` inside it).
    pub data_dir: std::path::PathBuf,
    pub retention_days: u32,
}

impl AppState {
    /// Opens the data directory, imports `config.catalog` if given, and loads the catalogue.
    pub fn load(config: &Config) -> Result<AppState, ServerError> {
        let db = ServerDb::open(&config.data_dir)?;
        if let Some(path) = &config.catalog {
            let bytes = std::fs::read(path)
                .map_err(|e| ServerError::Startup(format!("{}: {e}", path.display())))?;
            let catalog = Catalog::parse(&bytes)
                .map_err(|e| ServerError::Startup(format!("{}: {e}", path.display())))?;
            db.replace_catalog(&catalog)?;
        }
        Ok(AppState {
            catalog: db.catalog()?,
            jurisdiction: config.jurisdiction.clone(),
            db,
            admin_key: config.admin_key.clone().filter(|k| !k.is_empty()),
            wards: std::sync::OnceLock::new(),
            data_dir: config.data_dir.clone(),
            retention_days: config.retention_days,
        })
    }
}

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(open311::router())
        .merge(sync::router())
        .merge(media::router())
        .fallback(open311::not_found)
        // Sync bodies are JSON text: gzip both ways. Photos are JPEG already.
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(
            // The fastest level: most of the gain, a fraction of the CPU on large pulls.
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// One line per request: method, path, status, time. Never the query string or body, which
/// may carry a reporter's contact details.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Serves until `shutdown` completes, then lets requests in flight finish. Overwritten values
/// and removals past the retention are compacted at start and every six hours.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let compactor = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(6 * 3600));
        loop {
            every.tick().await;
            let s = compactor.clone();
            match tokio::task::spawn_blocking(move || compact(&s, s.retention_days)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(changes = n, "compacted"),
                Ok(Err(e)) => tracing::error!(error = %e, "compaction failed"),
                _ => {}
            }
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT: shutting down"),
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
