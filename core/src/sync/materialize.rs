//! Pulled changes made visible to the app: the user's own requests take the city's number,
//! status and status note; others' requests (an inspector's wards, open reports near a
//! resident) enter the cache duplicate detection reads. Runs in the transaction that applied
//! the changes, so what the app shows never lags what the log holds.

use std::collections::{HashMap, HashSet};

use rusqlite::Transaction;
use serde_json::Value;

use crate::draft::{self, State};
use crate::error::Result;
use crate::geo::KnownRequest;
use crate::sync::Change;

/// What materialising touched, for the duplicate index.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// The user's own requests whose state changed.
    pub own: Vec<String>,
    /// Others' requests, as the duplicate check sees them (`open: false` leaves the index).
    pub known: Vec<KnownRequest>,
}

/// The text of the newest public note that came with `status`, if any.
fn status_note(tx: &Transaction, request_id: &str, status: State) -> Result<Option<String>> {
    let mut stmt = tx.prepare_cached(
        "SELECT value FROM sync_change_rows WHERE request_id = ?1 AND field = 'note'
         ORDER BY hlc DESC, replica DESC",
    )?;
    let values = stmt.query_map([request_id], |r| r.get::<_, String>(0))?;
    for v in values {
        let v: Value = serde_json::from_str(&v?).unwrap_or(Value::Null);
        if v["public"] == Value::Bool(true) && v["status"].as_str() == Some(status.as_str()) {
            return Ok(v["text"].as_str().map(str::to_string));
        }
    }
    Ok(None)
}

/// Changes just applied, by request, of the requests the log held nothing of before them:
/// their merged state is in these changes alone, so materialising them needs no query (most
/// of an initial sync).
#[derive(Default)]
pub(crate) struct NewRequests<'a>(HashMap<&'a str, Vec<&'a Change>>);

impl<'a> NewRequests<'a> {
    pub(crate) fn new(applied: &'a [Change], new: &HashSet<String>) -> NewRequests<'a> {
        let mut by_request: HashMap<&str, Vec<&Change>> = HashMap::new();
        for c in applied.iter().filter(|c| new.contains(&c.request_id)) {
            by_request.entry(&c.request_id).or_default().push(c);
        }
        NewRequests(by_request)
    }
}

/// The fields the app's tables mirror.
const MIRRORED: [&str; 4] = ["create", "location", "status", "service_request_id"];

pub(crate) fn materialize<'a>(
    tx: &Transaction,
    request_ids: impl IntoIterator<Item = &'a str>,
    new: &NewRequests,
) -> Result<Touched> {
    let mut touched = Touched::default();
    for id in request_ids {
        let f = match new.0.get(id) {
            Some(changes) => super::log::merged_values(changes.iter().copied(), &MIRRORED),
            None => super::log::current_values(tx, id, &MIRRORED)?,
        };
        let number = f
            .get("service_request_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let status = f
            .get("status")
            .and_then(Value::as_str)
            .and_then(State::parse)
            .filter(|s| s.is_server_status());
        if let Some(mut state) = draft::state_of(tx, id)? {
            let before = state;
            if let (Some(n), State::Queued | State::Sent) = (&number, state) {
                draft::accept(tx, id, n)?;
                state = State::Accepted;
            }
            if let Some(s) = status.filter(|_| state.is_server_status()) {
                let note = status_note(tx, id, s)?;
                let shown: Option<String> = tx
                    .prepare_cached("SELECT status_notes FROM requests WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))?;
                // A new note on the same status is news to the reporter too.
                if s != state || note != shown {
                    if s == State::Accepted {
                        draft::transition(tx, id, &[state], s, note.as_deref(), "reopen")?;
                    } else {
                        draft::server_status(tx, id, s, note.as_deref())?;
                    }
                    state = s;
                }
            }
            if state != before || status.is_some() {
                touched.own.push(id.to_string());
            }
            continue;
        }
        let create = f.get("create").cloned().unwrap_or(Value::Null);
        let (Some(code), Some(lat), Some(lon)) = (
            create["service_code"].as_str(),
            f.get("location").and_then(|l| l["lat"].as_f64()),
            f.get("location").and_then(|l| l["lon"].as_f64()),
        ) else {
            continue;
        };
        let known = KnownRequest {
            id: id.to_string(),
            service_code: code.to_string(),
            lat,
            lon,
            accuracy_m: f.get("location").and_then(|l| l["accuracy_m"].as_f64()),
            created_at_ms: create["created_at"].as_i64().unwrap_or(0),
            open: status.is_none_or(State::is_open),
        };
        crate::known::upsert_one(tx, &known, number.as_deref())?;
        touched.known.push(known);
    }
    Ok(touched)
}
