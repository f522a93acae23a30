//! Requests once they have left the device: a request's whole detail (merged fields, notes,
//! photos, history with conflict flags), an inspector's actions, the city's unread news for a
//! resident, and listeners told of every change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use curbside_core as core;
use curbside_core::{Field, FieldValue};

use crate::error::CallbackError;
use crate::types::ms_time;
use crate::{ApiResult, CurbsideStore, Location, RequestState};

/// A note on a request. Residents see public notes only.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RequestNote {
    pub id: String,
    /// The writer's role (`inspector`, `resident`, `staff`): never who.
    pub author_role: String,
    pub text: String,
    pub public: bool,
    /// The status this note explains, for a status change's note.
    pub status: Option<RequestState>,
    pub at: SystemTime,
    /// Written on this device.
    pub mine: bool,
}

/// One change in a request's history.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HistoryChange {
    /// The field's name (`status`, `description`, `attr:SIZE`, `note`, …).
    pub field: String,
    /// The value as JSON.
    pub value: String,
    pub at: SystemTime,
    /// For fields with one value: this is the value in force.
    pub current: bool,
    /// Written without seeing a concurrent write of the same field: the merge picked one, a
    /// person should look at both.
    pub conflict: bool,
    pub mine: bool,
}

/// A request as replicated on this device: the user's own, an inspector's ward's, or one near
/// a resident.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RequestDetail {
    pub id: String,
    /// Made on this device (a draft's detail is its [`crate::Draft`]).
    pub mine: bool,
    pub service_code: Option<String>,
    /// The city's public number.
    pub service_request_id: Option<String>,
    /// The state a person sees: the device's own step until the city's status arrives.
    pub state: RequestState,
    pub description: Option<String>,
    pub attributes: HashMap<String, Vec<String>>,
    pub location: Option<Location>,
    pub address: Option<String>,
    pub priority: Option<String>,
    pub assignee: Option<String>,
    /// When the city expects to resolve it.
    pub expected_at: Option<SystemTime>,
    /// The request staff found this one repeats.
    pub duplicate_of: Option<String>,
    pub created_at: Option<SystemTime>,
    /// How it reached the city (`app`, `open311`, …).
    pub channel: Option<String>,
    pub notes: Vec<RequestNote>,
    /// SHA-256 names of the photos in force (bytes on this device when it took them).
    pub photos: Vec<String>,
    pub history: Vec<HistoryChange>,
}

/// A piece of the city's news about one of the user's requests.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RequestUpdate {
    pub request_id: String,
    pub service_request_id: Option<String>,
    pub service_code: String,
    pub at: SystemTime,
    /// The new status, for a status change.
    pub status: Option<RequestState>,
    /// The public note's text, for a note.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ChangeKind {
    Created,
    Edited,
    Photos,
    Submitted,
    Withdrawn,
    Deleted,
    Sent,
    Accepted,
    Rejected,
    Status,
    Note,
    Assignment,
    Priority,
    Duplicate,
    ExpectedDate,
    /// The user saw the request's news.
    Seen,
}

/// One request changed by one commit.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RequestChange {
    pub request_id: String,
    /// It came from the server (a sync), not from this device's user.
    pub from_sync: bool,
    pub kinds: Vec<ChangeKind>,
}

/// Told after each commit which requests changed and how; called on the thread that wrote
/// (a sync's thread for what sync brings), after the commit, never under a lock. Re-read what
/// you show; hand the work to the UI thread yourself. What it throws is logged and ignored.
#[uniffi::export(with_foreign)]
pub trait ChangeListener: Send + Sync {
    fn on_change(&self, changes: Vec<RequestChange>) -> Result<(), CallbackError>;
}

struct Bridge(Arc<dyn ChangeListener>);

impl core::Listener for Bridge {
    fn changed(&self, events: &[core::RequestEvent]) {
        let changes = events
            .iter()
            .map(|e| RequestChange {
                request_id: e.request_id.clone(),
                from_sync: e.origin == core::Origin::Sync,
                kinds: e.kinds.iter().map(|&k| k.into()).collect(),
            })
            .collect();
        if let Err(e) = self.0.on_change(changes) {
            tracing::warn!(target: "curbside::ffi", "a change listener failed: {e}");
        }
    }
}

impl From<core::ChangeKind> for ChangeKind {
    fn from(k: core::ChangeKind) -> Self {
        use core::ChangeKind as K;
        match k {
            K::Created => ChangeKind::Created,
            K::Edited => ChangeKind::Edited,
            K::Photos => ChangeKind::Photos,
            K::Submitted => ChangeKind::Submitted,
            K::Withdrawn => ChangeKind::Withdrawn,
            K::Deleted => ChangeKind::Deleted,
            K::Sent => ChangeKind::Sent,
            K::Accepted => ChangeKind::Accepted,
            K::Rejected => ChangeKind::Rejected,
            K::Status => ChangeKind::Status,
            K::Note => ChangeKind::Note,
            K::Assignment => ChangeKind::Assignment,
            K::Priority => ChangeKind::Priority,
            K::Duplicate => ChangeKind::Duplicate,
            K::ExpectedDate => ChangeKind::ExpectedDate,
            K::Seen => ChangeKind::Seen,
        }
    }
}

fn detail(store: &core::Store, id: &str) -> ApiResult<RequestDetail> {
    let doc = store.request(id)?;
    let own = store.replica_id();
    let at_of = |c: &core::sync::Change| ms_time(c.hlc.ms() as i64);
    let mut note_at = HashMap::new();
    let mut history = Vec::with_capacity(doc.history.len());
    for h in &doc.history {
        if let FieldValue::Note(n) = &h.change.value {
            note_at.insert(n.id.clone(), (at_of(&h.change), h.change.replica() == own));
        }
        history.push(HistoryChange {
            field: h.change.field().name().into_owned(),
            value: serde_json::to_value(&h.change.value)
                .ok()
                .and_then(|v| v.as_object().and_then(|o| o.values().next().cloned()))
                .map(|v| v.to_string())
                .unwrap_or_default(),
            at: at_of(&h.change),
            current: h.current,
            conflict: h.conflict,
            mine: h.change.replica() == own,
        });
    }
    let creation = doc.creation().cloned();
    let mine = doc
        .history
        .iter()
        .any(|h| h.change.field() == Field::Create && h.change.replica() == own);
    let state = match (mine, store.draft(id)) {
        (true, Ok(d)) => d.state.into(),
        _ => doc
            .status()
            .map(|s| core::State::from(s).into())
            .unwrap_or(RequestState::Accepted),
    };
    let mut attributes = HashMap::new();
    let (mut description, mut location, mut address) = (None, None, None);
    let (mut priority, mut assignee, mut expected_at, mut duplicate_of) = (None, None, None, None);
    for value in doc.fields.values() {
        match value {
            FieldValue::Description(d) => description = Some(d.clone()),
            FieldValue::Attribute(code, values) if !values.is_empty() => {
                attributes.insert(code.clone(), values.clone());
            }
            FieldValue::Location(l) => location = l.map(Into::into),
            FieldValue::Address(a) => address = a.clone(),
            FieldValue::Priority(p) => priority = p.map(|p| p.as_str().to_string()),
            FieldValue::Assignee(a) => assignee = a.clone(),
            FieldValue::ExpectedAt(at) => expected_at = at.map(ms_time),
            FieldValue::DuplicateOf(d) => duplicate_of = d.map(|d| d.to_string()),
            _ => {}
        }
    }
    let notes = doc
        .notes
        .iter()
        .map(|n| {
            let (at, mine) = note_at.get(&n.id).cloned().unwrap_or((ms_time(0), false));
            RequestNote {
                id: n.id.clone(),
                author_role: n.author.clone(),
                text: n.text.clone(),
                public: n.public,
                status: n.status.map(|s| core::State::from(s).into()),
                at,
                mine,
            }
        })
        .collect();
    Ok(RequestDetail {
        id: doc.request_id.to_string(),
        mine,
        service_code: creation.as_ref().map(|c| c.service_code.clone()),
        service_request_id: doc.service_request_id().map(str::to_string),
        state,
        description,
        attributes,
        location,
        address,
        priority,
        assignee,
        expected_at,
        duplicate_of,
        created_at: creation.as_ref().and_then(|c| c.created_at).map(ms_time),
        channel: creation.and_then(|c| c.channel),
        notes,
        photos: doc.photos.iter().map(|p| p.sha256.clone()).collect(),
        history,
    })
}

static NEXT_LISTENER: AtomicU64 = AtomicU64::new(1);

#[uniffi::export]
impl CurbsideStore {
    /// A request as replicated here, with its notes, photos and whole history.
    pub fn request_detail(&self, id: String) -> ApiResult<RequestDetail> {
        let open = self.store()?;
        detail(&open, &id)
    }

    /// The requests this device holds replicated state for (the user's sent ones, an
    /// inspector's wards, reports near a resident), newest first.
    pub fn replicated_requests(&self) -> ApiResult<Vec<String>> {
        Ok(self.store()?.replicated_requests()?)
    }

    /// The city's status with the note that explains it (public). Inspectors only; offline
    /// first, sent by the next sync.
    pub fn set_status(
        &self,
        id: String,
        status: RequestState,
        note: Option<String>,
    ) -> ApiResult<()> {
        Ok(self
            .store()?
            .set_status(&id, status.into(), note.as_deref())?)
    }

    /// A note (public: the reporter sees it; internal: inspectors only). Residents may add
    /// public notes to their own requests. Returns the note's id.
    pub fn add_note(&self, id: String, text: String, public: bool) -> ApiResult<String> {
        Ok(self.store()?.add_note(&id, &text, public)?)
    }

    /// Assigns the request to a crew or person (null clears it). Inspectors only.
    pub fn assign(&self, id: String, assignee: Option<String>) -> ApiResult<()> {
        Ok(self.store()?.assign(&id, assignee.as_deref())?)
    }

    /// `low`, `normal`, `high` or `urgent` (null clears it). Inspectors only.
    pub fn set_priority(&self, id: String, priority: Option<String>) -> ApiResult<()> {
        Ok(self.store()?.set_priority(&id, priority.as_deref())?)
    }

    /// Marks the request a duplicate of `parent`: cancelled, with a public note. Inspectors
    /// only.
    pub fn mark_duplicate(
        &self,
        id: String,
        parent: String,
        note: Option<String>,
    ) -> ApiResult<()> {
        Ok(self
            .store()?
            .mark_duplicate(&id, &parent, note.as_deref())?)
    }

    /// The city's news about the user's requests not yet seen, oldest first: for
    /// notifications and unread badges.
    pub fn unread_updates(&self, limit: u32) -> ApiResult<Vec<RequestUpdate>> {
        Ok(self
            .store()?
            .unread_updates(limit)?
            .into_iter()
            .map(|u| RequestUpdate {
                request_id: u.request_id,
                service_request_id: u.service_request_id,
                service_code: u.service_code,
                at: ms_time(u.at_ms),
                status: u.status.map(Into::into),
                note: u.note,
            })
            .collect())
    }

    /// The user has seen the request's news; returns how many pieces were unseen.
    pub fn mark_seen(&self, id: String) -> ApiResult<u32> {
        Ok(self.store()?.mark_seen(&id)? as u32)
    }

    /// Starts telling `listener` of every later commit; returns a handle for
    /// [`CurbsideStore::remove_listener`].
    pub fn add_listener(&self, listener: Arc<dyn ChangeListener>) -> ApiResult<u64> {
        let store = self.store()?;
        let id = store.listen(Arc::new(Bridge(listener)));
        let handle = NEXT_LISTENER.fetch_add(1, Ordering::Relaxed);
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((handle, id));
        Ok(handle)
    }

    /// Stops a listener; false when it had stopped already (removing twice does nothing).
    pub fn remove_listener(&self, handle: u64) -> bool {
        let mut all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = all.iter().position(|(h, _)| *h == handle) else {
            return false;
        };
        let (_, id) = all.remove(i);
        drop(all);
        if let Ok(store) = self.store() {
            store.unlisten(id);
        }
        true
    }
}
