//! The store's side of sync: the registration, the [`Replica`] the engine drives (each step one
//! transaction, through `request` and the log), and the operations inspectors and residents
//! perform on requests that have left the device.

use std::collections::BTreeSet;

use serde::Serialize;

use super::events::{ChangeKind, Origin, RequestEvent};
use super::Store;
use crate::error::{Error, Result};
use crate::request;
use crate::sql::{self, Key};
use crate::sync::engine::{self, Outgoing, Replica};
use crate::sync::log;
use crate::sync::protocol::{RegisterBody, Registered, Role, SyncResponse};
use crate::sync::transport::Transport;
use crate::sync::{ApplyReport, Change, Document, Progress, SyncOptions, SyncReport};
use crate::vocab::limits::MAX_NOTE_CHARS;
use crate::vocab::{
    Field, FieldValue, Lifecycle, Note, Priority, Problem, ProblemKind, RequestId, State, Status,
};

/// Who this device is on its server. The token is not part of it: it stays in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    pub server: String,
    pub device_id: String,
    pub role: Role,
    pub wards: Vec<String>,
}

/// How syncing stands, for a status line: what is waiting, and how the last syncs ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncState {
    pub registration: Option<Registration>,
    /// When a sync last ended well (milliseconds since 1970).
    pub last_success_ms: Option<i64>,
    /// The last sync's failure, when it failed after the last success.
    pub last_failure: Option<SyncFailure>,
    pub pending_changes: u64,
    /// Requests queued, or sent without the server's answer yet.
    pub pending_requests: u64,
    pub pending_photos: u64,
    pub pending_photo_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SyncFailure {
    pub at_ms: i64,
    /// The server could not be reached (no network, a timeout): try again when online.
    pub offline: bool,
    /// The error, as shown to the user; it names no person and no request's contents.
    pub reason: String,
}

fn registration(conn: &rusqlite::Connection) -> Result<Option<(Registration, String)>> {
    let get = |k| sql::get(conn, k);
    let (Some(server), Some(token), Some(device_id)) = (
        get(Key::SYNC_SERVER)?,
        get(Key::SYNC_TOKEN)?,
        get(Key::SYNC_DEVICE_ID)?,
    ) else {
        return Ok(None);
    };
    let role = get(Key::SYNC_ROLE)?
        .as_deref()
        .and_then(Role::parse)
        .unwrap_or(Role::Resident);
    let wards = get(Key::SYNC_WARDS)?
        .and_then(|w| serde_json::from_str(&w).ok())
        .unwrap_or_default();
    Ok(Some((
        Registration {
            server,
            device_id,
            role,
            wards,
        },
        token,
    )))
}

/// A draft's changes wait in the outbox until it is submitted.
fn is_draft(conn: &rusqlite::Connection, id: &RequestId) -> Result<bool> {
    Ok(matches!(
        request::lifecycle_of(conn, id)?,
        Some((Lifecycle::Draft, _))
    ))
}

impl Store {
    /// Registers this install with the server at `server` (HTTP) and keeps the token.
    #[cfg(feature = "client")]
    pub fn register(&self, server: &str, body: &RegisterBody) -> Result<Registered> {
        let transport = crate::sync::http::HttpTransport::new(
            server,
            crate::sync::RetryPolicy::default().timeout,
        )?;
        self.register_with(&transport, server, body)
    }

    /// Registers through `transport`; `server` is what the store remembers it by.
    pub fn register_with(
        &self,
        transport: &dyn Transport,
        server: &str,
        body: &RegisterBody,
    ) -> Result<Registered> {
        let registered = transport.register(body)?;
        self.write(|tx| {
            sql::set(tx, Key::SYNC_SERVER, server.trim().trim_end_matches('/'))?;
            sql::set(tx, Key::SYNC_TOKEN, &registered.token)?;
            sql::set(tx, Key::SYNC_DEVICE_ID, &registered.device_id)?;
            sql::set(tx, Key::SYNC_ROLE, registered.role.as_str())?;
            sql::set(
                tx,
                Key::SYNC_WARDS,
                &serde_json::to_string(&registered.wards).unwrap_or_default(),
            )?;
            // A new registration starts a new stream of changes.
            sql::remove(tx, Key::SYNC_CURSOR)?;
            Ok(())
        })?;
        Ok(registered)
    }

    pub fn registration(&self) -> Result<Option<Registration>> {
        Ok(self.read(registration)?.map(|(r, _)| r))
    }

    /// Changes waiting to be pushed (drafts' wait until they are submitted).
    pub fn pending_changes(&self) -> Result<u64> {
        self.read(|c| log::pending_count(c, |id| is_draft(c, id)))
    }

    /// Pushes everything pending and pulls everything new from the registered server (HTTP),
    /// in bounded rounds, then uploads photos. Safe to call at any time and to interrupt at any
    /// point.
    #[cfg(feature = "client")]
    pub fn sync(
        &self,
        options: &SyncOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<SyncReport> {
        let (reg, _) = self.read(registration)?.ok_or(Error::NotRegistered)?;
        let transport = crate::sync::http::HttpTransport::new(&reg.server, options.retry.timeout)?;
        self.sync_with(&transport, options, progress)
    }

    /// [`Store::sync`] through any transport.
    pub fn sync_with(
        &self,
        transport: &dyn Transport,
        options: &SyncOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<SyncReport> {
        let (_, token) = self.read(registration)?.ok_or(Error::NotRegistered)?;
        let result = engine::run(self, transport, &token, options, progress);
        let now = self.now_ms();
        // A cancelled sync neither succeeded nor failed.
        if !matches!(result, Err(Error::Cancelled)) {
            self.write(|tx| match &result {
                Ok(_) => {
                    sql::set(tx, Key::SYNC_LAST_OK, &now.to_string())?;
                    Ok(sql::remove(tx, Key::SYNC_LAST_FAILURE)?)
                }
                Err(e) => {
                    let failure = SyncFailure {
                        at_ms: now,
                        offline: matches!(e, Error::Network(_)),
                        reason: e.to_string(),
                    };
                    let json = serde_json::to_string(&failure).unwrap_or_default();
                    Ok(sql::set(tx, Key::SYNC_LAST_FAILURE, &json)?)
                }
            })?;
        }
        result
    }

    /// What is waiting to leave the device, and how the last syncs ended.
    pub fn sync_state(&self) -> Result<SyncState> {
        let pending = self.pending_changes()?;
        self.read(|c| {
            let (requests, photos, bytes) = request::pending(c)?;
            Ok(SyncState {
                registration: registration(c)?.map(|(r, _)| r),
                last_success_ms: sql::get(c, Key::SYNC_LAST_OK)?.and_then(|v| v.parse().ok()),
                last_failure: sql::get(c, Key::SYNC_LAST_FAILURE)?
                    .and_then(|v| serde_json::from_str(&v).ok()),
                pending_changes: pending,
                pending_requests: requests,
                pending_photos: photos,
                pending_photo_bytes: bytes,
            })
        })
    }

    /// Applies changes that came another way than sync (a nearby device, a bulk import): all
    /// or nothing, with the app's tables brought up to date in the same transaction.
    pub fn apply_changes(&self, changes: &[Change]) -> Result<ApplyReport> {
        let env = self.env();
        let (report, touched) = self.write(|tx| request::apply_pulled(tx, env, changes, &[]))?;
        self.reindex_touched(touched)?;
        self.listeners
            .notify(&RequestEvent::of_changes(changes, Origin::Sync));
        Ok(report)
    }

    // ---- operations on requests that have left the device ----

    /// Logs edits of a request that has left the device; `values` makes them given the author
    /// this device's notes carry. The registration is read once, for the role and the author.
    fn shared_edit(&self, id: &str, values: impl FnOnce(&str) -> Vec<FieldValue>) -> Result<()> {
        let id = RequestId::parse(id)?;
        // A note names its writer's role only: the server refuses any other author, and
        // residents who read it learn nothing of who wrote it.
        let role = match self.read(registration)? {
            Some((r, _)) => r.role,
            None => Role::Resident,
        };
        let (inspector, author) = (role == Role::Inspector, role.as_str().to_string());
        let values = values(&author);
        let events = RequestEvent::grouped(
            Origin::Local,
            values
                .iter()
                .map(|v| (id, ChangeKind::of_field(&v.field()))),
        );
        let env = self.env();
        let touched = self.write(|tx| request::shared_edit(tx, env, inspector, &id, values))?;
        self.reindex_touched(touched)?;
        self.listeners.notify(&events);
        Ok(())
    }

    fn note(&self, author: &str, text: &str, public: bool, status: Option<Status>) -> Note {
        Note {
            id: self.ids.uuid(self.now_ms()).to_string(),
            author: author.to_string(),
            text: text.to_string(),
            public,
            status,
        }
    }

    /// Sets the city's status of a request, with the note that explains it (Open311
    /// `status_notes`; public).
    pub fn set_status(&self, id: &str, status: State, note: Option<&str>) -> Result<()> {
        let Some(s) = status.status() else {
            return Err(Error::invalid(Problem::new(
                "status",
                ProblemKind::OutOfRange,
                format!("{status} is not a city status (accepted, in_progress, scheduled, completed, cancelled)"),
            )));
        };
        let note = note.map(str::trim).filter(|n| !n.is_empty());
        self.shared_edit(id, |author| {
            let mut values = vec![FieldValue::Status(s)];
            values.extend(note.map(|n| FieldValue::Note(self.note(author, n, true, Some(s)))));
            values
        })
    }

    /// Adds a note; internal notes are seen by inspectors only. Returns the note's id.
    pub fn add_note(&self, id: &str, text: &str, public: bool) -> Result<String> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
            return Err(Error::invalid(Problem::new(
                "note",
                ProblemKind::TooLong,
                format!("a note has 1 to {MAX_NOTE_CHARS} characters"),
            )));
        }
        let mut note_id = String::new();
        self.shared_edit(id, |author| {
            let note = self.note(author, text, public, None);
            note_id = note.id.clone();
            vec![FieldValue::Note(note)]
        })?;
        Ok(note_id)
    }

    /// Marks a request a duplicate of `parent` (staff only): cancelled, with its parent, and
    /// a public note that says so. Its reporter's app shows the parent's status from then on.
    pub fn mark_duplicate(&self, id: &str, parent: &str, note: Option<&str>) -> Result<()> {
        let parent_id = RequestId::parse(parent)?;
        if parent_id == RequestId::parse(id)? {
            return Err(Error::invalid(Problem::new(
                "duplicate_of",
                ProblemKind::OutOfRange,
                "a request cannot repeat itself".to_string(),
            )));
        }
        let number = self
            .read(|c| log::current(c, &parent_id, &[Field::ServiceRequestId]))?
            .remove(&Field::ServiceRequestId);
        let text = match (note.map(str::trim).filter(|n| !n.is_empty()), number) {
            (Some(n), _) => n.to_string(),
            (None, Some(FieldValue::ServiceRequestId(n))) => {
                format!("A duplicate of request {n}, which the City is handling.")
            }
            (None, _) => "A duplicate of another report, which the City is handling.".to_string(),
        };
        self.shared_edit(id, |author| {
            vec![
                FieldValue::Status(Status::Cancelled),
                FieldValue::DuplicateOf(Some(parent_id)),
                FieldValue::Note(self.note(author, &text, true, Some(Status::Cancelled))),
            ]
        })
    }

    pub fn assign(&self, id: &str, assignee: Option<&str>) -> Result<()> {
        let assignee = assignee
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string);
        self.shared_edit(id, |_| vec![FieldValue::Assignee(assignee)])
    }

    /// `low`, `normal`, `high` or `urgent`; `None` clears it.
    pub fn set_priority(&self, id: &str, priority: Option<&str>) -> Result<()> {
        let priority = match priority.map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(Priority::parse(p).ok_or_else(|| {
                Error::invalid(Problem::new(
                    "priority",
                    ProblemKind::NotInList,
                    format!("{p:?} is not low, normal, high or urgent"),
                ))
            })?),
        };
        self.shared_edit(id, |_| vec![FieldValue::Priority(priority)])
    }

    /// A request as replicated: merged fields, notes and photos in force, and the whole
    /// history with conflict flags.
    pub fn request(&self, id: &str) -> Result<Document> {
        let id = RequestId::parse(id)?;
        let doc = self.read(|c| log::document(c, &id))?;
        if doc.history.is_empty() {
            return Err(Error::no_request(id));
        }
        Ok(doc)
    }

    /// Ids of the requests this device holds replicated state for (its own sent ones, an
    /// inspector's wards, reports near a resident), newest first.
    pub fn replicated_requests(&self) -> Result<Vec<String>> {
        let mut ids = self.read(log::request_ids)?;
        ids.reverse();
        Ok(ids.into_iter().map(|id| id.to_string()).collect())
    }
}

impl Replica for Store {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn outgoing(&self, limit: usize) -> Result<Outgoing> {
        let env = self.env();
        let mut sent = Vec::new();
        let outgoing = self.write(|tx| {
            let changes = log::pending(tx, limit, |id| is_draft(tx, id))?;
            log::mark_pushed(tx, &changes)?;
            let ids: BTreeSet<RequestId> = changes.iter().map(|c| c.request_id).collect();
            for id in ids {
                if let Some((crate::vocab::Lifecycle::Queued, _)) = request::lifecycle_of(tx, &id)?
                {
                    request::mark_sent(tx, env, &id)?;
                    sent.push(RequestEvent::new(&id, Origin::Sync, ChangeKind::Sent));
                }
            }
            let cursor = sql::get(tx, Key::SYNC_CURSOR)?;
            // Until a full pull has ended, this device lacks some of its own sent changes: the
            // server must not leave them out.
            let replica = match (&cursor, sql::get(tx, Key::SYNC_FULL_PULL)?) {
                (Some(_), None) => Some(log::replica_id(tx)?),
                _ => None,
            };
            Ok(Outgoing {
                changes,
                cursor,
                replica,
            })
        })?;
        self.listeners.notify(&sent);
        Ok(outgoing)
    }

    fn commit(&self, pushed: &[Change], answer: &SyncResponse) -> Result<()> {
        let env = self.env();
        let touched = self.write(|tx| {
            log::acknowledge(tx, pushed)?;
            for c in pushed {
                if let FieldValue::Photo(p) = &c.value {
                    request::queue_upload(tx, &p.sha256, env.now_ms)?;
                }
            }
            let (_, touched) = request::apply_pulled(tx, env, &answer.changes, &answer.assigned)?;
            sql::set(tx, Key::SYNC_CURSOR, &answer.cursor)?;
            if !answer.more {
                sql::remove(tx, Key::SYNC_FULL_PULL)?;
            }
            Ok(touched)
        })?;
        self.reindex_touched(touched)?;
        if self.listeners.any() {
            let changed = answer
                .changes
                .iter()
                .map(|c| (c.request_id, ChangeKind::of_field(&c.field())));
            let numbered = answer
                .assigned
                .iter()
                .map(|a| (a.request_id, ChangeKind::Accepted));
            self.listeners.notify(&RequestEvent::grouped(
                Origin::Sync,
                changed.chain(numbered),
            ));
        }
        Ok(())
    }

    fn set_clock_offset(&self, offset_ms: i64, refused_at: Option<i64>) -> Result<usize> {
        self.write(|tx| log::set_clock_offset(tx, offset_ms, refused_at))
    }

    fn clock_offset(&self) -> Result<i64> {
        Ok(self.read(log::clock)?.offset_ms)
    }

    fn restart_pull(&self) -> Result<()> {
        self.write(|tx| {
            // Only what the server holds is dropped; unsent changes stay queued.
            log::drop_sent(tx)?;
            sql::remove(tx, Key::SYNC_CURSOR)?;
            sql::set(tx, Key::SYNC_FULL_PULL, "1")?;
            Ok(())
        })
    }

    fn reject(&self, request_id: &RequestId, reason: &str) -> Result<()> {
        let env = self.env();
        self.write(|tx| request::reject(tx, env, request_id, reason))?;
        self.reindex(request_id)?;
        self.listeners.notify(&[RequestEvent::new(
            request_id,
            Origin::Sync,
            ChangeKind::Rejected,
        )]);
        Ok(())
    }

    fn pending_count(&self) -> Result<u64> {
        self.pending_changes()
    }

    fn queued_photos(&self) -> Result<Vec<(String, u64)>> {
        self.write(request::queued_uploads)
    }

    fn photo_bytes(&self, sha256: &str) -> Result<Vec<u8>> {
        self.photo_jpeg(sha256)
    }

    fn photo_uploaded(&self, sha256: &str) -> Result<()> {
        self.write(|tx| request::uploaded(tx, sha256))
    }
}
