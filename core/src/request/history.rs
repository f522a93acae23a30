//! A request's history, read from two sources without writing anything twice: the change log
//! (its creation, and every status the city set, with the note that came with it) and the
//! device's own lifecycle events (queued, sent, accepted, withdrawn, refused, and statuses
//! learned outside sync).

use rusqlite::{params, Connection, Transaction};

use super::HistoryEntry;
use crate::error::Result;
use crate::sync::log;
use crate::vocab::time::from_ms;
use crate::vocab::{Field, FieldValue, RequestId, State};

/// Records a step of the device's own: what the request became, and why.
pub(super) fn record(
    tx: &Transaction,
    id: &RequestId,
    at: i64,
    to: State,
    note: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO request_events (request_id, seq, at, state, note)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM request_events WHERE request_id = ?1),
                 ?2, ?3, ?4)",
    )?
    .execute(params![id, at, to.as_str(), note])?;
    Ok(())
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
    let mut events = conn.prepare_cached(
        "SELECT at, state, note FROM request_events WHERE request_id = ?1 ORDER BY seq",
    )?;
    let rows = events.query_map([id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
    })?;
    for row in rows {
        let (at, state, note) = row?;
        if let Some(state) = State::parse(&state) {
            steps.push((at, state, note));
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
