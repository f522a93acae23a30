//! The server's one error type. Each maps to an HTTP status and an Open311 error array; internal
//! causes are logged (never with request bodies) and not shown to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::open311::Format;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// A pushed change is stamped ahead of the server's clock: the client corrects and retries.
    #[error(
        "the device's clock runs ahead of the server's: correct it by the offset and push again"
    )]
    ClockAhead { server_time_ms: i64 },
    /// The cursor predates the tombstone retention: the client resyncs in full.
    #[error("the cursor is older than this server keeps removals for: sync again from the start")]
    CursorExpired,
    #[error("the cursor comes from another server: sync again from the start")]
    CursorForeign,
    /// One request of a push was refused; the client drops its changes and keeps the rest.
    #[error("{message}")]
    RequestRefused {
        status: StatusCode,
        request_id: String,
        message: String,
    },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("cannot start: {0}")]
    Startup(String),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("catalogue: {0}")]
    Core(#[from] curbside_core::Error),
}

impl ServerError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::Conflict(_) | ServerError::CursorForeign => StatusCode::CONFLICT,
            ServerError::ClockAhead { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ServerError::CursorExpired => StatusCode::GONE,
            ServerError::RequestRefused { status, .. } => *status,
            ServerError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response in the format the client asked for.
    pub fn respond(&self, format: Format) -> Response {
        let status = self.status();
        let description = if status.is_server_error() {
            tracing::error!(error = %self, "internal error");
            "The server could not complete the request; it has been logged.".to_string()
        } else {
            self.to_string()
        };
        // Extra members a Curbside client acts on; Open311 clients ignore them.
        let extra = match self {
            ServerError::ClockAhead { server_time_ms } => {
                vec![("server_time_ms", serde_json::json!(server_time_ms))]
            }
            ServerError::CursorForeign | ServerError::CursorExpired => {
                vec![("cursor", serde_json::json!(true))]
            }
            ServerError::RequestRefused { request_id, .. } => {
                vec![("request_id", serde_json::json!(request_id))]
            }
            _ => Vec::new(),
        };
        crate::open311::error_body(format, status, &description, &extra)
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        self.respond(Format::Json)
    }
}
