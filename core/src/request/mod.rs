//! The one owner of a device's requests: every write to a request's row, its lifecycle events,
//! its photo links, and the changes it logs goes through this module, as a typed edit that
//! updates the row and logs the change in the same call. No caller can change a request and
//! forget its change (the guarantee cr-sqlite gets from triggers).
//!
//! A request goes from draft (edited offline; its changes are logged but held back) through the
//! queue (validated, waiting for a connection) to the city, whose status, notes and number come
//! back by sync. A request's history is read from the change log (its creation, the city's
//! statuses and notes) and from the device's own lifecycle events; nothing is written twice.
//!
//! Requests the device did not write (an inspector's wards, reports near a resident) are kept
//! in [`known`] for duplicate detection.

mod edit;
mod history;
pub mod known;
mod photos;
mod pulled;
mod read;
mod updates;
mod validate;

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::geo::Ward;
use crate::vocab::{Contact, IdSource, Location, ReplicaId, State};

pub(crate) use edit::{
    accept, attach_photo, create, delete, detach_photo, edit, learned_status, mark_sent, refuse,
    reject, shared_edit, submit, withdraw,
};
pub(crate) use photos::{
    photo_bytes, photos, queue_upload, queued_uploads, remove_orphans, uploaded,
};
pub use photos::{AttachedPhoto, PhotoInfo};
pub(crate) use pulled::{apply_pulled, Touched};
pub(crate) use read::{all_known, as_known, get, lifecycle_of, list, pending};
pub use updates::Update;
pub(crate) use updates::{mark_seen, unread};
pub use validate::validate;

/// What writes are made with: the store's clock reading and its source of ids.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub now_ms: i64,
    pub ids: &'a IdSource,
    /// This store's replica id in the change log.
    pub replica: &'a ReplicaId,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub from: Option<State>,
    pub to: State,
    pub note: Option<String>,
}

/// A request as the device holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draft {
    pub id: String,
    pub service_code: String,
    /// `None` when the catalogue no longer offers the service: the draft is kept, and
    /// validation says so.
    pub service_name: Option<String>,
    pub state: State,
    pub description: String,
    /// Attribute code → values; a multivaluelist has several, every other datatype one.
    pub attributes: BTreeMap<String, Vec<String>>,
    pub location: Option<Location>,
    pub address: Option<String>,
    pub contact: Contact,
    /// Send without contact details; the city cannot follow up.
    pub anonymous: bool,
    pub service_request_id: Option<String>,
    pub status_notes: Option<String>,
    /// When the city expects to resolve it: the date it set, or until the server says, the
    /// service's standard counted from when the request was queued. `None` for a draft or a
    /// service without a resolution target.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expected_at: Option<OffsetDateTime>,
    /// The request the city found this one repeats, and where that one is.
    pub duplicate_of: Option<Duplicate>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The ward the location fell in, named when the request was queued.
    pub ward: Option<Ward>,
    pub photos: Vec<PhotoInfo>,
    pub history: Vec<HistoryEntry>,
}

/// The request a report repeats, as this device knows it: its number and the city's status
/// when they have reached this device (it is near the report, so in its public view).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duplicate {
    pub id: String,
    pub service_request_id: Option<String>,
    pub state: Option<State>,
}

/// One line of a list: what a "My reports" screen shows without loading every draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftSummary {
    pub id: String,
    pub service_code: String,
    pub service_name: Option<String>,
    pub state: State,
    /// The first 140 characters of the description.
    pub excerpt: String,
    pub has_location: bool,
    pub address: Option<String>,
    pub service_request_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Changes to a draft, applied together in one transaction. `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct DraftEdit {
    pub description: Option<String>,
    /// Attribute code → new values; an empty list clears the answer.
    pub attributes: Vec<(String, Vec<String>)>,
    /// `Some(None)` removes the location.
    pub location: Option<Option<Location>>,
    /// `Some(None)` removes the address.
    pub address: Option<Option<String>>,
    pub contact: Option<Contact>,
    pub anonymous: Option<bool>,
}
