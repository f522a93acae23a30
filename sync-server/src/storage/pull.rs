//! A pull, on one snapshot: what one device may see, page by page through the feed of its keys,
//! and the open requests around a resident's new places, each change in the form the device
//! receives it. Written once, over any engine's [`Tx`].

use std::collections::{HashMap, HashSet};

use curbside_core::sync::protocol::Role;
use curbside_core::sync::StoredChange;
use curbside_core::vocab::{Field, FieldValue, ReplicaId, RequestId};

use super::tx::{Tx, R};
use crate::scope::{self, Access, Device};

/// Requests a push's new places bring into a resident's view at once (the rest arrive as they
/// change; the duplicate check needs the open ones nearby, and there are rarely this many).
const BACKFILL: usize = 50;

/// A page of a pull, shaped for its device.
#[derive(Debug)]
pub struct Page {
    pub changes: Vec<StoredChange>,
    pub cursor: String,
    pub more: bool,
}

/// What one device may see, decided per request by the scope rule and remembered for the call.
struct View<'d> {
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
    fn new(tx: &mut dyn Tx, device: &'d Device, pseudonym_key: &'d str) -> R<View<'d>> {
        let places = if device.role == Role::Resident {
            tx.reported_places(&device.id)?
        } else {
            Vec::new()
        };
        Ok(View {
            device,
            pseudonym_key,
            places,
            access: HashMap::new(),
            own: tx.replicas_of(&device.id)?.into_iter().collect(),
            public_notes: HashMap::new(),
        })
    }

    fn access(&mut self, tx: &mut dyn Tx, request_id: &RequestId) -> R<Access> {
        if let Some(a) = self.access.get(request_id) {
            return Ok(*a);
        }
        let a = match tx.scope_row(request_id)? {
            None => Access::None,
            Some(row) => scope::access(self.device, &row, &self.places),
        };
        self.access.insert(*request_id, a);
        Ok(a)
    }

    fn allows(&mut self, tx: &mut dyn Tx, c: &StoredChange) -> R<bool> {
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
    fn retracts_public_note(&mut self, tx: &mut dyn Tx, c: &StoredChange) -> R<bool> {
        let Ok(FieldValue::NoteRetract(id)) = FieldValue::from_json_text(&c.field, c.value.get())
        else {
            return Ok(false);
        };
        if let std::collections::hash_map::Entry::Vacant(e) = self.public_notes.entry(c.request_id)
        {
            let ids = tx
                .load(&c.request_id, Some(&[Field::Note]))?
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
    fn shape(&self, c: StoredChange) -> Option<StoredChange> {
        let access = self.access.get(&c.request_id).copied()?;
        let own = self.own.contains(&c.id.replica);
        scope::shape(self.device, access, c, self.pseudonym_key, own)
    }
}

/// One pull of `device` from `cursor`: a page of what it may see, then (for a resident whose
/// push created `fresh` requests) the open requests around them.
pub fn pull(
    tx: &mut dyn Tx,
    device: &Device,
    pseudonym_key: &str,
    cursor: Option<&str>,
    page: usize,
    replica: Option<&ReplicaId>,
    fresh: &[RequestId],
) -> R<Page> {
    let state = tx.log_state()?;
    let after = state.position(cursor)?;
    let mut view = View::new(tx, device, pseudonym_key)?;
    let (mut changes, seq, more) = page_of(tx, &mut view, after, page, replica)?;
    // A resident reporting from a new place sees what is already open around it.
    if device.role == Role::Resident && !fresh.is_empty() {
        // Within the page when it can; half a page at least, so a full pull does not lose it.
        let room = page.saturating_sub(changes.len()).max(page / 2);
        changes.extend(backfill(tx, &mut view, fresh, room)?);
    }
    Ok(Page {
        changes: changes.into_iter().filter_map(|c| view.shape(c)).collect(),
        cursor: state.cursor(seq),
        more,
    })
}

/// A page of what `view`'s device may see after arrival number `after`: the feeds of its keys
/// merged in arrival order, each change checked by the view. Reads at most about `page` feed
/// rows per key and a bounded number of changes, whatever the size of the log; when nothing
/// is left the cursor moves to the end of the log, so a device that sees little is caught up
/// at once.
fn page_of(
    tx: &mut dyn Tx,
    view: &mut View,
    after: u64,
    page: usize,
    replica: Option<&ReplicaId>,
) -> R<(Vec<StoredChange>, u64, bool)> {
    // Only a replica of this device's own is left out: another's would hide its changes.
    let replica = replica.filter(|r| view.own.contains(*r));
    let end = tx.last_seq()?;
    let keys = scope::feed_keys(view.device, &view.places);
    // Changes skipped (the device's own, or outside its view) count too: a page's work is
    // bounded even for a device that may see few of the changes filed under its keys.
    let scan = page.saturating_mul(4).max(64);
    let (mut out, mut cursor, mut scanned) = (Vec::new(), after, 0usize);
    loop {
        // One more than can be taken, to know whether more follow.
        let want = (page - out.len()).min(scan - scanned) + 1;
        let chunk = tx.feed(&keys, cursor, want)?;
        let exhausted = chunk.len() < want;
        for (seq, change) in chunk {
            if out.len() == page || scanned == scan {
                return Ok((out, cursor, true));
            }
            cursor = seq;
            scanned += 1;
            if Some(change.replica()) != replica && view.allows(tx, &change)? {
                out.push(change);
            }
        }
        if exhausted {
            return Ok((out, cursor.max(end), false));
        }
    }
}

/// The public view of open requests near the resident's new requests: at most [`BACKFILL`]
/// requests, whole, within `page` changes, found through the cells around each new place (an
/// index, not a scan).
fn backfill(
    tx: &mut dyn Tx,
    view: &mut View,
    fresh: &[RequestId],
    page: usize,
) -> R<Vec<StoredChange>> {
    let mut out = Vec::new();
    let mut sent = HashSet::new();
    for id in fresh {
        let Some((lat, lon)) = tx.place(id)? else {
            continue;
        };
        if !view.places.contains(&(lat, lon)) {
            view.places.push((lat, lon));
        }
        for cell in scope::cells_near(lat, lon) {
            for other in tx.open_in_cell(&cell, &view.device.id, BACKFILL)? {
                if sent.len() == BACKFILL || !sent.insert(other) {
                    continue;
                }
                // Decided before this place joined the view, perhaps as out of sight.
                view.access.remove(&other);
                let mut whole = Vec::new();
                for c in tx.load(&other, None)? {
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
