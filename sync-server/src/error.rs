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
            ServerError::Conflict(_) => StatusCode::CONFLICT,
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
        crate::open311::error_body(format, status, &description)
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        self.respond(Format::Json)
    }
}
