//! Changes that came from elsewhere, made visible to the app in the transaction that logs them:
//! the user's own requests take the city's number, status and status note; others' requests (an
//! inspector's wards, open reports near a resident) enter the cache duplicate detection reads.

use std::collections::{BTreeSet, HashMap, HashSet};

use rusqlite::{params, Transaction};

use super::edit::accept;
use super::read::lifecycle_of;
use super::{known, Env};
use crate::error::Result;
use crate::geo::KnownRequest;
use crate::sync::log;
use crate::sync::merge;
use crate::sync::protocol::Assigned;
use crate::sync::{ApplyReport, Change};
use crate::vocab::{Field, FieldValue, Lifecycle, RequestId, Status};

/// What materialising touched, for the duplicate index.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// The user's own requests whose state changed.
    pub own: Vec<RequestId>,
    /// Every one of the user's own requests among them: whose changes may be news.
    pub mine: HashSet<RequestId>,
    /// Others' requests, as the duplicate check sees them (`open: false` leaves the index).
    pub known: Vec<KnownRequest>,
}

/// Changes just applied, by request, of the requests the log held nothing of before them:
/// their merged state is in these changes alone, so materialising them needs no query (most
/// of an initial sync).
#[derive(Default)]
pub(crate) struct NewRequests<'a>(HashMap<RequestId, Vec<&'a Change>>);

impl<'a> NewRequests<'a> {
    pub(crate) fn new(applied: &'a [Change], new: &HashSet<RequestId>) -> NewRequests<'a> {
        let mut by_request: HashMap<RequestId, Vec<&Change>> = HashMap::new();
        for c in applied.iter().filter(|c| new.contains(&c.request_id)) {
            by_request.entry(c.request_id).or_default().push(c);
        }
        NewRequests(by_request)
    }
}

/// Logs changes from elsewhere (a pulled page, a bulk import) — all or nothing — together with
/// the public numbers the server gave the user's requests, and brings the app's tables up to
/// date.
pub(crate) fn apply_pulled(
    tx: &Transaction,
    env: Env,
    changes: &[Change],
    assigned: &[Assigned],
) -> Result<(ApplyReport, Touched)> {
    let (report, new) = log::apply_noting_new(tx, changes, env.now_ms)?;
    let mut ids: BTreeSet<RequestId> = changes.iter().map(|c| c.request_id).collect();
    for a in assigned {
        if let Some((Lifecycle::Queued | Lifecycle::Sent, _)) = lifecycle_of(tx, &a.request_id)? {
            accept(tx, env, &a.request_id, &a.service_request_id)?;
        }
        ids.insert(a.request_id);
    }
    let touched = materialize(tx, env, ids, &NewRequests::new(changes, &new))?;
    super::updates::record(tx, env, changes, &touched.mine)?;
    Ok((report, touched))
}

/// The fields the app's tables mirror.
const MIRRORED: [Field; 6] = [
    Field::Create,
    Field::Location,
    Field::Status,
    Field::ServiceRequestId,
    Field::ExpectedAt,
    Field::DuplicateOf,
];

/// The text of the newest public note that came with `status`, if any.
fn status_note(tx: &Transaction, id: &RequestId, status: Status) -> Result<Option<String>> {
    let notes = log::load_fields(tx, id, &[Field::Note])?;
    Ok(notes.iter().rev().find_map(|c| match &c.value {
        FieldValue::Note(n) if n.public && n.status == Some(status) => Some(n.text.clone()),
        _ => None,
    }))
}

/// Mirrors the merged state of `ids` in the app's tables.
pub(crate) fn materialize(
    tx: &Transaction,
    env: Env,
    ids: impl IntoIterator<Item = RequestId>,
    new: &NewRequests,
) -> Result<Touched> {
    let mut touched = Touched::default();
    for id in ids {
        let changes: Vec<Change>;
        let of_request: Vec<&Change> = match new.0.get(&id) {
            Some(cs) => cs.clone(),
            None => {
                changes = log::load_fields(tx, &id, &MIRRORED)?;
                changes.iter().collect()
            }
        };
        let f = merge::current(of_request.iter().copied(), &MIRRORED);
        let number = match f.get(&Field::ServiceRequestId) {
            Some(FieldValue::ServiceRequestId(n)) => Some(n.clone()),
            _ => None,
        };
        let status = match f.get(&Field::Status) {
            Some(FieldValue::Status(s)) => Some(*s),
            _ => None,
        };
        if let Some((mut lifecycle, shown_status)) = lifecycle_of(tx, &id)? {
            touched.mine.insert(id);
            let before = lifecycle;
            if let (Some(n), Lifecycle::Queued | Lifecycle::Sent) = (&number, lifecycle) {
                accept(tx, env, &id, n)?;
                lifecycle = Lifecycle::Delivered;
            }
            if let Some(s) = status.filter(|_| lifecycle == Lifecycle::Delivered) {
                let note = status_note(tx, &id, s)?;
                let shown_note: Option<String> = tx
                    .prepare_cached("SELECT status_notes FROM requests WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))?;
                // A new note on the same status is news to the reporter too.
                if Some(s) != shown_status || note != shown_note {
                    tx.prepare_cached(
                        "UPDATE requests SET status = ?2, status_notes = ?3, updated_at = ?4
                         WHERE id = ?1",
                    )?
                    .execute(params![id, s.as_str(), note, env.now_ms])?;
                }
            }
            // The date the city expects to resolve it, as it last said.
            if let Some(FieldValue::ExpectedAt(at)) = f.get(&Field::ExpectedAt) {
                tx.prepare_cached(
                    "UPDATE requests SET expected_at = ?2 WHERE id = ?1 AND expected_at IS NOT ?2",
                )?
                .execute(params![id, at])?;
            }
            if let Some(FieldValue::DuplicateOf(parent)) = f.get(&Field::DuplicateOf) {
                let parent = parent.map(|p| p.to_string());
                tx.prepare_cached(
                    "UPDATE requests SET duplicate_of = ?2
                     WHERE id = ?1 AND duplicate_of IS NOT ?2",
                )?
                .execute(params![id, parent])?;
            }
            if lifecycle != before || status.is_some() {
                touched.own.push(id);
            }
            continue;
        }
        let (Some(FieldValue::Create(create)), Some(FieldValue::Location(Some(l)))) =
            (f.get(&Field::Create), f.get(&Field::Location))
        else {
            continue;
        };
        let known = KnownRequest {
            id: id.to_string(),
            service_code: create.service_code.clone(),
            lat: l.lat,
            lon: l.lon,
            accuracy_m: l.accuracy_m,
            created_at_ms: create.created_at.unwrap_or(0),
            open: status.is_none_or(Status::is_open),
        };
        known::upsert_one(tx, &known, number.as_deref(), env.now_ms)?;
        touched.known.push(known);
    }
    Ok(touched)
}
