//! A request as the public sees it over Open311, merged from its changes with the same code
//! every replica uses. Only what a stranger may read: never contact details, internal notes,
//! device or replica ids, or the author of a note beyond its role.
//!
//! A [`Rec`] keeps the spec's field order and is written out as JSON or XML alike.

use curbside_core::sync::merge;
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

/// One request as `GET requests` answers it; with `extensions`, the public notes timeline,
/// ward, channel and the city's detailed status too.
pub fn request(found: FoundRequest, catalog: &Catalog, extensions: bool) -> Rec {
    let FoundRequest {
        request_id,
        number,
        ward,
        created_at_ms,
        updated_at_ms,
        changes,
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
        ("service_code", text(code)),
        ("description", opt(description)),
        ("agency_responsible", V::Null),
        ("service_notice", V::Null),
        ("requested_datetime", text(dates::format(created_at_ms))),
        ("updated_datetime", text(dates::format(updated_at_ms))),
        ("expected_datetime", opt(expected.map(dates::format))),
        ("address", opt(address)),
        ("address_id", V::Null),
        ("zipcode", V::Null),
        ("lat", location.as_ref().map_or(V::Null, |l| V::Num(l.lat))),
        ("long", location.as_ref().map_or(V::Null, |l| V::Num(l.lon))),
        ("media_url", V::Null),
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
        rec.push((
            "extended_attributes",
            V::Obj(vec![
                ("channel", text(channel)),
                ("ward", opt(ward)),
                ("detailed_status", text(status.as_str())),
                ("notes", V::List("note", notes)),
            ]),
        ));
    }
    rec
}
