//! The few errors an app handles differently, and the one place core errors become them.

use curbside_core::Error;

use crate::types::Problem;

#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ApiError {
    /// Something the person entered (or the app passed) is wrong; `problems` says where.
    #[error("{reason}")]
    InvalidInput {
        reason: String,
        problems: Vec<Problem>,
    },
    #[error("{reason}")]
    NotFound { reason: String },
    /// The request is not in a state that allows this (e.g. editing one already sent).
    #[error("{reason}")]
    Conflict { reason: String },
    /// The server could not be reached: nothing is lost, try later.
    #[error("{reason}")]
    Network { reason: String },
    /// The sync was cancelled; what it had committed stays, the next sync goes on from there.
    #[error("{reason}")]
    Cancelled { reason: String },
    /// The store file cannot be used (not ours, newer app, damaged, disk error).
    #[error("{reason}")]
    Storage { reason: String },
    /// The store was closed; open it again.
    #[error("{reason}")]
    Closed { reason: String },
    /// A fault in the library itself: report it. Nothing stored was changed by the call.
    #[error("{reason}")]
    Internal { reason: String },
}

/// What an app's callback (a listener, a log sink, a progress observer) may throw: the library
/// logs it and goes on; it never reaches the code that wrote or synced.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CallbackError {
    #[error("{reason}")]
    Failed { reason: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for CallbackError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        CallbackError::Failed { reason: e.reason }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let reason = e.to_string();
        let one = |field: &str, kind: curbside_core::ProblemKind| {
            vec![curbside_core::Problem::new(field, kind, reason.clone()).into()]
        };
        match &e {
            Error::Invalid(problems) => ApiError::InvalidInput {
                problems: problems.iter().cloned().map(Into::into).collect(),
                reason,
            },
            Error::UnknownService(_) => ApiError::InvalidInput {
                problems: one("service_code", curbside_core::ProblemKind::ServiceGone),
                reason,
            },
            Error::UnknownAttribute { code, .. } => ApiError::InvalidInput {
                problems: one(
                    &curbside_core::Problem::attribute_field(code),
                    curbside_core::ProblemKind::UnknownAttribute,
                ),
                reason,
            },
            Error::BadId(_) => ApiError::InvalidInput {
                problems: one("id", curbside_core::ProblemKind::Malformed),
                reason,
            },
            Error::Catalog(_) | Error::Requests(_) => ApiError::InvalidInput {
                problems: one("file", curbside_core::ProblemKind::Malformed),
                reason,
            },
            Error::Photo(p) => ApiError::InvalidInput {
                problems: one(
                    if matches!(p, curbside_core::PhotoError::TooMany { .. }) {
                        "photos"
                    } else {
                        "photo"
                    },
                    match p {
                        curbside_core::PhotoError::TooLarge { .. }
                        | curbside_core::PhotoError::FileTooLarge { .. }
                        | curbside_core::PhotoError::TooMany { .. } => {
                            curbside_core::ProblemKind::OutOfRange
                        }
                        _ => curbside_core::ProblemKind::Malformed,
                    },
                ),
                reason,
            },
            Error::Geo(_) => ApiError::InvalidInput {
                problems: one("location", curbside_core::ProblemKind::OutOfRange),
                reason,
            },
            Error::Change(_)
            | Error::Server { .. }
            | Error::NotRegistered
            | Error::Forbidden(_)
            | Error::ClockRefused
            | Error::CursorRefused => ApiError::Conflict { reason },
            Error::Network(_) | Error::BadServerUrl(_) => ApiError::Network { reason },
            Error::Cancelled => ApiError::Cancelled { reason },
            Error::NotFound(_) => ApiError::NotFound { reason },
            Error::WrongState { .. } => ApiError::Conflict { reason },
            Error::NotADatabase { .. }
            | Error::NewerSchema { .. }
            | Error::Corrupt { .. }
            | Error::NoMigration(_)
            | Error::Stored { .. }
            | Error::Sqlite(_)
            | Error::Io(_) => ApiError::Storage { reason },
        }
    }
}
