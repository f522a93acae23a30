//! The HTTP side of the sync engine: one blocking client (rustls), gzip both ways, bearer
//! auth, and retries with exponential backoff and full jitter for what a retry can fix
//! (no connection, timeouts, 5xx, 429). Nothing here loops while offline: after the last
//! attempt the caller gets [`Error::Network`] and decides when to try again.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::protocol::{self, RegisterBody, Registered, SyncRequest, SyncResponse};
use crate::error::{Error, Result};

/// Stops a sync between calls, between photo chunks and during backoff waits.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per call, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// For one HTTP exchange, connection included.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): uniformly in
    /// [0, min(max, base·2^attempt)], so a fleet of phones coming back online spreads out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_delay);
        cap.mul_f64(fastrand::f64())
    }
}

/// Why the server refused a sync call, for the engine to act on.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The push's stamps run ahead of the server's clock.
    ClockAhead {
        server_time_ms: i64,
    },
    /// The cursor predates the server's tombstone retention: full resync.
    CursorExpired,
    /// The cursor comes from another server (a restored or replaced one): start over.
    CursorForeign,
    /// One request of the push was refused (scope, unknown request): drop its changes.
    Request {
        request_id: String,
        message: String,
    },
    Other(Error),
}

/// A refusal the engine did not act on (or could not, after its retries), for the caller.
impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::Other(e) => e,
            Refusal::ClockAhead { .. } => {
                Error::Sync("the server keeps refusing this device's clock".into())
            }
            Refusal::CursorExpired | Refusal::CursorForeign => Error::Server {
                status: 409,
                message: "the server keeps refusing this device's cursor".into(),
            },
            Refusal::Request { message, .. } => Error::Server {
                status: 403,
                message,
            },
        }
    }
}

pub(crate) struct Http {
    client: Client,
    base: String,
    token: Option<String>,
    pub(crate) policy: RetryPolicy,
    pub(crate) cancel: CancelToken,
}

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the app may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

impl Http {
    pub(crate) fn new(
        base: &str,
        token: Option<String>,
        policy: RetryPolicy,
        cancel: CancelToken,
    ) -> Result<Http> {
        install_crypto();
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Network(format!(
                "{base:?} is not an http:// or https:// URL"
            )));
        }
        let client = Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("curbside/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Network(format!("HTTP client: {e}")))?;
        Ok(Http {
            client,
            base,
            token,
            policy,
            cancel,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorized(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            None => rb,
        }
    }

    /// Sends what `build` makes, again after a backoff wait while a retry may help.
    pub(crate) fn send(&self, build: impl Fn(&Client) -> RequestBuilder) -> Result<Response> {
        let mut attempt = 0;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let failure = match self.authorized(build(&self.client)).send() {
                Ok(r)
                    if r.status().is_server_error()
                        || r.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    format!("HTTP {}", r.status().as_u16())
                }
                Ok(r) => return Ok(r),
                // Not the URL: it may carry nothing private, but keep logs plain.
                Err(e) => e.without_url().to_string(),
            };
            attempt += 1;
            if attempt >= self.policy.attempts {
                return Err(Error::Network(format!(
                    "{failure} (after {attempt} attempts)"
                )));
            }
            self.wait(self.policy.delay(attempt - 1))?;
        }
    }

    /// Sleeps, waking early to honour a cancel.
    pub(crate) fn wait(&self, d: Duration) -> Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        Ok(())
    }

    fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> std::result::Result<R, Refusal> {
        let json =
            serde_json::to_vec(body).map_err(|e| Refusal::Other(Error::Sync(e.to_string())))?;
        // Pushes of a day's work are text and shrink several times over.
        let (bytes, gzipped) = if json.len() > 1024 {
            (gzip(&json), true)
        } else {
            (json, false)
        };
        let url = self.url(path);
        let response = self
            .send(|c| {
                let rb = c
                    .post(&url)
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(bytes.clone());
                if gzipped {
                    rb.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"))
                } else {
                    rb
                }
            })
            .map_err(Refusal::Other)?;
        let status = response.status();
        let body = response
            .bytes()
            .map_err(|e| Refusal::Other(Error::Network(e.without_url().to_string())))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                Refusal::Other(Error::Network(format!(
                    "unreadable answer from the server: {e}"
                )))
            });
        }
        Err(refusal(status.as_u16(), &body))
    }

    pub(crate) fn register(&self, body: &RegisterBody) -> Result<Registered> {
        self.post("/v1/devices", body).map_err(Error::from)
    }

    pub(crate) fn sync(&self, body: &SyncRequest) -> std::result::Result<SyncResponse, Refusal> {
        self.post("/v1/sync", body)
    }
}

/// Reads an Open311 error array (`[{"code", "description", …}]`) into what the engine does next.
fn refusal(status: u16, body: &[u8]) -> Refusal {
    let first: Value = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
        .unwrap_or(Value::Null);
    let message = first["description"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    match status {
        s if s == protocol::CLOCK_AHEAD && first["server_time_ms"].is_i64() => {
            Refusal::ClockAhead {
                server_time_ms: first["server_time_ms"].as_i64().unwrap_or_default(),
            }
        }
        s if s == protocol::CURSOR_EXPIRED => Refusal::CursorExpired,
        409 if first["cursor"] == Value::Bool(true) => Refusal::CursorForeign,
        400 | 403 | 404 if first["request_id"].is_string() => Refusal::Request {
            request_id: first["request_id"].as_str().unwrap_or_default().to_string(),
            message,
        },
        _ => Refusal::Other(Error::Server { status, message }),
    }
}
