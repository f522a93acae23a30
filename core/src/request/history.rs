//! A request's history, read from two sources without writing anything twice: the change log
//! (its creation, and every status the city set, with the note that came with it) and the
//! device's own lifecycle events (queued, sent, accepted, withdrawn, refused, and statuses
//! learned outside sync), kept in the request's row as a JSON list: a step writes the page the
//! row is on, which the step changes anyway.

use rusqlite::Connection;
use serde::Deserialize;

use super::HistoryEntry;
use crate::error::{Error, Result};
use crate::sync::log;
use crate::vocab::time::from_ms;
use crate::vocab::{Field, FieldValue, RequestId, State};

/// Appends a step of the device's own to the row's `events` (`?{at}` the time, then the state
/// and the note), as part of the UPDATE that makes the step: one write.
pub(super) fn append(at: usize) -> String {
    format!(
        "events = json_insert(events, '$[#]', json_object('at', ?{}, 'state', ?{}, 'note', ?{}))",
        at,
        at + 1,
        at + 2
    )
}

/// One of the device's own steps, as the row keeps it.
#[derive(Deserialize)]
struct Event {
    at: i64,
    state: String,
    note: Option<String>,
}

pub(super) fn history(conn: &Connection, id: &RequestId) -> Result<Vec<HistoryEntry>> {
    let mut steps: Vec<(i64, State, Option<String>)> = Vec::new();
    let logged = log::load_fields(conn, id, &[Field::Create, Field::Status, Field::Note])?;
    // Creation: the lowest stamp, as the merge decides.
    if let Some(c) = logged.iter().find(|c| c.field() == Field::Create) {
        if let FieldValue::Create(created) = &c.value {
            let at = created.created_at.unwrap_or(c.hlc.ms() as i64);
            steps.push((at, State::Draft, None));
        }
    }
    let events: String = conn
        .prepare_cached("SELECT events FROM requests WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    let events: Vec<Event> = serde_json::from_str(&events).map_err(|e| Error::Stored {
        what: "a request's lifecycle events",
        detail: e.to_string(),
    })?;
    for e in events {
        if let Some(state) = State::parse(&e.state) {
            steps.push((e.at, state, e.note));
        }
    }
    for c in &logged {
        let FieldValue::Status(status) = c.value else {
            continue;
        };
        // The note written with it: by the same replica, for this status, right after it.
        let note = logged
            .iter()
            .filter(|n| n.replica() == c.replica() && n.hlc >= c.hlc)
            .find_map(|n| match &n.value {
                FieldValue::Note(note) if note.public && note.status == Some(status) => {
                    Some(note.text.clone())
                }
                _ => None,
            });
        steps.push((c.hlc.ms() as i64, status.into(), note));
    }
    // Stable: at the same millisecond, creation, then the device's steps, then the city's.
    steps.sort_by_key(|(at, _, _)| *at);
    let mut from = None;
    Ok(steps
        .into_iter()
        .map(|(at, to, note)| {
            let entry = HistoryEntry {
                at: from_ms(at),
                from,
                to,
                note,
            };
            from = Some(to);
            entry
        })
        .collect())
}
