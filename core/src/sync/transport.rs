//! How the sync engine reaches a server, and what a server's refusals mean. The engine knows
//! nothing of HTTP: it talks to a [`Transport`]. The HTTP one (reqwest, behind the `client`
//! feature) is in [`super::http`]; tests and simulations use one that calls the server's own
//! handler logic in process.

use serde_json::Value;

use super::protocol::{self, RegisterBody, Registered, SyncRequest, SyncResponse};
use crate::error::Error;

/// Why a call did not get the answer the engine wanted, for the engine to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No answer, or one saying "later" (5xx, 429): worth retrying after a wait.
    Unavailable(String),
    /// The push's stamps run ahead of the server's clock.
    ClockAhead { server_time_ms: i64 },
    /// The cursor predates the server's tombstone retention: full resync.
    CursorExpired,
    /// The cursor comes from another server (a restored or replaced one): start over.
    CursorForeign,
    /// One request of the push was refused (scope, unknown request): drop its changes.
    Request { request_id: String, message: String },
    /// Any other refusal: retrying will not help.
    Server { status: u16, message: String },
    /// The answer could not be read.
    Unreadable(String),
}

impl Refusal {
    /// Reads a refusal from a status and an Open311 error array (`[{"code", "description",
    /// …}]`), as every transport receives them.
    pub fn from_answer(status: u16, body: &[u8]) -> Refusal {
        if status >= 500 || status == 429 {
            return Refusal::Unavailable(format!("HTTP {status}"));
        }
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
            _ => Refusal::Server { status, message },
        }
    }
}

/// A refusal the engine did not act on (or could not, after its retries), for the caller.
impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::Unavailable(why) => Error::Network(why),
            Refusal::Unreadable(why) => Error::Network(format!("unreadable answer: {why}")),
            Refusal::ClockAhead { .. } => Error::ClockRefused,
            Refusal::CursorExpired | Refusal::CursorForeign => Error::CursorRefused,
            Refusal::Request { message, .. } => Error::Server {
                status: 403,
                message,
            },
            Refusal::Server { status, message } => Error::Server { status, message },
        }
    }
}

/// What a server answered to one chunk of a photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Taken: the server now holds this many bytes.
    Taken(u64),
    /// The server holds a different number of bytes than the chunk assumed: ask again.
    Moved,
}

/// A way to reach one sync server. Each call is one exchange, no retries (the engine retries
/// what [`Refusal::Unavailable`] says may work later). `token` is the device's bearer token.
pub trait Transport: Sync {
    fn register(&self, body: &RegisterBody) -> Result<Registered, Refusal>;
    fn sync(&self, token: &str, body: &SyncRequest) -> Result<SyncResponse, Refusal>;
    /// How many bytes of a photo the server holds (0 for none).
    fn photo_offset(&self, token: &str, sha256: &str) -> Result<u64, Refusal>;
    /// Sends `chunk`, the photo's bytes from `offset`, of `total` in all.
    fn photo_chunk(
        &self,
        token: &str,
        sha256: &str,
        offset: u64,
        total: u64,
        chunk: &[u8],
    ) -> Result<Chunk, Refusal>;
}
