//! The merge rules, as pure functions of a set of changes: replicas holding the same changes
//! hold the same request, whatever the order, duplication or delay of delivery.
//!
//! - set once (`create` at creation, `service_request_id` by the server): the lowest stamp wins;
//! - last-writer-wins registers per field, by (stamp, replica);
//! - grow-only sets (notes, photos) whose removals win over their additions;
//! - each register write carries the stamp it replaced, so concurrent writes are flagged in the
//!   history for a person, while the merge still picks one deterministically.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::change::Change;
use super::clock::Hlc;
use crate::vocab::{Creation, Field, FieldValue, Note, PhotoRef, ReplicaId, RequestId, Status};

/// How a field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Set at creation, never changed: the lowest stamp wins if two ever disagree.
    Once,
    /// Last writer wins, by (stamp, replica).
    Register,
    /// Grow-only set of members identified by an id inside the value.
    Add,
    /// Removal of a member; beats its addition whatever the order.
    Remove,
}

/// The two sets a request has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Set {
    Notes,
    Photos,
}

pub fn kind(field: &Field) -> Kind {
    match field {
        Field::Create | Field::ServiceRequestId => Kind::Once,
        Field::Note | Field::Photo => Kind::Add,
        Field::NoteRetract | Field::PhotoRemove => Kind::Remove,
        _ => Kind::Register,
    }
}

pub fn set_of(field: &Field) -> Option<Set> {
    match field {
        Field::Note | Field::NoteRetract => Some(Set::Notes),
        Field::Photo | Field::PhotoRemove => Some(Set::Photos),
        _ => None,
    }
}

/// The change in force for each register and set-once field: the highest (stamp, replica) for
/// a register, the lowest for a set-once field, whatever the order of `stamps`.
pub fn winners<'a>(
    stamps: impl IntoIterator<Item = (&'a Field, Hlc, &'a ReplicaId)>,
) -> HashMap<&'a Field, (Hlc, &'a ReplicaId)> {
    let mut out: HashMap<&Field, (Hlc, &ReplicaId)> = HashMap::new();
    for (field, hlc, replica) in stamps {
        let newer = |cur: &(Hlc, &ReplicaId)| (hlc, replica) > (cur.0, cur.1);
        let take = match kind(field) {
            Kind::Register => out.get(field).is_none_or(newer),
            Kind::Once => out.get(field).is_none_or(|cur| !newer(cur)),
            _ => false,
        };
        if take {
            out.insert(field, (hlc, replica));
        }
    }
    out
}

/// The values in force of `fields` (registers and set-once fields) among changes of one request.
pub fn current<'a>(
    changes: impl IntoIterator<Item = &'a Change>,
    fields: &[Field],
) -> HashMap<Field, FieldValue> {
    let wanted: Vec<(Field, &Change)> = changes
        .into_iter()
        .map(|c| (c.field(), c))
        .filter(|(f, _)| fields.contains(f))
        .collect();
    let winners = winners(wanted.iter().map(|(f, c)| (f, c.hlc, c.replica())));
    wanted
        .iter()
        .filter(|(f, c)| winners.get(f) == Some(&(c.hlc, c.replica())))
        .map(|(f, c)| (f.clone(), c.value.clone()))
        .collect()
}

/// One entry of a request's replicated history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    pub change: Change,
    /// For registers: this value is the one in force.
    pub current: bool,
    /// Written without seeing a concurrent write of the same field: the merge picked one, a
    /// person should look at both.
    pub conflict: bool,
}

/// A request as every replica holding the same changes sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub request_id: RequestId,
    /// Registers and set-once fields in force.
    pub fields: BTreeMap<Field, FieldValue>,
    /// Notes and photos in force (added, not removed), in stamp order.
    pub notes: Vec<Note>,
    pub photos: Vec<PhotoRef>,
    /// Every change, in (stamp, replica, id) order.
    pub history: Vec<HistoryItem>,
}

impl Document {
    pub fn creation(&self) -> Option<&Creation> {
        match self.fields.get(&Field::Create) {
            Some(FieldValue::Create(c)) => Some(c),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<Status> {
        match self.fields.get(&Field::Status) {
            Some(FieldValue::Status(s)) => Some(*s),
            _ => None,
        }
    }

    pub fn service_request_id(&self) -> Option<&str> {
        match self.fields.get(&Field::ServiceRequestId) {
            Some(FieldValue::ServiceRequestId(n)) => Some(n),
            _ => None,
        }
    }
}

/// Orders changes as every replica does: by (stamp, replica, counter).
pub fn sort(changes: &mut [Change]) {
    changes.sort_by(|a, b| (a.hlc, &a.id).cmp(&(b.hlc, &b.id)));
}

/// The document a set of changes of one request makes. `changes` must be in [`sort`] order.
pub fn document(request_id: RequestId, changes: Vec<Change>) -> Document {
    let fields_of: Vec<Field> = changes.iter().map(Change::field).collect();
    let winners = winners(
        fields_of
            .iter()
            .zip(&changes)
            .map(|(f, c)| (f, c.hlc, c.replica())),
    );
    let in_force = |f: &Field, c: &Change| winners.get(f) == Some(&(c.hlc, c.replica()));
    let mut fields = BTreeMap::new();
    for (f, c) in fields_of.iter().zip(&changes) {
        if in_force(f, c) {
            fields.insert(f.clone(), c.value.clone());
        }
    }
    // Set members: in force when added and never removed; the earliest add gives the value.
    let removed: HashSet<(Set, &str)> = fields_of
        .iter()
        .zip(&changes)
        .filter(|(f, _)| kind(f) == Kind::Remove)
        .filter_map(|(f, c)| Some((set_of(f)?, c.value.member()?)))
        .collect();
    let mut seen = HashSet::new();
    let (mut notes, mut photos) = (Vec::new(), Vec::new());
    for c in &changes {
        match &c.value {
            FieldValue::Note(n)
                if !removed.contains(&(Set::Notes, n.id.as_str()))
                    && seen.insert((Set::Notes, n.id.as_str())) =>
            {
                notes.push(n.clone())
            }
            FieldValue::Photo(p)
                if !removed.contains(&(Set::Photos, p.sha256.as_str()))
                    && seen.insert((Set::Photos, p.sha256.as_str())) =>
            {
                photos.push(p.clone())
            }
            _ => {}
        }
    }
    // Siblings: register writes of one field that replaced the same value. Decided from the set
    // of changes alone, so every replica flags the same ones.
    let mut siblings: HashMap<(&Field, Option<Hlc>), usize> = HashMap::new();
    for (f, c) in fields_of.iter().zip(&changes) {
        if kind(f) == Kind::Register {
            *siblings.entry((f, c.replaced)).or_default() += 1;
        }
    }
    let history = fields_of
        .iter()
        .zip(&changes)
        .map(|(f, c)| {
            let register = kind(f) == Kind::Register;
            HistoryItem {
                current: register && in_force(f, c),
                conflict: register && siblings[&(f, c.replaced)] > 1,
                change: c.clone(),
            }
        })
        .collect();
    Document {
        request_id,
        fields,
        notes,
        photos,
        history,
    }
}

/// The changes of one request that no replica needs once `horizon` has passed: register values
/// overwritten before it, and notes and photos removed before it (with their removals, the
/// tombstones). The merged state without them is the same. Returns their indexes.
pub fn obsolete(changes: &[Change], horizon: Hlc) -> Vec<usize> {
    let fields_of: Vec<Field> = changes.iter().map(Change::field).collect();
    let winners = winners(
        fields_of
            .iter()
            .zip(changes)
            .map(|(f, c)| (f, c.hlc, c.replica())),
    );
    let mut removed: HashMap<(Set, &str), Hlc> = HashMap::new();
    for (f, c) in fields_of.iter().zip(changes) {
        if kind(f) == Kind::Remove {
            if let (Some(set), Some(member)) = (set_of(f), c.value.member()) {
                let at = removed.entry((set, member)).or_insert(c.hlc);
                *at = (*at).max(c.hlc);
            }
        }
    }
    fields_of
        .iter()
        .zip(changes)
        .enumerate()
        .filter(|(_, (f, c))| match kind(f) {
            Kind::Register | Kind::Once => winners
                .get(f)
                .is_some_and(|w| (w.0, w.1) != (c.hlc, c.replica()) && w.0 < horizon),
            Kind::Add | Kind::Remove => set_of(f)
                .zip(c.value.member())
                .and_then(|key| removed.get(&key))
                .is_some_and(|at| *at < horizon),
        })
        .map(|(i, _)| i)
        .collect()
}

impl Serialize for HistoryItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("HistoryItem", 3)?;
        st.serialize_field("change", &self.change)?;
        st.serialize_field("current", &self.current)?;
        st.serialize_field("conflict", &self.conflict)?;
        st.end()
    }
}

/// As the CLI's `--json` has always printed it: fields by name, values as the wire has them.
impl Serialize for Document {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields: BTreeMap<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(f, v)| (f.name().into_owned(), v.to_json()))
            .collect();
        let mut st = s.serialize_struct("Document", 5)?;
        st.serialize_field("request_id", &self.request_id)?;
        st.serialize_field("fields", &fields)?;
        st.serialize_field("notes", &self.notes)?;
        st.serialize_field("photos", &self.photos)?;
        st.serialize_field("history", &self.history)?;
        st.end()
    }
}
