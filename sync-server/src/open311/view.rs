//! A request as the public sees it over Open311, merged from its changes with the same code
//! every replica uses. Only what a stranger may read: never contact details, internal notes,
//! device or replica ids, or the author of a note beyond its role.
//!
//! A [`Rec`] keeps the spec's field order and is written out as JSON or XML alike.

use std::collections::HashMap;
use std::sync::Arc;

use curbside_core::sync::protocol::MEDIA;
use curbside_core::sync::{merge, Change};
use curbside_core::vocab::{Field, FieldValue, RequestId, Status};
use curbside_core::Catalog;

use super::dates;
use crate::scope;
use crate::storage::open311::FoundRequest;

/// A value of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Text(String),
    Num(f64),
    Bool(bool),
    Null,
    Obj(Rec),
    /// A list, its items tagged so in XML.
    List(&'static str, Vec<V>),
}

/// An object's fields, in order.
pub type Rec = Vec<(&'static str, V)>;

fn text(s: impl Into<String>) -> V {
    V::Text(s.into())
}

fn opt(s: Option<impl Into<String>>) -> V {
    s.map_or(V::Null, |s| V::Text(s.into()))
}

/// Writes `v` as JSON.
pub fn json(v: &V, out: &mut String) {
    match v {
        // Most text needs no escaping: copied between its quotes as it is.
        V::Text(s) if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        V::Text(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        V::Num(x) => out.push_str(&serde_json::to_string(x).unwrap_or_else(|_| "null".into())),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Null => out.push_str("null"),
        V::Obj(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(k);
                out.push_str("\":");
                json(v, out);
            }
            out.push('}');
        }
        V::List(_, items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(v, out);
            }
            out.push(']');
        }
    }
}

/// The role a note shows: who wrote it, never which device.
fn role(author: &str) -> &'static str {
    scope::author_role(author)
}

/// What a request's changes show the public, merged once: kept while the request is
/// unchanged ([`Cache`], by its update time, which every change moves on).
#[derive(Debug, Clone)]
pub struct Public {
    code: String,
    channel: String,
    status: Status,
    status_notes: Option<String>,
    description: Option<String>,
    address: Option<String>,
    location: Option<curbside_core::vocab::Location>,
    expected: Option<i64>,
    photos: Vec<String>,
    notes: Vec<V>,
}

/// The public side of a request, from its changes.
pub fn public(request_id: RequestId, changes: Vec<Change>) -> Public {
    let doc = merge::document(request_id, changes);
    let code = doc
        .creation()
        .map(|c| c.service_code.clone())
        .unwrap_or_default();
    let channel = doc
        .creation()
        .and_then(|c| c.channel.clone())
        .unwrap_or_else(|| "app".into());
    let get = |f: Field| doc.fields.get(&f);
    // When each note was written: its change's stamp (one pass over the history).
    let written: HashMap<&str, i64> = doc
        .history
        .iter()
        .filter_map(|h| match &h.change.value {
            FieldValue::Note(n) => Some((n.id.as_str(), h.change.hlc.ms() as i64)),
            _ => None,
        })
        .collect();
    let written = |id: &str| written.get(id).copied();
    let public_notes: Vec<&curbside_core::vocab::Note> =
        doc.notes.iter().filter(|n| n.public).collect();
    Public {
        status: doc.status().unwrap_or(Status::Accepted),
        status_notes: public_notes
            .iter()
            .rev()
            .find(|n| role(&n.author) != "resident")
            .map(|n| n.text.clone()),
        description: match get(Field::Description) {
            Some(FieldValue::Description(d)) => Some(d.clone()),
            _ => None,
        },
        address: match get(Field::Address) {
            Some(FieldValue::Address(a)) => a.clone(),
            _ => None,
        },
        location: match get(Field::Location) {
            Some(FieldValue::Location(l)) => *l,
            _ => None,
        },
        expected: match get(Field::ExpectedAt) {
            Some(FieldValue::ExpectedAt(at)) => *at,
            _ => None,
        },
        photos: doc.photos.iter().map(|p| p.sha256.clone()).collect(),
        notes: public_notes
            .iter()
            .map(|n| {
                V::Obj(vec![
                    ("datetime", opt(written(&n.id).map(dates::format))),
                    ("type", text("public")),
                    ("role", text(role(&n.author))),
                    ("description", text(n.text.clone())),
                    ("status", opt(n.status.map(|s| s.as_str()))),
                ])
            })
            .collect(),
        code,
        channel,
    }
}

/// Requests' public sides, by request and update time, so a page asked for again is not
/// loaded and merged again: bounded, and a request that changed is merged anew.
pub struct Cache {
    entries: std::sync::Mutex<HashMap<RequestId, (i64, Arc<Public>)>>,
}

/// Requests the cache keeps: a few pages of every filter clients poll.
const CACHED: usize = 50_000;

impl Default for Cache {
    fn default() -> Cache {
        Cache {
            entries: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, (i64, Arc<Public>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The public side of `id` as it was at `updated_at_ms`, if kept.
    pub fn get(&self, id: &RequestId, updated_at_ms: i64) -> Option<Arc<Public>> {
        match self.lock().get(id) {
            Some((at, p)) if *at == updated_at_ms => Some(p.clone()),
            _ => None,
        }
    }

    pub fn put(&self, id: RequestId, updated_at_ms: i64, public: Arc<Public>) {
        let mut entries = self.lock();
        if entries.len() >= CACHED && !entries.contains_key(&id) {
            // Full: the oldest half of what is kept goes (by update time).
            let mut times: Vec<i64> = entries.values().map(|(at, _)| *at).collect();
            times.sort_unstable();
            let cut = times[times.len() / 2];
            entries.retain(|_, (at, _)| *at > cut);
        }
        entries.insert(id, (updated_at_ms, public));
    }
}

/// One request as `GET requests` answers it at `now_ms`: its index row and its public side;
/// with `extensions`, the public notes timeline, ward, channel, the city's detailed status and
/// how it stands against its service's standard too.
///
/// Photos are listed by their URL on this server (`media_url` the first), which serves them to
/// those who may see the request with a Curbside token: they stay private to the city and the
/// neighbourhood, not published.
pub fn request(
    found: &FoundRequest,
    p: &Public,
    catalog: &Catalog,
    extensions: bool,
    now_ms: i64,
    public_url: &str,
) -> Rec {
    let times = &found.standard;
    let service = catalog.service(&p.code);
    let media_urls: Vec<V> = p
        .photos
        .iter()
        .map(|sha| text(format!("{public_url}{MEDIA}/{sha}")))
        .collect();
    let mut rec: Rec = vec![
        ("service_request_id", text(found.number.to_string())),
        (
            "status",
            text(if p.status.is_open() { "open" } else { "closed" }),
        ),
        ("status_notes", opt(p.status_notes.clone())),
        ("service_name", opt(service.map(|s| s.name.clone()))),
        ("service_code", text(p.code.clone())),
        ("description", opt(p.description.clone())),
        ("agency_responsible", V::Null),
        ("service_notice", opt(service.map(|s| s.standard.notice()))),
        (
            "requested_datetime",
            text(dates::format(found.created_at_ms)),
        ),
        ("updated_datetime", text(dates::format(found.updated_at_ms))),
        ("expected_datetime", opt(p.expected.map(dates::format))),
        ("address", opt(p.address.clone())),
        ("address_id", V::Null),
        ("zipcode", V::Null),
        (
            "lat",
            p.location.as_ref().map_or(V::Null, |l| V::Num(l.lat)),
        ),
        (
            "long",
            p.location.as_ref().map_or(V::Null, |l| V::Num(l.lon)),
        ),
        ("media_url", media_urls.first().cloned().unwrap_or(V::Null)),
    ];
    if extensions {
        let date = |ms: Option<i64>| opt(ms.map(dates::format));
        // Late when its deadline passed before it was done (or, not done yet, before now).
        let late = |due: Option<i64>, done: Option<i64>| match due {
            Some(due) => V::Bool(done.unwrap_or(now_ms) > due),
            None => V::Null,
        };
        rec.push((
            "extended_attributes",
            V::Obj(vec![
                ("channel", text(p.channel.clone())),
                ("ward", opt(found.ward.clone())),
                ("detailed_status", text(p.status.as_str())),
                ("notes", V::List("note", p.notes.clone())),
                ("acknowledge_by", date(times.acknowledge_due_ms)),
                ("acknowledged_datetime", date(times.acknowledged_at_ms)),
                (
                    "overdue_acknowledgement",
                    late(times.acknowledge_due_ms, times.acknowledged_at_ms),
                ),
                ("resolve_by", date(times.resolve_due_ms)),
                ("closed_datetime", date(times.closed_at_ms)),
                (
                    "overdue_resolution",
                    late(times.resolve_due_ms, times.closed_at_ms),
                ),
                ("media_urls", V::List("media_url", media_urls)),
                (
                    "likely_duplicates",
                    V::List(
                        "likely_duplicate",
                        found
                            .likely_duplicates
                            .iter()
                            .map(|(n, m)| {
                                V::Obj(vec![
                                    ("service_request_id", text(n.to_string())),
                                    ("distance_m", V::Num((m * 10.0).round() / 10.0)),
                                ])
                            })
                            .collect(),
                    ),
                ),
                (
                    "duplicate_of",
                    opt(found.duplicate_of.map(|n| n.to_string())),
                ),
            ]),
        ));
    }
    rec
}
