//! The city's news about the user's own requests — a new status, a public note — kept until the
//! user has seen it: what a notification or an unread badge shows. Recorded as pulled changes
//! are applied, once per change (a change pulled again after a full resync stays as it was); a
//! status only when it is the one in force (an inspector's late sync of an older status is not
//! news), a note until it is retracted.

use std::collections::HashSet;

use rusqlite::{params, Connection, Transaction};
use serde::Serialize;

use super::Env;
use crate::error::Result;
use crate::sql::{self, Key};
use crate::sync::{log, Change};
use crate::vocab::{Field, FieldValue, RequestId, State};

/// One piece of news about one of the user's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Update {
    pub request_id: String,
    /// The city's number, once it has one.
    pub service_request_id: Option<String>,
    pub service_code: String,
    /// When the city made it (milliseconds since 1970, on the writer's clock).
    pub at_ms: i64,
    /// The new status, for a status change.
    pub status: Option<State>,
    /// The public note's text, for a note.
    pub note: Option<String>,
}

/// Records the pulled changes that are news to the user: statuses and public notes written on
/// another replica, about `mine` (the requests among them this device created, as
/// materialising found them: no lookup per change). Bounded by the page.
pub(crate) fn record(
    tx: &Transaction,
    env: Env,
    changes: &[Change],
    mine: &HashSet<RequestId>,
) -> Result<()> {
    if mine.is_empty() {
        return Ok(());
    }
    let news_from: i64 = sql::get_num(tx, Key::NEWS_FROM, i64::MIN)?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO updates (change_id, request_id, at, status, note, note_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut retract = tx.prepare_cached("DELETE FROM updates WHERE note_id = ?1")?;
    for c in changes {
        if c.replica() == env.replica || !mine.contains(&c.request_id) {
            continue;
        }
        let (status, note) = match &c.value {
            FieldValue::Status(s) => (Some(*s), None),
            FieldValue::Note(n) if n.public => (None, Some(n)),
            FieldValue::NoteRetract(id) => {
                retract.execute([id])?;
                continue;
            }
            _ => continue,
        };
        if (c.hlc.ms() as i64) < news_from {
            continue;
        }
        if let Some(s) = status {
            let current = log::current(tx, &c.request_id, &[Field::Status])?;
            if current.get(&Field::Status) != Some(&FieldValue::Status(s)) {
                continue;
            }
        }
        insert.execute(params![
            c.id.to_string(),
            c.request_id,
            c.hlc.ms() as i64,
            status.map(|s| s.as_str()),
            note.map(|n| n.text.as_str()),
            note.map(|n| n.id.as_str()),
        ])?;
    }
    Ok(())
}

/// Unseen news, oldest first, at most `limit`.
pub(crate) fn unread(conn: &Connection, limit: u32) -> Result<Vec<Update>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.request_id, r.service_request_id, r.service_code, u.at, u.status, u.note
         FROM updates u JOIN requests r ON r.id = u.request_id
         WHERE u.seen = 0 ORDER BY u.at, u.change_id LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(Update {
            request_id: r.get(0)?,
            service_request_id: r.get(1)?,
            service_code: r.get(2)?,
            at_ms: r.get(3)?,
            status: r
                .get::<_, Option<String>>(4)?
                .as_deref()
                .and_then(State::parse),
            note: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Marks every piece of news about `request_id` seen; returns how many were unseen.
pub(crate) fn mark_seen(tx: &Transaction, request_id: &str) -> Result<usize> {
    Ok(tx
        .prepare_cached("UPDATE updates SET seen = 1 WHERE request_id = ?1 AND seen = 0")?
        .execute([request_id])?)
}
