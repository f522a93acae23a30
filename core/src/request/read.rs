//! Reading the device's requests: one whole, a list, and what duplicate detection needs.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{history, photos, Draft, DraftSummary, Duplicate};
use crate::catalog::Standard;
use crate::error::{Error, Result};
use crate::geo::{KnownRequest, Ward};
use crate::sync::log;
use crate::vocab::time::from_ms;
use crate::vocab::{
    Contact, Field, FieldValue, Lifecycle, Location, LocationSource, RequestId, State, Status,
};

pub(super) fn stored_lifecycle(s: &str) -> Result<Lifecycle> {
    Lifecycle::parse(s).ok_or_else(|| Error::Stored {
        what: "a request's lifecycle",
        detail: format!("{s:?} is unknown"),
    })
}

pub(super) fn stored_status(s: Option<String>) -> Result<Option<Status>> {
    s.map(|s| {
        Status::parse(&s).ok_or_else(|| Error::Stored {
            what: "a request's status",
            detail: format!("{s:?} is unknown"),
        })
    })
    .transpose()
}

fn stored_state(s: &str) -> Result<State> {
    State::parse(s).ok_or_else(|| Error::Stored {
        what: "a request's state",
        detail: format!("{s:?} is unknown"),
    })
}

pub(super) fn parse_answers(json: &str) -> Result<BTreeMap<String, Vec<String>>> {
    serde_json::from_str(json).map_err(|e| Error::Stored {
        what: "attribute answers",
        detail: e.to_string(),
    })
}

/// Where one of the user's own requests is in its life; `None` for a request they did not write.
pub(crate) fn lifecycle_of(
    conn: &Connection,
    id: &RequestId,
) -> Result<Option<(Lifecycle, Option<Status>)>> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT lifecycle, status FROM requests WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(l, s)| Ok((stored_lifecycle(&l)?, stored_status(s)?)))
        .transpose()
}

/// The service code and state of a request, or `NotFound`.
pub(super) fn head(conn: &Connection, id: &RequestId) -> Result<(String, State)> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT service_code, state FROM requests WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (code, state) = row.ok_or_else(|| Error::no_request(*id))?;
    Ok((code, stored_state(&state)?))
}

pub(crate) fn get(conn: &Connection, id: &RequestId) -> Result<Draft> {
    load(conn, id, true)
}

/// The request with its attributes and, if asked, its photos and history.
pub(super) fn load(conn: &Connection, id: &RequestId, whole: bool) -> Result<Draft> {
    let mut draft = conn
        .prepare_cached(
            "SELECT r.service_code, s.name, r.state, r.description, r.lat, r.lon, r.accuracy,
                    r.location_source, r.address, r.contact_first_name, r.contact_last_name,
                    r.contact_email, r.contact_phone, r.anonymous, r.service_request_id,
                    r.status_notes, r.created_at, r.updated_at, r.attributes, r.ward, r.ward_name,
                    r.expected_at, s.standard, r.duplicate_of,
                    (SELECT max(json_extract(e.value, '$.at')) FROM json_each(r.events) e
                     WHERE json_extract(e.value, '$.state') = 'queued')
             FROM requests r LEFT JOIN services s ON s.code = r.service_code
             WHERE r.id = ?1",
        )?
        .query_row([id], |r| {
            let lat: Option<f64> = r.get(4)?;
            let lon: Option<f64> = r.get(5)?;
            let source: Option<String> = r.get(7)?;
            let location = match (lat, lon) {
                (Some(lat), Some(lon)) => Some(Location {
                    lat,
                    lon,
                    accuracy_m: r.get(6)?,
                    source: source
                        .as_deref()
                        .and_then(LocationSource::parse)
                        .unwrap_or(LocationSource::MapPin),
                }),
                _ => None,
            };
            let state: String = r.get(2)?;
            let answers: String = r.get(18)?;
            let expected: Option<i64> = r.get(21)?;
            let standard: Option<String> = r.get(22)?;
            let queued_at: Option<i64> = r.get(24)?;
            let duplicate_of: Option<String> = r.get(23)?;
            // Until the city says, its standard from when the request was queued.
            let expected = expected.or_else(|| {
                let standard: Standard = standard
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                standard.resolve_by(queued_at?)
            });
            Ok((
                (state, answers, duplicate_of),
                Draft {
                    id: id.to_string(),
                    service_code: r.get(0)?,
                    service_name: r.get(1)?,
                    state: State::Draft,
                    description: r.get(3)?,
                    attributes: BTreeMap::new(),
                    location,
                    address: r.get(8)?,
                    contact: Contact {
                        first_name: r.get(9)?,
                        last_name: r.get(10)?,
                        email: r.get(11)?,
                        phone: r.get(12)?,
                    },
                    anonymous: r.get(13)?,
                    service_request_id: r.get(14)?,
                    status_notes: r.get(15)?,
                    expected_at: expected.map(from_ms),
                    duplicate_of: None,
                    created_at: from_ms(r.get(16)?),
                    updated_at: from_ms(r.get(17)?),
                    ward: match (
                        r.get::<_, Option<String>>(19)?,
                        r.get::<_, Option<String>>(20)?,
                    ) {
                        (Some(code), name) => Some(Ward {
                            name: name.unwrap_or_else(|| code.clone()),
                            code,
                        }),
                        _ => None,
                    },
                    photos: Vec::new(),
                    history: Vec::new(),
                },
            ))
        })
        .optional()?
        .ok_or_else(|| Error::no_request(*id))
        .and_then(|((state, answers, duplicate_of), mut d)| {
            d.state = stored_state(&state)?;
            d.attributes = parse_answers(&answers)?;
            d.duplicate_of = match duplicate_of {
                Some(parent) => Some(duplicate(conn, &parent)?),
                None => None,
            };
            Ok(d)
        })?;
    if whole {
        draft.photos = photos::photos(conn, id)?;
        draft.history = history::history(conn, id)?;
    }
    Ok(draft)
}

/// Where the request `parent` stands, as far as this device's log knows it.
fn duplicate(conn: &Connection, parent: &str) -> Result<Duplicate> {
    let Ok(id) = RequestId::parse(parent) else {
        return Ok(Duplicate {
            id: parent.to_string(),
            service_request_id: None,
            state: None,
        });
    };
    let f = log::current(conn, &id, &[Field::ServiceRequestId, Field::Status])?;
    Ok(Duplicate {
        id: parent.to_string(),
        service_request_id: match f.get(&Field::ServiceRequestId) {
            Some(FieldValue::ServiceRequestId(n)) => Some(n.clone()),
            _ => None,
        },
        state: match f.get(&Field::Status) {
            Some(FieldValue::Status(s)) => Some(State::from(*s)),
            // Numbered but with no status yet: the city holds it.
            _ if f.contains_key(&Field::ServiceRequestId) => Some(State::Accepted),
            _ => None,
        },
    })
}

/// Newest first, optionally only those in `state`.
pub(crate) fn list(
    conn: &Connection,
    state: Option<State>,
    limit: u32,
) -> Result<Vec<DraftSummary>> {
    let sql = |filter: &str| {
        format!(
            "SELECT r.id, r.service_code, s.name, r.state, substr(r.description, 1, 140),
                    r.lat IS NOT NULL, r.address, r.service_request_id, r.created_at
             FROM requests r LEFT JOIN services s ON s.code = r.service_code
             {filter} ORDER BY r.id DESC LIMIT ?1"
        )
    };
    let map = |r: &rusqlite::Row| -> rusqlite::Result<(DraftSummary, String)> {
        Ok((
            DraftSummary {
                id: r.get(0)?,
                service_code: r.get(1)?,
                service_name: r.get(2)?,
                state: State::Draft,
                excerpt: r.get(4)?,
                has_location: r.get(5)?,
                address: r.get(6)?,
                service_request_id: r.get(7)?,
                created_at: from_ms(r.get(8)?),
            },
            r.get(3)?,
        ))
    };
    let rows: Vec<(DraftSummary, String)> = match state {
        Some(state) => conn
            .prepare_cached(&sql("WHERE r.state = ?2"))?
            .query_map(params![limit, state.as_str()], map)?
            .collect::<rusqlite::Result<_>>()?,
        None => conn
            .prepare_cached(&sql(""))?
            .query_map(params![limit], map)?
            .collect::<rusqlite::Result<_>>()?,
    };
    rows.into_iter()
        .map(|(mut s, state)| {
            s.state = stored_state(&state)?;
            Ok(s)
        })
        .collect()
}

/// A request of the user's as duplicate detection sees it: only once it has left the draft
/// stage, while open and placed. `None` means "not in the index".
pub(crate) fn as_known(conn: &Connection, id: &RequestId) -> Result<Option<KnownRequest>> {
    let row = conn
        .prepare_cached(
            "SELECT service_code, state, lat, lon, accuracy, created_at FROM requests WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, Option<f64>>(3)?,
                r.get::<_, Option<f64>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .optional()?;
    let Some((service_code, state, Some(lat), Some(lon), accuracy_m, created_at_ms)) = row else {
        return Ok(None);
    };
    let state = stored_state(&state)?;
    Ok(
        (state != State::Draft && state.is_open()).then(|| KnownRequest {
            id: id.to_string(),
            service_code,
            lat,
            lon,
            accuracy_m,
            created_at_ms,
            open: true,
        }),
    )
}

/// Every request the user has sent that is still open and placed.
pub(crate) fn all_known(conn: &Connection) -> Result<Vec<KnownRequest>> {
    let mut stmt = conn.prepare(
        "SELECT id, service_code, lat, lon, accuracy, created_at FROM requests
         WHERE state NOT IN ('draft', 'completed', 'cancelled') AND lat IS NOT NULL AND lon IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(KnownRequest {
            id: r.get(0)?,
            service_code: r.get(1)?,
            lat: r.get(2)?,
            lon: r.get(3)?,
            accuracy_m: r.get(4)?,
            created_at_ms: r.get(5)?,
            open: true,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What still has to leave the device: requests queued or sent without an answer, and the
/// photos waiting to upload (or to be queued with their request's push), with their bytes.
pub(crate) fn pending(conn: &Connection) -> Result<(u64, u64, u64)> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM requests WHERE lifecycle IN ('queued', 'sent')),
                count(*), COALESCE(sum(length(p.jpeg)), 0)
         FROM photos p WHERE p.sha256 IN (
             SELECT sha256 FROM photo_uploads
             UNION SELECT rp.sha256 FROM request_photos rp
                   JOIN requests r ON r.id = rp.request_id WHERE r.lifecycle = 'queued')",
        [],
        |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        },
    )?)
}
