//! The sync protocol's messages (DESIGN.md, "Sync protocol"), defined once for the client
//! engine and the server.

use serde::{Deserialize, Serialize};

use super::change::Change;
use super::page::Paged;
use crate::vocab::{ReplicaId, RequestId};

/// Changes one push may carry.
pub const MAX_PUSH: usize = 1_000;
/// Changes one pull page returns at most. A page costs both ends a fixed part (a round trip,
/// a transaction, statements set up) besides its changes: 5,000 made an initial sync a fifth
/// faster than 2,000, and 10,000 no faster than 5,000 (`bench_sync`).
pub const PAGE: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Resident,
    Inspector,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::Inspector => "inspector",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "resident" => Some(Role::Resident),
            "inspector" => Some(Role::Inspector),
            _ => None,
        }
    }
}

/// `POST /v1/devices`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegisterBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wards: Vec<String>,
    /// Granting the inspector role takes the server's admin key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    pub device_id: String,
    /// The bearer token for every later call. The server keeps only its hash.
    pub token: String,
    pub role: Role,
    pub wards: Vec<String>,
}

/// `POST /v1/sync`: push pending changes, pull a page of the device's scope. A server reads the
/// changes as [`super::change::WireChange`]s, to refuse a bad one with its request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest<C = Change> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default = "Vec::new")]
    pub changes: Vec<C>,
    /// This replica's id, when it holds every change it made: the server leaves them out of
    /// the pull. Not sent on a first or full sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaId>,
    /// The device's wall clock when it sent this, for the server's offset estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_time_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    pub request_id: RequestId,
    pub service_request_id: String,
}

/// The answer to a sync call. A server sends its changes as the log stores them
/// ([`super::change::StoredChange`]); a client reads them as typed changes. They travel as
/// `groups`, in runs of one request and replica ([`super::page`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "C: Paged", deserialize = "C: From<Change>"))]
pub struct SyncResponse<C = Change> {
    /// How many pushed changes the server now holds (new or seen before): all of them.
    pub accepted: Vec<String>,
    /// The public number of every request the push touched.
    pub assigned: Vec<Assigned>,
    #[serde(
        rename = "groups",
        serialize_with = "super::page::serialize",
        deserialize_with = "super::page::deserialize"
    )]
    pub changes: Vec<C>,
    pub cursor: String,
    /// More changes wait: sync again with the new cursor.
    pub more: bool,
    pub server_time_ms: i64,
    /// Server time minus the client's: what the client adds to its clock.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
}

/// The `code` of an Open311 error object for a push whose stamps run ahead of the server's
/// clock; the object also carries `server_time_ms`, so the client can correct and retry.
pub const CLOCK_AHEAD: u16 = 422;
/// The status for a cursor older than the server's tombstone retention: start again from an
/// empty cursor (a full resync).
pub const CURSOR_EXPIRED: u16 = 410;

/// The content-addressed photo endpoints: `HEAD|PATCH|GET {MEDIA}/{sha256}`.
pub const MEDIA: &str = "/v1/media";
/// Response header: bytes of the photo the server holds so far.
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// Request header on PATCH: the photo's full size.
pub const UPLOAD_LENGTH: &str = "upload-length";

impl<C> Default for SyncRequest<C> {
    fn default() -> Self {
        SyncRequest {
            cursor: None,
            changes: Vec::new(),
            replica: None,
            client_time_ms: None,
        }
    }
}

/// `POST {DEVICES}`: register an install.
pub const DEVICES: &str = "/v1/devices";
/// `POST`: a new token for the calling device; the one it was called with stops working.
pub const ROTATE_TOKEN: &str = "/v1/devices/token";
/// `POST {SYNC}`: push and pull.
pub const SYNC: &str = "/v1/sync";
