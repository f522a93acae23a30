//! Curbside's server. It speaks Open311 GeoReport v2 to any client, and the Curbside sync
//! protocol (changes merged with curbside-core's own code, resumable photo uploads) to Curbside
//! apps, over a storage boundary ([`storage::Storage`]; SQLite embedded by default).
//!
//! Handlers parse and check; [`auth`] says who is calling; [`scope`] is the one rule of who may
//! change and see what; storage is the only place with SQL. [`app`] builds the router (tests
//! drive it in-process); [`serve`] runs it on a listener until a shutdown signal.

pub mod auth;
mod config;
pub mod cursor;
mod error;
pub mod media;
mod open311;
pub mod scope;
pub mod storage;
pub mod sync;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use curbside_core::sync::protocol::PAGE;
use curbside_core::sync::Hlc;
use curbside_core::vocab::{Clock, Entropy, OsEntropy, SystemClock};
use curbside_core::Catalog;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::ServerError;
pub use open311::Format;

use storage::sqlite::SqliteStorage;
use storage::Storage;

/// What every handler sees.
pub struct AppState {
    pub catalog: Catalog,
    /// Open311 `jurisdiction_id` this server answers for (e.g. `toronto.ca`).
    pub jurisdiction: String,
    pub storage: Arc<dyn Storage>,
    /// The server's clock: every stamp check, offset and retention reads it.
    pub clock: Arc<dyn Clock>,
    /// Randomness for the ids it makes (device ids); tokens always come from the OS.
    pub entropy: Arc<dyn Entropy>,
    pub admin_key: Option<String>,
    /// Where uploaded photos live (`media/` inside it).
    pub data_dir: PathBuf,
    pub retention_days: u32,
    /// Changes one pull page carries at most ([`PAGE`] unless a test pages finer).
    pub page: usize,
}

impl AppState {
    /// Opens the data directory on the system clock and the OS's randomness.
    pub fn load(config: &Config) -> Result<AppState, ServerError> {
        AppState::load_with(config, Arc::new(SystemClock), Arc::new(OsEntropy))
    }

    /// Opens the data directory, imports `config.catalog` if given, and loads the catalogue.
    pub fn load_with(
        config: &Config,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<AppState, ServerError> {
        let storage = SqliteStorage::open(&config.data_dir, clock.now_ms(), &*entropy)?;
        if let Some(path) = &config.catalog {
            let bytes = std::fs::read(path)
                .map_err(|e| ServerError::Startup(format!("{}: {e}", path.display())))?;
            let catalog = Catalog::parse(&bytes)
                .map_err(|e| ServerError::Startup(format!("{}: {e}", path.display())))?;
            storage.replace_catalog(&catalog, clock.now_ms())?;
        }
        Ok(AppState {
            catalog: storage.catalog()?,
            jurisdiction: config.jurisdiction.clone(),
            storage: Arc::new(storage),
            clock,
            entropy,
            admin_key: config.admin_key.clone().filter(|k| !k.is_empty()),
            data_dir: config.data_dir.clone(),
            retention_days: config.retention_days,
            page: PAGE,
        })
    }
}

/// Runs `f` with the state on the blocking pool: storage and files never block the executor.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|e| ServerError::Internal(format!("worker: {e}")))?
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

/// The oldest time the server keeps history from: changes stamped earlier are refused, and
/// what arrived earlier may be compacted.
pub fn retention_horizon_ms(now_ms: i64, retention_days: u32) -> i64 {
    now_ms
        .saturating_sub(i64::from(retention_days) * 86_400_000)
        .max(0)
}

/// Drops overwritten values and removals both stamped and received before the retention
/// horizon, and remembers how far that reached so older cursors resync in full. Bounding by
/// arrival too means no device can expire the others' cursors with changes it back-dates.
pub fn compact(state: &AppState, retention_days: u32) -> Result<usize, ServerError> {
    let horizon_ms = retention_horizon_ms(state.clock.now_ms(), retention_days);
    state
        .storage
        .compact(Hlc::new(horizon_ms as u64, 0), horizon_ms)
}

/// Serves until `shutdown` completes, then lets requests in flight finish. Overwritten values
/// and removals past the retention are compacted at start and every six hours; unfinished
/// uploads untouched for two days are dropped at start and every hour.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let s = sweeper.clone();
            let before = std::time::SystemTime::now() - media::STALE_PART;
            if let Ok(n) = tokio::task::spawn_blocking(move || media::sweep_parts(&s, before)).await
            {
                if n > 0 {
                    tracing::info!(uploads = n, "stale unfinished uploads dropped");
                }
            }
        }
    });
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
