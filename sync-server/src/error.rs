//! The server's one error type. Each maps to an HTTP status and an Open311 error array. Client
//! faults answer 4xx with what to fix; a failure of the server's own (storage, files) answers
//! 500 with a generic body, its cause logged (never with request bodies) and never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::open311::Format;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
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
    /// The request conflicts with what is stored (an idempotency key reused for another).
    #[error("{0}")]
    Conflict(String),
    /// Open311 input with problems, each naming its field: answered as one error each.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A limit of this device, key or address: try again after `retry_after_s`.
    #[error("{message}")]
    TooMany { retry_after_s: u64, message: String },
    /// Only while starting: a data directory or catalogue that cannot be used.
    #[error("cannot start: {0}")]
    Startup(String),
    /// The server's own failure: storage, files, a worker. Logged, answered with 500.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<curbside_core::Error> for ServerError {
    fn from(e: curbside_core::Error) -> Self {
        ServerError::Internal(format!("core: {e}"))
    }
}

impl From<std::io::Error> for ServerError {
    fn from(e: std::io::Error) -> Self {
        ServerError::Internal(format!("file: {e}"))
    }
}

impl ServerError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::BadRequest(_) | ServerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::CursorForeign => StatusCode::CONFLICT,
            ServerError::ClockAhead { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ServerError::CursorExpired => StatusCode::GONE,
            ServerError::RequestRefused { status, .. } => *status,
            ServerError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServerError::Startup(_) | ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Open311 error object, with the extra members a Curbside client acts on (Open311
    /// clients ignore them). A server failure is logged here and described generically.
    pub fn error_object(&self) -> Value {
        let status = self.status();
        let description = if status.is_server_error() {
            tracing::error!(error = %self, "internal error");
            "The server could not complete the request; it has been logged.".to_string()
        } else {
            self.to_string()
        };
        let mut error = json!({ "code": status.as_u16(), "description": description });
        match self {
            ServerError::ClockAhead { server_time_ms } => {
                error["server_time_ms"] = json!(server_time_ms);
            }
            ServerError::CursorForeign | ServerError::CursorExpired => {
                error["cursor"] = json!(true);
            }
            ServerError::RequestRefused { request_id, .. } => {
                error["request_id"] = json!(request_id);
            }
            _ => {}
        }
        error
    }

    /// Every error object of the answer: one per problem of invalid input, else one.
    pub fn error_objects(&self) -> Vec<Value> {
        match self {
            ServerError::Invalid(problems) => problems
                .iter()
                .map(|p| json!({ "code": 400, "description": p }))
                .collect(),
            _ => vec![self.error_object()],
        }
    }

    /// The response in the format the client asked for.
    pub fn respond(&self, format: Format) -> Response {
        let mut response = crate::open311::error_body(format, self.status(), &self.error_objects());
        if let ServerError::TooMany { retry_after_s, .. } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after_s),
            );
        }
        response
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        self.respond(Format::Json)
    }
}
