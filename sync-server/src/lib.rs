//! Curbside's server. It speaks Open311 GeoReport v2 to any client, and the Curbside sync
//! protocol (changes merged with curbside-core's own code, resumable photo uploads) to Curbside
//! apps, over a storage boundary ([`storage::Storage`]; SQLite embedded by default).
//!
//! Handlers parse and check; [`auth`] says who is calling; [`scope`] is the one rule of who may
//! change and see what; storage is the only place with SQL. [`app`] builds the router (tests
//! drive it in-process); [`serve`] runs it on a listener until a shutdown signal.

pub mod auth;
pub mod config;
pub mod cursor;
mod error;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod open311;
pub mod reports;
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

pub use config::{ApiKeyCommand, Command, Config, DeviceCommand};
pub use error::ServerError;
pub use open311::Format;

use storage::Storage;

/// What every handler sees.
pub struct AppState {
    pub catalog: Catalog,
    /// The catalogue's service standards, by service code.
    pub standards: Arc<storage::Standards>,
    /// Requests' public sides as Open311 last showed them ([`open311::Cache`]).
    pub open311_cache: open311::Cache,
    /// Open311 `jurisdiction_id` this server answers for (e.g. `toronto.ca`).
    pub jurisdiction: String,
    pub storage: Arc<dyn Storage>,
    /// The server's clock: every stamp check, offset and retention reads it.
    pub clock: Arc<dyn Clock>,
    /// Randomness for the ids it makes (device ids); tokens always come from the OS.
    pub entropy: Arc<dyn Entropy>,
    pub admin_key: Option<String>,
    /// Where clients reach this server (discovery, media URLs); never a request's Host.
    pub public_url: String,
    pub limits: limits::Limits,
    /// Photo decodes running at once.
    pub decodes: limits::Turns,
    pub metrics: Arc<metrics::Metrics>,
    /// Connections, timeouts and shutdown.
    pub serving: config::Limits,
    /// Where uploaded photos live (`media/` inside it).
    pub data_dir: PathBuf,
    pub retention_days: u32,
    /// Changes one pull page carries at most ([`PAGE`] unless a test pages finer).
    pub page: usize,
    /// The last readiness check and when it ran: `/readyz` writes to storage at most once a
    /// second, however often it is asked (it needs no token).
    ready: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
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
        let storage = storage::open(config, clock.now_ms(), &*entropy)?;
        if let Some(path) = &config.catalog {
            let bytes = std::fs::read(path)
                .map_err(|e| ServerError::Startup(format!("{}: {e}", path.display())))?;
            let catalog = Catalog::parse(&bytes)
                .map_err(|e| ServerError::Startup(format!("{}: {e}", path.display())))?;
            storage.replace_catalog(&catalog, clock.now_ms())?;
        }
        let metrics = Arc::new(metrics::Metrics::new());
        let catalog = storage.catalog()?;
        Ok(AppState {
            standards: Arc::new(storage::standards(&catalog)),
            open311_cache: open311::Cache::default(),
            catalog,
            limits: limits::Limits::new(&config.limits, metrics.rate_limited.clone()),
            decodes: limits::Turns::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
                std::time::Duration::from_secs(10),
            ),
            metrics,
            serving: config.limits.clone(),
            public_url: config.public_url(),
            jurisdiction: config.jurisdiction.clone(),
            storage,
            clock,
            entropy,
            admin_key: config.admin_key.clone().filter(|k| !k.is_empty()),
            data_dir: config.data_dir.clone(),
            retention_days: config.retention_days,
            page: PAGE,
            ready: std::sync::Mutex::new(None),
        })
    }
}

/// Runs `f` with the state on the blocking pool: storage and files never block the executor.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || storage::off_executor(|| f(&state)))
        .await
        .map_err(|e| ServerError::Internal(format!("worker: {e}")))?
}

pub fn app(state: Arc<AppState>) -> Router {
    let timeout = std::time::Duration::from_secs(state.serving.request_timeout_s.max(1));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(open311::router())
        .merge(sync::router())
        .merge(reports::router())
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
        // A request that takes longer (a body trickled in, say) is answered 408 and dropped.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log_request,
        ))
        .with_state(state)
}

/// The first thing every request meets: the client address's rate limit, then one log line
/// (method, route, status, time) and its metrics. Never the path's values, the query string or
/// the body, which may carry a reporter's contact details or a photo's name.
async fn log_request(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let started = std::time::Instant::now();
    let response = match address.map(|ip| state.limits.address(ip)) {
        Some(Err(e)) => e.into_response(),
        _ => {
            state.metrics.in_flight.inc();
            let r = next.run(request).await;
            state.metrics.in_flight.dec();
            r
        }
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .get_or_create(&metrics::RouteStatus {
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&metrics::Route {
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        %method,
        %route,
        status,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}

/// Alive: the process answers.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready: storage takes a write. 503 otherwise, so a balancer sends traffic elsewhere.
async fn readyz(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ready = blocking(&state, |s| {
        let mut last = s.ready.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, ready)) = *last {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return Ok(ready);
            }
        }
        let ready = match s.storage.writable() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "not ready: storage refuses writes");
                false
            }
        };
        *last = Some((std::time::Instant::now(), ready));
        Ok(ready)
    })
    .await
    .unwrap_or(false);
    if ready {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "storage unavailable" })),
        )
            .into_response()
    }
}

async fn metrics_text(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    state.metrics.storage(state.storage.pool_use());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
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

/// Serves until `shutdown` completes, then stops accepting, lets requests in flight finish
/// for the shutdown grace, and returns (dropping what is left). Overwritten values and
/// removals past the retention are compacted at start and every six hours; unfinished uploads
/// untouched for two days are dropped at start and every hour.
///
/// Each connection has a header timeout (a client that never finishes its headers, or an idle
/// keep-alive, is closed), each request a timeout, and at most `max_connections` are open: the
/// rest wait in the listen queue.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    spawn_housekeeping(&state);
    let header_timeout = std::time::Duration::from_secs(state.serving.header_timeout_s.max(1));
    let grace = std::time::Duration::from_secs(state.serving.shutdown_grace_s);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        state.serving.max_connections.max(1),
    ));
    let router = app(state.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // A client opening connections faster than its address may: closed before any work.
        if state.limits.connection(peer.ip()).is_err() {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), request)
            },
        );
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        let metrics = state.metrics.clone();
        metrics.connections.inc();
        tokio::spawn(async move {
            let _ = conn.await;
            metrics.connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(grace_s = grace.as_secs(), "draining");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace over: dropping the connections left");
    }
    Ok(())
}

/// Compaction, the sweep of stale uploads, and forgetting idle rate-limit keys.
fn spawn_housekeeping(state: &Arc<AppState>) {
    let sweeper = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let s = sweeper.clone();
            let before = std::time::SystemTime::now() - media::STALE_PART;
            if let Ok(n) = tokio::task::spawn_blocking(move || {
                storage::off_executor(|| media::sweep_parts(&s, before))
            })
            .await
            {
                if n > 0 {
                    tracing::info!(uploads = n, "stale unfinished uploads dropped");
                }
            }
        }
    });
    let forgetter = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            forgetter.limits.forget_idle();
        }
    });
    let compactor = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(6 * 3600));
        loop {
            every.tick().await;
            let s = compactor.clone();
            match tokio::task::spawn_blocking(move || {
                storage::off_executor(|| compact(&s, s.retention_days))
            })
            .await
            {
                Ok(Ok(n)) if n > 0 => tracing::info!(changes = n, "compacted"),
                Ok(Err(e)) => tracing::error!(error = %e, "compaction failed"),
                _ => {}
            }
        }
    });
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
