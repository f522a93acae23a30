//! Telling the app what changed: after each commit — the user's own edits and changes that
//! arrive by sync alike — every registered [`Listener`] hears which requests changed and how,
//! so a screen re-reads only those. Listeners are called after the transaction has committed
//! and outside every lock, on the thread that wrote, once the store's own indexes are up to
//! date; one that panics is dropped from that call and the others still hear.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::sync::Change;
use crate::vocab::{Field, RequestId};

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    /// Its description, answers, location, address or contact.
    Edited,
    Photos,
    Submitted,
    Withdrawn,
    Deleted,
    /// Handed to the server.
    Sent,
    /// The city gave it its number.
    Accepted,
    /// The server refused it; it is a draft again, with the reason.
    Rejected,
    Status,
    Note,
    Assignment,
    Priority,
    Duplicate,
    ExpectedDate,
    /// The user saw the request's news (its unread count is now zero).
    Seen,
}

impl ChangeKind {
    pub fn of_field(field: &Field) -> ChangeKind {
        match field {
            Field::Create => ChangeKind::Created,
            Field::ServiceRequestId => ChangeKind::Accepted,
            Field::Description
            | Field::Attribute(_)
            | Field::Location
            | Field::Address
            | Field::Contact
            | Field::Visibility => ChangeKind::Edited,
            Field::Status => ChangeKind::Status,
            Field::Priority => ChangeKind::Priority,
            Field::Assignee => ChangeKind::Assignment,
            Field::ExpectedAt => ChangeKind::ExpectedDate,
            Field::DuplicateOf => ChangeKind::Duplicate,
            Field::Note | Field::NoteRetract => ChangeKind::Note,
            Field::Photo | Field::PhotoRemove => ChangeKind::Photos,
        }
    }
}

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// This device's user, through the store.
    Local,
    /// The server (a sync, or an import of changes from elsewhere).
    Sync,
}

/// One request that changed in one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestEvent {
    pub request_id: String,
    pub origin: Origin,
    /// Sorted, each kind once.
    pub kinds: Vec<ChangeKind>,
}

impl RequestEvent {
    pub fn new(id: &RequestId, origin: Origin, kind: ChangeKind) -> RequestEvent {
        RequestEvent {
            request_id: id.to_string(),
            origin,
            kinds: vec![kind],
        }
    }

    /// One event per request the changes touch, in request order.
    pub fn of_changes(changes: &[Change], origin: Origin) -> Vec<RequestEvent> {
        RequestEvent::grouped(
            origin,
            changes
                .iter()
                .map(|c| (c.request_id, ChangeKind::of_field(&c.field()))),
        )
    }

    /// One event per request of `kinds`, in request order, each kind once.
    pub fn grouped(
        origin: Origin,
        kinds: impl IntoIterator<Item = (RequestId, ChangeKind)>,
    ) -> Vec<RequestEvent> {
        let mut by_request: BTreeMap<RequestId, BTreeSet<ChangeKind>> = BTreeMap::new();
        for (id, kind) in kinds {
            by_request.entry(id).or_default().insert(kind);
        }
        by_request
            .into_iter()
            .map(|(id, kinds)| RequestEvent {
                request_id: id.to_string(),
                origin,
                kinds: kinds.into_iter().collect(),
            })
            .collect()
    }
}

/// What the app registers to hear about changes.
pub trait Listener: Send + Sync {
    fn changed(&self, events: &[RequestEvent]);
}

/// Returned by [`crate::Store::listen`]; give it back to stop listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

#[derive(Default)]
pub(crate) struct Listeners {
    next: AtomicU64,
    all: Mutex<Vec<(ListenerId, Arc<dyn Listener>)>>,
}

impl Listeners {
    fn lock(&self) -> MutexGuard<'_, Vec<(ListenerId, Arc<dyn Listener>)>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, listener: Arc<dyn Listener>) -> ListenerId {
        let id = ListenerId(self.next.fetch_add(1, Ordering::Relaxed));
        self.lock().push((id, listener));
        id
    }

    /// False when `id` was not listening (removed already): removing twice is harmless.
    pub fn remove(&self, id: ListenerId) -> bool {
        let mut all = self.lock();
        let before = all.len();
        all.retain(|(i, _)| *i != id);
        all.len() != before
    }

    pub fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Calls every listener with `events` (none when empty). The list is copied first, so a
    /// listener may add or remove listeners, or read the store, from its call.
    pub fn notify(&self, events: &[RequestEvent]) {
        if events.is_empty() {
            return;
        }
        let all: Vec<Arc<dyn Listener>> = self.lock().iter().map(|(_, l)| l.clone()).collect();
        for l in all {
            // The app's code must not unwind through the store: its commit has happened.
            let _ = catch_unwind(AssertUnwindSafe(|| l.changed(events)));
        }
    }
}
