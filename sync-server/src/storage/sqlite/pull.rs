//! A pull, on a reader's snapshot: what one device may see, page by page through the feed of
//! its keys, and the open requests around a resident's new places.

use std::collections::{HashMap, HashSet};

use curbside_core::sync::protocol::Role;
use curbside_core::sync::{log, StoredChange};
use curbside_core::vocab::{Field, FieldValue, ReplicaId, RequestId};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::push::scope_row;
use crate::scope::{self, Access, Device};
use crate::ServerError;

/// Requests a push's new places bring into a resident's view at once (the rest arrive as they
/// change; the duplicate check needs the open ones nearby, and there are rarely this many).
const BACKFILL: usize = 50;

/// What one device may see, decided per request by the scope rule and remembered for the call.
pub(super) struct View<'d> {
    device: &'d Device,
    pseudonym_key: &'d str,
    /// Where a resident has reported from.
    places: Vec<(f64, f64)>,
    access: HashMap<RequestId, Access>,
    /// The replica ids this device pushed under: its own changes are sent as stored.
    own: HashSet<ReplicaId>,
    /// The ids of each request's public notes, read once per call (a resident is told of a
    /// note's retraction only if the note was public).
    public_notes: HashMap<RequestId, HashSet<String>>,
}

impl<'d> View<'d> {
    pub(super) fn new(
        tx: &Transaction,
        device: &'d Device,
        pseudonym_key: &'d str,
    ) -> Result<View<'d>, ServerError> {
        let places = if device.role == Role::Resident {
            reported_places(tx, &device.id)?
        } else {
            Vec::new()
        };
        let own = tx
            .prepare_cached("SELECT replica FROM replicas WHERE device_id = ?1")?
            .query_map([&device.id], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok().and_then(|r| ReplicaId::parse(&r)))
            .collect();
        Ok(View {
            device,
            pseudonym_key,
            places,
            access: HashMap::new(),
            own,
            public_notes: HashMap::new(),
        })
    }

    /// Whether `replica` is one this device pushed under (a claim of another's is not).
    pub(super) fn owns(&self, replica: &ReplicaId) -> bool {
        self.own.contains(replica)
    }

    fn access(&mut self, tx: &Transaction, request_id: &RequestId) -> Result<Access, ServerError> {
        if let Some(a) = self.access.get(request_id) {
            return Ok(*a);
        }
        let a = match scope_row(tx, request_id)? {
            None => Access::None,
            Some(row) => scope::access(self.device, &row, &self.places),
        };
        self.access.insert(*request_id, a);
        Ok(a)
    }

    fn allows(&mut self, tx: &Transaction, c: &StoredChange) -> Result<bool, ServerError> {
        let access = self.access(tx, &c.request_id)?;
        if !scope::sees(self.device, access, c) {
            return Ok(false);
        }
        // Retracting an internal note would tell a resident that one existed, and its id.
        if c.field == Field::NoteRetract && self.device.role != Role::Inspector {
            return self.retracts_public_note(tx, c);
        }
        Ok(true)
    }

    /// Whether a retraction removes a public note (one not found counts as internal). A
    /// request's notes are read once per call, and a request holds a bounded number of changes
    /// ([`super::push::MAX_CHANGES`] from residents).
    fn retracts_public_note(
        &mut self,
        tx: &Transaction,
        c: &StoredChange,
    ) -> Result<bool, ServerError> {
        let Ok(FieldValue::NoteRetract(id)) = FieldValue::from_json_text(&c.field, c.value.get())
        else {
            return Ok(false);
        };
        if let std::collections::hash_map::Entry::Vacant(e) = self.public_notes.entry(c.request_id)
        {
            let ids = log::load_fields(tx, &c.request_id, &[Field::Note])?
                .into_iter()
                .filter_map(|n| match n.value {
                    FieldValue::Note(n) if n.public => Some(n.id),
                    _ => None,
                })
                .collect();
            e.insert(ids);
        }
        Ok(self.public_notes[&c.request_id].contains(&id))
    }

    /// The change in the form this device receives it ([`scope::shape`]).
    pub(super) fn shape(&self, c: StoredChange) -> Option<StoredChange> {
        let access = self.access.get(&c.request_id).copied()?;
        let own = self.owns(&c.id.replica);
        scope::shape(self.device, access, c, self.pseudonym_key, own)
    }
}

pub(super) fn reported_places(
    conn: &Connection,
    device_id: &str,
) -> Result<Vec<(f64, f64)>, ServerError> {
    Ok(conn
        .prepare_cached(
            "SELECT lat, lon FROM requests WHERE created_by = ?1 AND lat IS NOT NULL
             ORDER BY created_at DESC LIMIT ?2",
        )?
        .query_map(params![device_id, scope::MAX_PLACES as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// A page of what `view`'s device may see after arrival number `after`: the feeds of its keys
/// merged in arrival order, each change checked by the view. Reads at most about `page` feed
/// rows per key and a bounded number of changes, whatever the size of the log; when nothing
/// is left the cursor moves to the end of the log, so a device that sees little is caught up
/// at once.
pub(super) fn pull(
    tx: &Transaction,
    view: &mut View,
    after: u64,
    page: usize,
    replica: Option<&ReplicaId>,
) -> Result<(Vec<StoredChange>, u64, bool), ServerError> {
    // Only a replica of this device's own is left out: another's would hide its changes.
    let replica = replica.filter(|r| view.owns(r));
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let end = log::last_seq(tx)?;
    let keys = scope::feed_keys(view.device, &view.places);
    // Changes skipped (the device's own, or outside its view) count too: a page's work is
    // bounded even for a device that may see few of the changes filed under its keys.
    let scan = page.saturating_mul(4).max(64);
    // One stream per key, each the change itself joined to its feed row, merged by arrival.
    let sql = format!(
        "SELECT {}, f.seq FROM feed f JOIN sync_change_rows c ON c.seq = f.seq
         WHERE f.key = ?1 AND f.seq > ?2 ORDER BY f.seq",
        log::STORED_COLUMNS
    );
    // Each stream its own cached statement (the same text twice would share one).
    let mut statements = Vec::with_capacity(keys.len());
    for i in 0..keys.len() {
        statements.push(tx.prepare_cached(&format!("{sql} /* stream {i} */"))?);
    }
    let mut streams = Vec::with_capacity(keys.len());
    for (stmt, key) in statements.iter_mut().zip(&keys) {
        streams.push(stmt.query(params![key, after as i64])?);
    }
    let next = |rows: &mut rusqlite::Rows| -> Result<Option<(u64, StoredChange)>, ServerError> {
        Ok(match rows.next()? {
            Some(r) => Some((r.get::<_, i64>(7)? as u64, log::read_stored(r)?)),
            None => None,
        })
    };
    // The head of each stream, by arrival number; the change waits beside it.
    let mut heads: Vec<Option<StoredChange>> = Vec::with_capacity(keys.len());
    let mut heap = BinaryHeap::new();
    for (i, rows) in streams.iter_mut().enumerate() {
        let head = next(rows)?;
        if let Some((seq, _)) = &head {
            heap.push(Reverse((*seq, i)));
        }
        heads.push(head.map(|(_, c)| c));
    }
    let (mut out, mut cursor, mut scanned) = (Vec::new(), after, 0usize);
    while let Some(Reverse((seq, i))) = heap.pop() {
        let change = heads[i].take().expect("a head for each entry");
        if let Some((s, c)) = next(&mut streams[i])? {
            heap.push(Reverse((s, i)));
            heads[i] = Some(c);
        }
        if seq <= cursor {
            continue; // filed under two of this device's keys
        }
        if out.len() == page || scanned == scan {
            return Ok((out, cursor, true));
        }
        cursor = seq;
        scanned += 1;
        if Some(change.replica()) != replica && view.allows(tx, &change)? {
            out.push(change);
        }
    }
    Ok((out, cursor.max(end), false))
}

/// The public view of open requests near the resident's new requests: at most
/// [`BACKFILL`] requests, whole, within `page` changes, found through the cells around each
/// new place (an index, not a scan).
pub(super) fn backfill(
    tx: &Transaction,
    view: &mut View,
    fresh: &[RequestId],
    page: usize,
) -> Result<Vec<StoredChange>, ServerError> {
    let mut out = Vec::new();
    let mut sent = HashSet::new();
    let mut near = tx.prepare_cached(
        "SELECT request_id FROM requests
         WHERE cell = ?1 AND public AND status NOT IN ('completed', 'cancelled')
           AND created_by <> ?2
         LIMIT ?3",
    )?;
    for id in fresh {
        let place: Option<(f64, f64)> = tx
            .prepare_cached(
                "SELECT lat, lon FROM requests WHERE request_id = ?1 AND lat IS NOT NULL",
            )?
            .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((lat, lon)) = place else { continue };
        if !view.places.contains(&(lat, lon)) {
            view.places.push((lat, lon));
        }
        for cell in scope::cells_near(lat, lon) {
            let others: Vec<String> = near
                .query_map(params![cell, view.device.id, BACKFILL as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for other in others {
                let Ok(other) = RequestId::parse(&other) else {
                    continue;
                };
                if sent.len() == BACKFILL || !sent.insert(other) {
                    continue;
                }
                // Decided before this place joined the view, perhaps as out of sight.
                view.access.remove(&other);
                let mut whole = Vec::new();
                for c in log::load(tx, &other)? {
                    let c = StoredChange::from(&c);
                    if view.allows(tx, &c)? {
                        whole.push(c);
                    }
                }
                if out.len() + whole.len() > page {
                    return Ok(out);
                }
                out.extend(whole);
            }
        }
    }
    Ok(out)
}
