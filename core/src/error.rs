//! The crate's one error type. Every variant names what is wrong in words a person can act on;
//! none carries personal data (descriptions, contact details), so any error may be logged. The
//! variant is the meaning; text inside one is detail for a person, never something to match on.

use std::path::PathBuf;

use crate::vocab::{BadId, Problem, RequestId, State};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a change cannot be taken: refused whole, before anything is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("change {id}: unknown field {field:?}")]
    UnknownField { id: String, field: String },
    #[error("change {id}: {field} {reason}")]
    BadValue {
        id: String,
        field: String,
        reason: String,
    },
    #[error("change {id}: {reason}")]
    Malformed { id: String, reason: String },
    #[error("change {id} is stamped {ahead_ms} ms in the future; the device's clock is wrong")]
    FromTheFuture { id: String, ahead_ms: u64 },
    /// Older than the server keeps removals for: such a change could be compacted at once and
    /// expire every other device's cursor, so the past cannot be written.
    #[error("change {id} is stamped before {horizon_ms} ms, older than the server keeps history")]
    BeforeRetention { id: String, horizon_ms: i64 },
}

/// What was looked for and not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("no request with id {0}")]
    Request(RequestId),
    #[error("no photo {0}")]
    Photo(String),
    #[error("request {request} has no photo {sha256}")]
    PhotoOf { request: RequestId, sha256: String },
}

/// An action this device's role does not allow: refused here, before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("statuses, assignments, priorities and internal notes are for inspectors")]
    InspectorsOnly,
    #[error("a resident may add notes to their own requests only")]
    NotYourRequest,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} is not a Curbside database (not an SQLite file); it was left untouched")]
    NotADatabase { path: PathBuf },

    #[error(
        "{path} was written by a newer Curbside (schema {found}, this build knows up to {supported}); \
         it was left untouched: update the app"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{path} is damaged ({detail}); it was left untouched")]
    Corrupt { path: PathBuf, detail: String },

    #[error("unknown service code {0:?}")]
    UnknownService(String),

    #[error("service {service:?} has no attribute {code:?}")]
    UnknownAttribute { service: String, code: String },

    #[error("{0}")]
    NotFound(Missing),

    #[error("{0}")]
    BadId(#[from] BadId),

    #[error("cannot {action} request {id}: it is {state}")]
    WrongState {
        id: RequestId,
        state: State,
        action: &'static str,
    },

    /// Every problem at once, each with the field a UI would put it next to.
    #[error("{}", Problem::summary(.0))]
    Invalid(Vec<Problem>),

    /// A service catalogue that cannot be read.
    #[error("catalogue: {0}")]
    Catalog(String),

    /// An Open311 requests.json that cannot be read.
    #[error("requests: {0}")]
    Requests(String),

    #[error("{0}")]
    Photo(#[from] crate::photo::PhotoError),

    #[error("{0}")]
    Geo(#[from] crate::geo::GeoError),

    /// A change that cannot be applied (unknown field, wrong type, far-future stamp).
    #[error("sync: {0}")]
    Change(#[from] ChangeError),

    /// This device's role does not allow the action.
    #[error("not allowed: {0}")]
    Forbidden(#[from] Forbidden),

    /// The server could not be reached (after retries with backoff): try again later.
    #[error("network: {0}")]
    Network(String),

    #[error("{0:?} is not an http:// or https:// URL")]
    BadServerUrl(String),

    /// The server answered with an error that retrying will not fix.
    #[error("the server refused: {message} (HTTP {status})")]
    Server { status: u16, message: String },

    /// The server kept refusing this device's clock after it was corrected.
    #[error("the server keeps refusing this device's clock")]
    ClockRefused,

    /// The server kept refusing this device's cursor after a full resync.
    #[error("the server keeps refusing this device's cursor")]
    CursorRefused,

    #[error("this device is not registered with a server: register first")]
    NotRegistered,

    /// Sync or an upload was cancelled; what finished is kept, the rest resumes next time.
    #[error("cancelled")]
    Cancelled,

    /// A stored value this build cannot read (a hand-edited or damaged file).
    #[error("stored data is unreadable: {what}: {detail}")]
    Stored { what: &'static str, detail: String },

    #[error("no migration step from schema {0}: this build cannot upgrade that file")]
    NoMigration(u32),

    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("file: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// One problem, for edits that are checked as they are made.
    pub fn invalid(problem: Problem) -> Self {
        Error::Invalid(vec![problem])
    }

    pub fn no_request(id: RequestId) -> Self {
        Error::NotFound(Missing::Request(id))
    }
}
