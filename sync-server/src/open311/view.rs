//! A request as the public sees it over Open311, merged from its changes with the same code
//! every replica uses. Only what a stranger may read: never contact details, internal notes,
//! device or replica ids, or the author of a note beyond its role.
//!
//! A [`Rec`] keeps the spec's field order and is written out as JSON or XML alike.

use curbside_core::sync::merge;
use curbside_core::sync::protocol::MEDIA;
use curbside_core::vocab::{Field, FieldValue, Status};
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

/// One request as `GET requests` answers it at `now_ms`; with `extensions`, the public notes
/// timeline, ward, channel, the city's detailed status and how it stands against its
/// service's standard too.
///
/// Photos are listed by their URL on this server (`media_url` the first), which serves them to
/// those who may see the request with a Curbside token: they stay private to the city and the
/// neighbourhood, not published.
pub fn request(
    found: FoundRequest,
    catalog: &Catalog,
    extensions: bool,
    now_ms: i64,
    public_url: &str,
) -> Rec {
    let FoundRequest {
        request_id,
        number,
        ward,
        created_at_ms,
        updated_at_ms,
        standard: times,
        changes,
        likely_duplicates,
        duplicate_of,
    } = found;
    let doc = merge::document(request_id, changes);
    let code = doc
        .creation()
        .map(|c| c.service_code.clone())
        .unwrap_or_default();
    let channel = doc
        .creation()
        .and_then(|c| c.channel.clone())
        .unwrap_or_else(|| "app".into());
    let status = doc.status().unwrap_or(Status::Accepted);
    let get = |f: Field| doc.fields.get(&f);
    let description = match get(Field::Description) {
        Some(FieldValue::Description(d)) => Some(d.clone()),
        _ => None,
    };
    let address = match get(Field::Address) {
        Some(FieldValue::Address(a)) => a.clone(),
        _ => None,
    };
    let location = match get(Field::Location) {
        Some(FieldValue::Location(l)) => *l,
        _ => None,
    };
    let media_urls: Vec<V> = doc
        .photos
        .iter()
        .map(|p| text(format!("{public_url}{MEDIA}/{}", p.sha256)))
        .collect();
    let expected = match get(Field::ExpectedAt) {
        Some(FieldValue::ExpectedAt(at)) => *at,
        _ => None,
    };
    // When each note was written: its change's stamp.
    let written = |id: &str| {
        doc.history.iter().find_map(|h| match &h.change.value {
            FieldValue::Note(n) if n.id == id => Some(h.change.hlc.ms() as i64),
            _ => None,
        })
    };
    let public_notes: Vec<&curbside_core::vocab::Note> =
        doc.notes.iter().filter(|n| n.public).collect();
    let status_notes = public_notes
        .iter()
        .rev()
        .find(|n| role(&n.author) != "resident")
        .map(|n| n.text.clone());
    let mut rec: Rec = vec![
        ("service_request_id", text(number.to_string())),
        (
            "status",
            text(if status.is_open() { "open" } else { "closed" }),
        ),
        ("status_notes", opt(status_notes)),
        (
            "service_name",
            opt(catalog.service(&code).map(|s| s.name.clone())),
        ),
        ("service_code", text(code.clone())),
        ("description", opt(description)),
        ("agency_responsible", V::Null),
        (
            "service_notice",
            opt(catalog.service(&code).map(|s| s.standard.notice())),
        ),
        ("requested_datetime", text(dates::format(created_at_ms))),
        ("updated_datetime", text(dates::format(updated_at_ms))),
        ("expected_datetime", opt(expected.map(dates::format))),
        ("address", opt(address)),
        ("address_id", V::Null),
        ("zipcode", V::Null),
        ("lat", location.as_ref().map_or(V::Null, |l| V::Num(l.lat))),
        ("long", location.as_ref().map_or(V::Null, |l| V::Num(l.lon))),
        ("media_url", media_urls.first().cloned().unwrap_or(V::Null)),
    ];
    if extensions {
        let notes = public_notes
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
            .collect();
        let date = |ms: Option<i64>| opt(ms.map(dates::format));
        // Late when its deadline passed before it was done (or, not done yet, before now).
        let late = |due: Option<i64>, done: Option<i64>| match due {
            Some(due) => V::Bool(done.unwrap_or(now_ms) > due),
            None => V::Null,
        };
        rec.push((
            "extended_attributes",
            V::Obj(vec![
                ("channel", text(channel)),
                ("ward", opt(ward)),
                ("detailed_status", text(status.as_str())),
                ("notes", V::List("note", notes)),
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
                        likely_duplicates
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
                ("duplicate_of", opt(duplicate_of.map(|n| n.to_string()))),
            ]),
        ));
    }
    rec
}
