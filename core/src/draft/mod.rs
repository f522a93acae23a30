//! A resident's request from first tap to the city's answer: drafts that can be edited offline,
//! the queue of validated requests waiting for a connection, and the lifecycle after sending.
//! Every change of state is written to the request's history together with the change itself.

mod validate;

use std::collections::BTreeMap;
use std::fmt;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::catalog::{DefinitionCache, ServiceDefinition};
use crate::clock::{from_ms, now_ms};
use crate::error::{Error, Result};
use crate::geo::{GeoError, Jurisdiction, KnownRequest, Location, LocationSource, Ward};
use crate::photo::PhotoInfo;
use crate::sync;

pub use validate::{
    validate, Problem, ProblemKind, MAX_DESCRIPTION_CHARS, MAX_STRING_CHARS, MAX_TEXT_CHARS,
};

/// Where a request is in its life. The first four are the device's; the rest are the city's
/// (Toronto's lifecycle), projected onto Open311's `open`/`closed` by [`State::is_open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Being written; editable.
    Draft,
    /// Validated and waiting for a connection.
    Queued,
    /// Handed to the server; no answer yet.
    Sent,
    /// The server took it and gave it a public `service_request_id`.
    Accepted,
    InProgress,
    Scheduled,
    Completed,
    /// Cancelled: a duplicate, work already scheduled, or no work required.
    Cancelled,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Draft,
        State::Queued,
        State::Sent,
        State::Accepted,
        State::InProgress,
        State::Scheduled,
        State::Completed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Queued => "queued",
            State::Sent => "sent",
            State::Accepted => "accepted",
            State::InProgress => "in_progress",
            State::Scheduled => "scheduled",
            State::Completed => "completed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Open311's projection: everything but completed and cancelled is `open`.
    pub fn is_open(self) -> bool {
        !matches!(self, State::Completed | State::Cancelled)
    }

    /// A status the city's server may report for a request it has accepted.
    pub fn is_server_status(self) -> bool {
        matches!(
            self,
            State::Accepted
                | State::InProgress
                | State::Scheduled
                | State::Completed
                | State::Cancelled
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reporter's contact details: private, sent to the city only, never shown publicly.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

// Contact details must never reach a log line, so Debug shows only which fields are set.
impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("Contact")
            .field("first_name", &set(&self.first_name))
            .field("last_name", &set(&self.last_name))
            .field("email", &set(&self.email))
            .field("phone", &set(&self.phone))
            .finish()
    }
}

impl Contact {
    pub fn is_empty(&self) -> bool {
        self.first_name.is_none()
            && self.last_name.is_none()
            && self.email.is_none()
            && self.phone.is_none()
    }

    pub(crate) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("email", &self.email),
            ("phone", &self.phone),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| validate::too_long(v, validate::MAX_CONTACT_CHARS))
            {
                problems.push(Problem::new(
                    field,
                    ProblemKind::TooLong,
                    format!("at most {} characters", validate::MAX_CONTACT_CHARS),
                ));
            }
        }
        if let Some(email) = &self.email {
            let ok = email.split_once('@').is_some_and(|(user, domain)| {
                !user.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.contains(char::is_whitespace)
            });
            if !ok {
                problems.push(Problem::new(
                    "email",
                    ProblemKind::Malformed,
                    "not an email address (name@example.org)",
                ));
            }
        }
        if let Some(phone) = &self.phone {
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            let allowed = phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c));
            if !allowed || !(7..=15).contains(&digits) {
                problems.push(Problem::new(
                    "phone",
                    ProblemKind::Malformed,
                    "not a phone number (7 to 15 digits)",
                ));
            }
        }
        problems
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub from: Option<State>,
    pub to: State,
    pub note: Option<String>,
}

/// A request as the device holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draft {
    pub id: String,
    pub service_code: String,
    /// `None` when the catalogue no longer offers the service: the draft is kept, and
    /// validation says so.
    pub service_name: Option<String>,
    pub state: State,
    pub description: String,
    /// Attribute code → values; a multivaluelist has several, every other datatype one.
    pub attributes: BTreeMap<String, Vec<String>>,
    pub location: Option<Location>,
    pub address: Option<String>,
    pub contact: Contact,
    /// Send without contact details; the city cannot follow up.
    pub anonymous: bool,
    pub service_request_id: Option<String>,
    pub status_notes: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The ward the location fell in, named when the request was queued.
    pub ward: Option<Ward>,
    pub photos: Vec<PhotoInfo>,
    pub history: Vec<HistoryEntry>,
}

/// One line of a list: what a "My reports" screen shows without loading every draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftSummary {
    pub id: String,
    pub service_code: String,
    pub service_name: Option<String>,
    pub state: State,
    /// The first 140 characters of the description.
    pub excerpt: String,
    pub has_location: bool,
    pub address: Option<String>,
    pub service_request_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Changes to a draft, applied together in one transaction. `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct DraftEdit {
    pub description: Option<String>,
    /// Attribute code → new values; an empty list clears the answer.
    pub attributes: Vec<(String, Vec<String>)>,
    /// `Some(None)` removes the location.
    pub location: Option<Option<Location>>,
    /// `Some(None)` removes the address.
    pub address: Option<Option<String>>,
    pub contact: Option<Contact>,
    pub anonymous: Option<bool>,
}

impl DraftEdit {
    /// Checks what can be checked before touching the store: lengths, the location, and each
    /// attribute against the service definition. Unknown attribute codes are errors of their
    /// own, since no UI field would hold them.
    fn check(&self, service_code: &str, definition: Option<&ServiceDefinition>) -> Result<()> {
        let mut problems = Vec::new();
        if let Some(d) = &self.description {
            problems.extend(validate::check_description(d));
        }
        if let Some(Some(location)) = &self.location {
            problems.extend(location.problem());
        }
        if let Some(Some(address)) = &self.address {
            if validate::too_long(address, MAX_STRING_CHARS) {
                problems.push(Problem::new(
                    "address_string",
                    ProblemKind::TooLong,
                    format!("at most {MAX_STRING_CHARS} characters"),
                ));
            }
        }
        if let Some(contact) = &self.contact {
            problems.extend(contact.problems());
        }
        for (code, values) in &self.attributes {
            match definition {
                // The service is gone: answers can only be cleared.
                None if !values.is_empty() => {
                    return Err(Error::UnknownService(service_code.to_string()))
                }
                None => {}
                Some(def) => match def.attribute(code) {
                    None => {
                        return Err(Error::UnknownAttribute {
                            service: service_code.to_string(),
                            code: code.clone(),
                        })
                    }
                    Some(attr) => problems.extend(validate::check_attribute_values(attr, values)),
                },
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(problems))
        }
    }
}

pub(crate) fn parse_id(id: &str) -> Result<String> {
    Uuid::parse_str(id.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| Error::BadId(id.chars().take(64).collect()))
}

fn record(
    tx: &Transaction,
    id: &str,
    at: i64,
    from: Option<State>,
    to: State,
    note: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO request_history (request_id, seq, at, from_state, to_state, note)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM request_history WHERE request_id = ?1),
                 ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, at, from.map(State::as_str), to.as_str(), note])?;
    Ok(())
}

/// Creates a draft for `service_code` with `edit` applied, in one transaction.
pub(crate) fn create(
    tx: &Transaction,
    defs: &DefinitionCache,
    service_code: &str,
    edit: &DraftEdit,
) -> Result<String> {
    let service_code = service_code.trim();
    let definition = defs
        .get(tx, service_code)?
        .ok_or_else(|| Error::UnknownService(service_code.to_string()))?;
    edit.check(service_code, Some(&definition))?;
    let id = Uuid::now_v7().hyphenated().to_string();
    let now = now_ms();
    let location = edit.location.flatten();
    let address = edit
        .address
        .as_ref()
        .and_then(|a| a.as_deref())
        .map(str::trim)
        .filter(|a| !a.is_empty());
    let contact = edit.contact.clone().unwrap_or_default();
    let mut attributes = BTreeMap::new();
    merge_answers(&mut attributes, &edit.attributes);
    tx.prepare_cached(
        "INSERT INTO requests (id, service_code, state, description, lat, lon, accuracy,
             location_source, address, contact_first_name, contact_last_name, contact_email,
             contact_phone, anonymous, created_at, updated_at, attributes)
         VALUES (?1, ?2, 'draft', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15)",
    )?
    .execute(params![
        id,
        service_code,
        edit.description.as_deref().unwrap_or(""),
        location.map(|l| l.lat),
        location.map(|l| l.lon),
        location.and_then(|l| l.accuracy_m),
        location.map(|l| l.source.as_str()),
        address,
        contact.first_name,
        contact.last_name,
        contact.email,
        contact.phone,
        edit.anonymous.unwrap_or(false),
        now,
        answers_json(&attributes),
    ])?;
    record(tx, &id, now, None, State::Draft, None)?;
    let replica = sync::log::replica_id(tx)?;
    let create = serde_json::json!({
        "service_code": service_code, "created_at": now, "created_by": replica, "channel": "app"
    });
    log_edit(tx, &id, Some(create), edit, now)?;
    Ok(id)
}

/// Writes the replication changes of an edit (and of the creation), in the edit's own
/// transaction.
fn log_edit(
    tx: &Transaction,
    id: &str,
    create: Option<serde_json::Value>,
    edit: &DraftEdit,
    now: i64,
) -> Result<()> {
    let mut changes: Vec<(String, serde_json::Value)> = Vec::new();
    if let Some(create) = create {
        changes.push(("create".into(), create));
    }
    if let Some(d) = &edit.description {
        changes.push(("description".into(), serde_json::json!(d)));
    }
    for (code, values) in &edit.attributes {
        let values: Vec<&str> = values.iter().map(|v| v.trim()).collect();
        changes.push((format!("attr:{code}"), serde_json::json!(values)));
    }
    if let Some(location) = &edit.location {
        changes.push((
            "location".into(),
            sync::change::location_value(location.as_ref()),
        ));
    }
    if let Some(address) = &edit.address {
        let address = address.as_deref().map(str::trim).filter(|a| !a.is_empty());
        changes.push(("address".into(), serde_json::json!(address)));
    }
    if edit.contact.is_some() || edit.anonymous.is_some() {
        // An anonymous report replicates no contact details at all.
        let (contact, anonymous): (Contact, bool) = tx
            .prepare_cached(
                "SELECT contact_first_name, contact_last_name, contact_email, contact_phone, anonymous
                 FROM requests WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    Contact { first_name: r.get(0)?, last_name: r.get(1)?, email: r.get(2)?, phone: r.get(3)? },
                    r.get(4)?,
                ))
            })?;
        let value = if anonymous {
            serde_json::json!({})
        } else {
            serde_json::json!({"first_name": contact.first_name, "last_name": contact.last_name,
                               "email": contact.email, "phone": contact.phone})
        };
        changes.push(("contact".into(), value));
    }
    if !changes.is_empty() {
        sync::log::local_changes(tx, id, changes, now)?;
    }
    Ok(())
}

/// Queues a request's whole content again as new changes: for a request the server refused
/// before it held any of it, so that resubmitting sends it afresh.
pub(crate) fn relog(tx: &Transaction, id: &str) -> Result<()> {
    let d = load(tx, id, false)?;
    let created_at: i64 = tx
        .prepare_cached("SELECT created_at FROM requests WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    let replica = sync::log::replica_id(tx)?;
    let create = serde_json::json!({
        "service_code": d.service_code, "created_at": created_at, "created_by": replica, "channel": "app"
    });
    let edit = DraftEdit {
        description: Some(d.description),
        attributes: d.attributes.into_iter().collect(),
        location: Some(d.location),
        address: Some(d.address),
        contact: Some(d.contact),
        anonymous: Some(d.anonymous),
    };
    let now = now_ms();
    log_edit(tx, id, Some(create), &edit, now)?;
    for p in crate::photo::storage::list(tx, id)? {
        sync::local_change(
            tx,
            id,
            "photo",
            serde_json::json!({"sha256": p.sha256, "width": p.width, "height": p.height}),
            now,
        )?;
    }
    Ok(())
}

/// Applies `edit` to a draft; only drafts are editable (a queued request is withdrawn first).
pub(crate) fn edit(
    tx: &Transaction,
    defs: &DefinitionCache,
    id: &str,
    edit: &DraftEdit,
) -> Result<()> {
    let id = parse_id(id)?;
    let (service_code, state) = head(tx, &id)?;
    if state != State::Draft {
        return Err(Error::WrongState {
            id,
            state,
            action: "edit",
        });
    }
    let definition = defs.get(tx, &service_code)?;
    edit.check(&service_code, definition.as_deref())?;
    let now = now_ms();
    apply(tx, &id, edit, now)?;
    log_edit(tx, &id, None, edit, now)
}

fn apply(tx: &Transaction, id: &str, edit: &DraftEdit, now: i64) -> Result<()> {
    if let Some(description) = &edit.description {
        tx.prepare_cached("UPDATE requests SET description = ?2 WHERE id = ?1")?
            .execute(params![id, description])?;
    }
    if let Some(location) = &edit.location {
        tx.prepare_cached(
            "UPDATE requests SET lat = ?2, lon = ?3, accuracy = ?4, location_source = ?5 WHERE id = ?1",
        )?
        .execute(params![
            id,
            location.map(|l| l.lat),
            location.map(|l| l.lon),
            location.and_then(|l| l.accuracy_m),
            location.map(|l| l.source.as_str()),
        ])?;
    }
    if let Some(address) = &edit.address {
        let address = address.as_deref().map(str::trim).filter(|a| !a.is_empty());
        tx.prepare_cached("UPDATE requests SET address = ?2 WHERE id = ?1")?
            .execute(params![id, address])?;
    }
    if let Some(c) = &edit.contact {
        tx.prepare_cached(
            "UPDATE requests SET contact_first_name = ?2, contact_last_name = ?3,
                 contact_email = ?4, contact_phone = ?5 WHERE id = ?1",
        )?
        .execute(params![id, c.first_name, c.last_name, c.email, c.phone])?;
    }
    if let Some(anonymous) = edit.anonymous {
        tx.prepare_cached("UPDATE requests SET anonymous = ?2 WHERE id = ?1")?
            .execute(params![id, anonymous])?;
    }
    if !edit.attributes.is_empty() {
        let stored: String = tx
            .prepare_cached("SELECT attributes FROM requests WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        let mut attributes = parse_answers(&stored)?;
        merge_answers(&mut attributes, &edit.attributes);
        tx.prepare_cached("UPDATE requests SET attributes = ?2 WHERE id = ?1")?
            .execute(params![id, answers_json(&attributes)])?;
    }
    tx.prepare_cached("UPDATE requests SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// Sets each answer in `edits`; an answer without values removes the attribute.
fn merge_answers(into: &mut BTreeMap<String, Vec<String>>, edits: &[(String, Vec<String>)]) {
    for (code, values) in edits {
        let values: Vec<String> = values.iter().map(|v| v.trim().to_string()).collect();
        if values.is_empty() {
            into.remove(code);
        } else {
            into.insert(code.clone(), values);
        }
    }
}

fn answers_json(answers: &BTreeMap<String, Vec<String>>) -> String {
    serde_json::to_string(answers).expect("strings serialise")
}

fn parse_answers(json: &str) -> Result<BTreeMap<String, Vec<String>>> {
    serde_json::from_str(json).map_err(|e| Error::Stored(format!("attribute answers: {e}")))
}

/// The state of one of the user's own requests; `None` for a request they did not write.
pub(crate) fn state_of(conn: &Connection, id: &str) -> Result<Option<State>> {
    conn.prepare_cached("SELECT state FROM requests WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, String>(0))
        .optional()?
        .map(|s| stored_state(&s))
        .transpose()
}

/// The service code and state of a request, or `NotFound`.
fn head(conn: &Connection, id: &str) -> Result<(String, State)> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT service_code, state FROM requests WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (code, state) = row.ok_or_else(|| Error::NotFound(id.to_string()))?;
    Ok((code, stored_state(&state)?))
}

fn stored_state(s: &str) -> Result<State> {
    State::parse(s).ok_or_else(|| Error::Stored(format!("state {s:?} is unknown")))
}

pub(crate) fn get(conn: &Connection, id: &str) -> Result<Draft> {
    load(conn, id, true)
}

/// The request with its attributes and, if asked, its history.
fn load(conn: &Connection, id: &str, with_history: bool) -> Result<Draft> {
    let id = parse_id(id)?;
    let mut draft = conn
        .prepare_cached(
            "SELECT r.service_code, s.name, r.state, r.description, r.lat, r.lon, r.accuracy,
                    r.location_source, r.address, r.contact_first_name, r.contact_last_name,
                    r.contact_email, r.contact_phone, r.anonymous, r.service_request_id,
                    r.status_notes, r.created_at, r.updated_at, r.attributes, r.ward, r.ward_name
             FROM requests r LEFT JOIN services s ON s.code = r.service_code
             WHERE r.id = ?1",
        )?
        .query_row([&id], |r| {
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
            Ok((
                (state, answers),
                Draft {
                    id: id.clone(),
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
        .ok_or_else(|| Error::NotFound(id.clone()))
        .and_then(|((state, answers), mut d)| {
            d.state = stored_state(&state)?;
            d.attributes = parse_answers(&answers)?;
            Ok(d)
        })?;
    if !with_history {
        return Ok(draft);
    }
    draft.photos = crate::photo::storage::list(conn, &id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT at, from_state, to_state, note FROM request_history WHERE request_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([&id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    for row in rows {
        let (at, from, to, note) = row?;
        draft.history.push(HistoryEntry {
            at: from_ms(at),
            from: from.as_deref().map(stored_state).transpose()?,
            to: stored_state(&to)?,
            note,
        });
    }
    Ok(draft)
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

/// Deletes a request that has not left the device. Once sent, it belongs to the city.
pub(crate) fn delete(tx: &Transaction, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    let (_, state) = head(tx, &id)?;
    if !matches!(state, State::Draft | State::Queued) {
        return Err(Error::WrongState {
            id,
            state,
            action: "delete",
        });
    }
    tx.prepare_cached("DELETE FROM requests WHERE id = ?1")?
        .execute([&id])?;
    // It never left the device, so neither do its changes.
    sync::log::forget(tx, &id)?;
    Ok(())
}

/// Validates a draft, names its ward and queues it for sending, or returns every problem.
pub(crate) fn submit(
    tx: &Transaction,
    defs: &DefinitionCache,
    jurisdiction: &Jurisdiction,
    id: &str,
) -> Result<()> {
    let draft = load(tx, id, false)?;
    if draft.state != State::Draft {
        return Err(Error::WrongState {
            id: draft.id,
            state: draft.state,
            action: "submit",
        });
    }
    let definition = defs.get(tx, &draft.service_code)?;
    let mut problems = validate(&draft, definition.as_deref());
    let mut ward = None;
    if let Some(l) = draft.location.filter(|l| l.problem().is_none()) {
        match jurisdiction.ward_at(l.lat, l.lon) {
            Ok(w) => ward = Some(w.clone()),
            Err(GeoError::Outside { distance_m }) => problems.push(Problem::new(
                "location",
                ProblemKind::OutOfRange,
                format!(
                    "the location is outside the city, {:.1} km from its edge: move the pin",
                    distance_m / 1000.0
                ),
            )),
            Err(e) => problems.push(Problem::new(
                "location",
                ProblemKind::OutOfRange,
                e.to_string(),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    tx.prepare_cached("UPDATE requests SET ward = ?2, ward_name = ?3 WHERE id = ?1")?
        .execute(params![
            draft.id,
            ward.as_ref().map(|w| &w.code),
            ward.as_ref().map(|w| &w.name)
        ])?;
    set_state(tx, &draft.id, State::Draft, State::Queued, None)
}

fn set_state(tx: &Transaction, id: &str, from: State, to: State, note: Option<&str>) -> Result<()> {
    let now = now_ms();
    tx.prepare_cached("UPDATE requests SET state = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, to.as_str(), now])?;
    record(tx, id, now, Some(from), to, note)
}

/// Moves a request from one of `from` to `to` and records it, or says why it cannot.
pub(crate) fn transition(
    tx: &Transaction,
    id: &str,
    from: &[State],
    to: State,
    note: Option<&str>,
    action: &'static str,
) -> Result<()> {
    let id = parse_id(id)?;
    let (_, state) = head(tx, &id)?;
    if !from.contains(&state) {
        return Err(Error::WrongState { id, state, action });
    }
    set_state(tx, &id, state, to, note)
}

/// The server accepted the request and gave it its public id.
pub(crate) fn accept(tx: &Transaction, id: &str, service_request_id: &str) -> Result<()> {
    let service_request_id = service_request_id.trim();
    if service_request_id.is_empty() {
        return Err(Error::invalid(Problem::new(
            "service_request_id",
            ProblemKind::Required,
            "the server's id is empty",
        )));
    }
    transition(
        tx,
        id,
        &[State::Queued, State::Sent],
        State::Accepted,
        None,
        "accept",
    )?;
    tx.prepare_cached("UPDATE requests SET service_request_id = ?2 WHERE id = ?1")?
        .execute(params![parse_id(id)?, service_request_id])?;
    Ok(())
}

/// A status the city reported, with its note (Open311 `status_notes`). The server is
/// authoritative, so any city status may follow any other, including a reopening.
pub(crate) fn server_status(
    tx: &Transaction,
    id: &str,
    status: State,
    note: Option<&str>,
) -> Result<()> {
    if !status.is_server_status() || status == State::Accepted {
        return Err(Error::invalid(Problem::new(
            "status",
            ProblemKind::OutOfRange,
            format!("{status} is not a status the city reports"),
        )));
    }
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    transition(
        tx,
        id,
        &[
            State::Accepted,
            State::InProgress,
            State::Scheduled,
            State::Completed,
            State::Cancelled,
        ],
        status,
        note,
        "set the city's status of",
    )?;
    tx.prepare_cached("UPDATE requests SET status_notes = ?2 WHERE id = ?1")?
        .execute(params![parse_id(id)?, note])?;
    Ok(())
}

/// A request of the user's as duplicate detection sees it: only once it has left the draft
/// stage, while open and placed. `None` means "not in the index".
pub(crate) fn as_known(conn: &Connection, id: &str) -> Result<Option<KnownRequest>> {
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
