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
    fn new(
        device: &'d Device,
        pseudonym_key: &'d str,
        places: Vec<(f64, f64)>,
        own: Vec<ReplicaId>,
    ) -> View<'d> {
        View {
            device,
            pseudonym_key,
            places,
            access: HashMap::new(),
            own: own.into_iter().collect(),
            public_notes: HashMap::new(),
        }
    }

    /// Decides the access to every request of `changes` not decided yet (but those of
    /// `except`'s changes, which are not sent), in one read.
    fn decide(
        &mut self,
        tx: &mut dyn Tx,
        changes: &[(u64, StoredChange)],
        except: Option<&ReplicaId>,
    ) -> R<()> {
        let mut wanted: Vec<RequestId> = changes
            .iter()
            .filter(|(_, c)| Some(c.replica()) != except)
            .map(|(_, c)| c.request_id)
            .filter(|id| !self.access.contains_key(id))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let rows = tx.scope_rows(&wanted)?;
        for id in wanted {
            let a = match rows.get(&id) {
                None => Access::None,
                Some(row) => scope::access(self.device, row, &self.places),
            };
            self.access.insert(id, a);
        }
        Ok(())
    }

    fn access(&mut self, tx: &mut dyn Tx, request_id: &RequestId) -> R<Access> {
        if let Some(a) = self.access.get(request_id) {
            return Ok(*a);
        }
        let a = match tx.scope_rows(&[*request_id])?.remove(request_id) {
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
                .load(&[c.request_id], Some(&[Field::Note]))?
                .remove(&c.request_id)
                .unwrap_or_default()
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
    let context = tx.pull_context(&device.id, device.role == Role::Resident)?;
    let (state, end) = (context.state, context.end);
    let after = state.position(cursor)?;
    let mut view = View::new(device, pseudonym_key, context.places, context.own);
    let (mut changes, seq, more) = page_of(tx, &mut view, after, end, page, replica)?;
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
    end: u64,
    page: usize,
    replica: Option<&ReplicaId>,
) -> R<(Vec<StoredChange>, u64, bool)> {
    // Only a replica of this device's own is left out: another's would hide its changes.
    let replica = replica.filter(|r| view.own.contains(*r));
    let keys = scope::feed_keys(view.device, &view.places);
    // Changes skipped (the device's own, or outside its view) count too: a page's work is
    // bounded even for a device that may see few of the changes filed under its keys.
    let scan = page.saturating_mul(2).max(64);
    let (mut out, mut cursor, mut scanned) = (Vec::new(), after, 0usize);
    loop {
        let want = (page - out.len()).min(scan - scanned);
        let feed = tx.feed(&keys, cursor, want)?;
        view.decide(tx, &feed.changes, replica)?;
        for (seq, change) in feed.changes {
            cursor = seq;
            if Some(change.replica()) != replica && view.allows(tx, &change)? {
                out.push(change);
            }
        }
        cursor = cursor.max(feed.reached);
        scanned += feed.covered.max(1);
        if feed.exhausted {
            return Ok((out, cursor.max(end), false));
        }
        if out.len() >= page || scanned >= scan {
            return Ok((out, cursor, true));
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
    let places = tx.places(fresh)?;
    let mut near: Vec<RequestId> = Vec::new();
    for id in fresh {
        let Some(&(lat, lon)) = places.get(id) else {
            continue;
        };
        if !view.places.contains(&(lat, lon)) {
            view.places.push((lat, lon));
        }
        if near.len() < BACKFILL {
            let cells = scope::cells_near(lat, lon);
            for other in tx.open_near(&cells, &view.device.id, BACKFILL)? {
                if near.len() < BACKFILL && !near.contains(&other) {
                    near.push(other);
                }
            }
        }
    }
    if near.is_empty() {
        return Ok(Vec::new());
    }
    // Decided before these places joined the view, perhaps as out of sight.
    for other in &near {
        view.access.remove(other);
    }
    let mut whole = tx.load(&near, None)?;
    let mut out = Vec::new();
    for other in &near {
        let mut these = Vec::new();
        for c in whole.remove(other).unwrap_or_default() {
            let c = StoredChange::from(&c);
            if view.allows(tx, &c)? {
                these.push(c);
            }
        }
        if out.len() + these.len() > page {
            break;
        }
        out.extend(these);
    }
    Ok(out)
}
