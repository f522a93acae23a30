//! Every write to a device's requests. Each public function here is one typed edit: it checks
//! what it may, updates the row, records the lifecycle step if there is one, and logs the
//! changes it implies, all in the caller's transaction.

use std::collections::BTreeMap;

use rusqlite::{params, Transaction};

use super::photos::{self, AttachedPhoto, PhotoInfo};
use super::pulled::{self, Touched};
use super::read::{head, lifecycle_of, load, parse_answers};
use super::{history, validate, DraftEdit, Env};
use crate::catalog::{DefinitionCache, ServiceDefinition};
use crate::error::{Error, Forbidden, Result};
use crate::geo::{GeoError, Jurisdiction};
use crate::photo::{PhotoError, PhotoOptions, Processed};
use crate::sync::log::{self, Outbox};
use crate::vocab::limits::{too_long, MAX_STRING_CHARS};
use crate::vocab::{
    Contact, Creation, Field, FieldValue, Lifecycle, PhotoRef, Problem, ProblemKind, RequestId,
    State, Status,
};

/// The channel a request made on this device arrived through.
const CHANNEL: &str = "app";

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
            if too_long(address, MAX_STRING_CHARS) {
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

    /// The changes this edit makes, as the log records them. `contact` is what the request
    /// replicates after it (none at all for an anonymous report), when the edit touches it.
    fn changes(&self, contact: Option<Contact>) -> Vec<FieldValue> {
        let mut out = Vec::new();
        if let Some(d) = &self.description {
            out.push(FieldValue::Description(d.clone()));
        }
        for (code, values) in &self.attributes {
            let values = values.iter().map(|v| v.trim().to_string()).collect();
            out.push(FieldValue::Attribute(code.clone(), values));
        }
        if let Some(location) = self.location {
            out.push(FieldValue::Location(location));
        }
        if let Some(address) = &self.address {
            out.push(FieldValue::Address(clean_address(address.as_deref())));
        }
        out.extend(contact.map(FieldValue::Contact));
        out
    }
}

fn clean_address(a: Option<&str>) -> Option<String> {
    a.map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
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

/// The contact details a request replicates: none at all when it is anonymous.
fn replicated_contact(tx: &Transaction, id: &RequestId) -> Result<Contact> {
    let (contact, anonymous): (Contact, bool) = tx
        .prepare_cached(
            "SELECT contact_first_name, contact_last_name, contact_email, contact_phone, anonymous
             FROM requests WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                Contact {
                    first_name: r.get(0)?,
                    last_name: r.get(1)?,
                    email: r.get(2)?,
                    phone: r.get(3)?,
                },
                r.get(4)?,
            ))
        })?;
    Ok(if anonymous {
        Contact::default()
    } else {
        contact
    })
}

fn creation(env: Env, service_code: &str, created_at: i64) -> FieldValue {
    FieldValue::Create(Creation {
        service_code: service_code.to_string(),
        created_at: Some(created_at),
        created_by: Some(env.replica.to_string()),
        channel: Some(CHANNEL.into()),
    })
}

/// Creates a draft for `service_code` with `edit` applied. Its changes are logged and wait in
/// the outbox until it is submitted.
pub(crate) fn create(
    tx: &Transaction,
    defs: &DefinitionCache,
    env: Env,
    service_code: &str,
    edit: &DraftEdit,
) -> Result<RequestId> {
    let service_code = service_code.trim();
    let definition = defs
        .get(tx, service_code)?
        .ok_or_else(|| Error::UnknownService(service_code.to_string()))?;
    edit.check(service_code, Some(&definition))?;
    let id = env.ids.request_id(env.now_ms);
    let location = edit.location.flatten();
    let contact = edit.contact.clone().unwrap_or_default();
    let anonymous = edit.anonymous.unwrap_or(false);
    let mut attributes = BTreeMap::new();
    merge_answers(&mut attributes, &edit.attributes);
    tx.prepare_cached(
        "INSERT INTO requests (id, service_code, lifecycle, description, lat, lon, accuracy,
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
        clean_address(edit.address.as_ref().and_then(|a| a.as_deref())),
        contact.first_name,
        contact.last_name,
        contact.email,
        contact.phone,
        anonymous,
        env.now_ms,
        answers_json(&attributes),
    ])?;
    let replicated = (edit.contact.is_some() || edit.anonymous.is_some()).then(|| {
        if anonymous {
            Contact::default()
        } else {
            contact
        }
    });
    let mut values = vec![creation(env, service_code, env.now_ms)];
    values.extend(edit.changes(replicated));
    log::record(tx, id, values, env.now_ms, Outbox::Queued)?;
    Ok(id)
}

/// Applies `edit` to a draft; only drafts are editable (a queued request is withdrawn first).
pub(crate) fn edit(
    tx: &Transaction,
    defs: &DefinitionCache,
    env: Env,
    id: &RequestId,
    edit: &DraftEdit,
) -> Result<()> {
    let (service_code, state) = head(tx, id)?;
    if state != State::Draft {
        return Err(Error::WrongState {
            id: *id,
            state,
            action: "edit",
        });
    }
    let definition = defs.get(tx, &service_code)?;
    edit.check(&service_code, definition.as_deref())?;
    write_row(tx, id, edit, env.now_ms)?;
    let contact = (edit.contact.is_some() || edit.anonymous.is_some())
        .then(|| replicated_contact(tx, id))
        .transpose()?;
    log::record(tx, *id, edit.changes(contact), env.now_ms, Outbox::Queued)?;
    Ok(())
}

fn write_row(tx: &Transaction, id: &RequestId, edit: &DraftEdit, now: i64) -> Result<()> {
    if let Some(description) = &edit.description {
        tx.prepare_cached("UPDATE requests SET description = ?2 WHERE id = ?1")?
            .execute(params![id, description])?;
    }
    if let Some(location) = &edit.location {
        set_location(tx, id, location.as_ref())?;
    }
    if let Some(address) = &edit.address {
        tx.prepare_cached("UPDATE requests SET address = ?2 WHERE id = ?1")?
            .execute(params![id, clean_address(address.as_deref())])?;
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

fn set_location(
    tx: &Transaction,
    id: &RequestId,
    location: Option<&crate::vocab::Location>,
) -> Result<()> {
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
    Ok(())
}

/// The request's city status if its lifecycle is one of `from`; otherwise why `action` cannot
/// be done to it.
fn expect(
    tx: &Transaction,
    id: &RequestId,
    from: &[Lifecycle],
    action: &'static str,
) -> Result<Option<Status>> {
    let (lifecycle, status) = lifecycle_of(tx, id)?.ok_or_else(|| Error::no_request(*id))?;
    if !from.contains(&lifecycle) {
        return Err(Error::WrongState {
            id: *id,
            state: State::of(lifecycle, status),
            action,
        });
    }
    Ok(status)
}

/// Moves a request from one of `from` to `to` and records the step, in one write, or says why
/// it cannot.
fn step(
    tx: &Transaction,
    env: Env,
    id: &RequestId,
    from: &[Lifecycle],
    to: Lifecycle,
    note: Option<&str>,
    action: &'static str,
) -> Result<()> {
    let status = expect(tx, id, from, action)?;
    tx.prepare_cached(&format!(
        "UPDATE requests SET lifecycle = ?2, updated_at = ?3, {} WHERE id = ?1",
        history::append(3)
    ))?
    .execute(params![
        id,
        to.as_str(),
        env.now_ms,
        State::of(to, status).as_str(),
        note
    ])?;
    Ok(())
}

/// Validates a draft, names its ward and queues it for sending (its changes, waiting in the
/// outbox, go with the next sync), or returns every problem.
pub(crate) fn submit(
    tx: &Transaction,
    defs: &DefinitionCache,
    jurisdiction: &Jurisdiction,
    env: Env,
    id: &RequestId,
) -> Result<()> {
    let draft = load(tx, id, false)?;
    if draft.state != State::Draft {
        return Err(Error::WrongState {
            id: *id,
            state: draft.state,
            action: "submit",
        });
    }
    let definition = defs.get(tx, &draft.service_code)?;
    let mut problems = validate::validate(&draft, definition.as_deref());
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
    // One write: the ward, the lifecycle and the step in its history.
    tx.prepare_cached(&format!(
        "UPDATE requests SET ward = ?2, ward_name = ?3, lifecycle = 'queued', updated_at = ?4, {}
         WHERE id = ?1",
        history::append(4)
    ))?
    .execute(params![
        id,
        ward.as_ref().map(|w| &w.code),
        ward.as_ref().map(|w| &w.name),
        env.now_ms,
        State::Queued.as_str(),
        None::<&str>
    ])?;
    Ok(())
}

/// Takes a queued request back to a draft (its changes wait again), so it can be edited.
pub(crate) fn withdraw(tx: &Transaction, env: Env, id: &RequestId) -> Result<()> {
    step(
        tx,
        env,
        id,
        &[Lifecycle::Queued],
        Lifecycle::Draft,
        None,
        "withdraw",
    )
}

/// The request was handed to the server.
pub(crate) fn mark_sent(tx: &Transaction, env: Env, id: &RequestId) -> Result<()> {
    step(
        tx,
        env,
        id,
        &[Lifecycle::Queued],
        Lifecycle::Sent,
        None,
        "send",
    )
}

/// Deletes a request that has not left the device, and the bytes of photos no other request
/// uses. Once sent, it belongs to the city.
pub(crate) fn delete(tx: &Transaction, id: &RequestId) -> Result<()> {
    let (_, state) = head(tx, id)?;
    if !matches!(state, State::Draft | State::Queued) {
        return Err(Error::WrongState {
            id: *id,
            state,
            action: "delete",
        });
    }
    tx.prepare_cached("DELETE FROM requests WHERE id = ?1")?
        .execute([id])?;
    // It never left the device, so neither do its changes.
    log::forget(tx, id)?;
    photos::remove_orphans(tx)?;
    Ok(())
}

/// The server refused a request: its unacknowledged changes leave the log (the server never
/// held them), and if it is the user's own and on its way, it is [`refuse`]d.
pub(crate) fn reject(tx: &Transaction, env: Env, id: &RequestId, reason: &str) -> Result<()> {
    match lifecycle_of(tx, id)? {
        Some((Lifecycle::Queued | Lifecycle::Sent, _)) => refuse(tx, env, id, reason),
        _ => log::drop_unsent(tx, id),
    }
}

/// The user's own request, on its way, was refused: it goes back to being a draft with the
/// reason, its unacknowledged changes dropped, and its whole content logged again for when it
/// is resubmitted if the server held none of it.
pub(crate) fn refuse(tx: &Transaction, env: Env, id: &RequestId, reason: &str) -> Result<()> {
    step(
        tx,
        env,
        id,
        &[Lifecycle::Queued, Lifecycle::Sent],
        Lifecycle::Draft,
        Some(reason),
        "reject",
    )?;
    log::drop_unsent(tx, id)?;
    if !log::holds(tx, id, Some(&Field::Create))? {
        relog(tx, env, id)?;
    }
    Ok(())
}

/// Logs a request's whole content again as new changes: for a request the server refused
/// before it held any of it, so that resubmitting sends it afresh.
fn relog(tx: &Transaction, env: Env, id: &RequestId) -> Result<()> {
    let d = load(tx, id, false)?;
    let created_at: i64 = tx
        .prepare_cached("SELECT created_at FROM requests WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    let edit = DraftEdit {
        description: Some(d.description),
        attributes: d.attributes.into_iter().collect(),
        location: Some(d.location),
        address: Some(d.address),
        contact: None,
        anonymous: None,
    };
    let mut values = vec![creation(env, &d.service_code, created_at)];
    values.extend(edit.changes(Some(replicated_contact(tx, id)?)));
    for p in photos::photos(tx, id)? {
        values.push(FieldValue::Photo(PhotoRef {
            sha256: p.sha256,
            width: p.width,
            height: p.height,
        }));
    }
    log::record(tx, *id, values, env.now_ms, Outbox::Queued)?;
    Ok(())
}

/// The server accepted the request and gave it its public number.
pub(crate) fn accept(
    tx: &Transaction,
    env: Env,
    id: &RequestId,
    service_request_id: &str,
) -> Result<()> {
    let service_request_id = service_request_id.trim();
    if service_request_id.is_empty() {
        return Err(Error::invalid(Problem::new(
            "service_request_id",
            ProblemKind::Required,
            "the server's id is empty",
        )));
    }
    expect(tx, id, &[Lifecycle::Queued, Lifecycle::Sent], "accept")?;
    tx.prepare_cached(&format!(
        "UPDATE requests SET lifecycle = 'delivered', service_request_id = ?2, updated_at = ?3, {}
         WHERE id = ?1",
        history::append(3)
    ))?
    .execute(params![
        id,
        service_request_id,
        env.now_ms,
        State::Accepted.as_str(),
        None::<&str>
    ])?;
    Ok(())
}

/// A status of the city's learned outside sync (an Open311 server polled, a message), with its
/// note. The city is authoritative, so any status may follow any other.
pub(crate) fn learned_status(
    tx: &Transaction,
    env: Env,
    id: &RequestId,
    status: State,
    note: Option<&str>,
) -> Result<()> {
    let Some(status) = status.status().filter(|s| *s != Status::Accepted) else {
        return Err(Error::invalid(Problem::new(
            "status",
            ProblemKind::OutOfRange,
            format!("{status} is not a status the city reports"),
        )));
    };
    expect(tx, id, &[Lifecycle::Delivered], "set the city's status of")?;
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    tx.prepare_cached(&format!(
        "UPDATE requests SET status = ?2, status_notes = ?3, updated_at = ?4, {} WHERE id = ?1",
        history::append(4)
    ))?
    .execute(params![
        id,
        status.as_str(),
        note,
        env.now_ms,
        State::from(status).as_str(),
        note
    ])?;
    Ok(())
}

/// Edits of a request that has left the device (statuses, notes, assignments, priorities):
/// logged and queued, and mirrored in the app's tables. Inspector-only values need
/// `inspector`; a resident acts on their own requests only.
pub(crate) fn shared_edit(
    tx: &Transaction,
    env: Env,
    inspector: bool,
    id: &RequestId,
    values: Vec<FieldValue>,
) -> Result<Touched> {
    let own = lifecycle_of(tx, id)?;
    if own.is_none() && !log::holds(tx, id, None)? {
        return Err(Error::no_request(*id));
    }
    if let Some((Lifecycle::Draft, _)) = own {
        return Err(Error::WrongState {
            id: *id,
            state: State::Draft,
            action: "act on (submit it first)",
        });
    }
    if !inspector && values.iter().any(FieldValue::is_inspector_only) {
        return Err(Forbidden::InspectorsOnly.into());
    }
    if !inspector && own.is_none() {
        return Err(Forbidden::NotYourRequest.into());
    }
    log::record(tx, *id, values, env.now_ms, Outbox::Queued)?;
    pulled::materialize(tx, env, [*id], &pulled::NewRequests::default())
}

/// Attaches a processed photo to a draft. The draft takes the photo's GPS fix as its location
/// when it has none.
pub(crate) fn attach_photo(
    tx: &Transaction,
    env: Env,
    id: &RequestId,
    photo: &Processed,
    options: &PhotoOptions,
) -> Result<AttachedPhoto> {
    let has_location = draft_only(tx, id, "attach a photo to")?;
    let info = PhotoInfo::of(photo);
    let linked = photos::linked(tx, id)?;
    if linked.contains(&photo.sha256) {
        return Ok(AttachedPhoto {
            photo: info,
            quality: photo.quality,
            location_taken: false,
            already_attached: true,
        });
    }
    if linked.len() >= options.max_per_request {
        return Err(PhotoError::TooMany {
            max: options.max_per_request,
        }
        .into());
    }
    photos::link(tx, id, photo, env.now_ms)?;
    let mut values = vec![FieldValue::Photo(PhotoRef {
        sha256: photo.sha256.clone(),
        width: photo.width,
        height: photo.height,
    })];
    let location_taken = match (&photo.location, has_location) {
        (Some(l), false) => {
            set_location(tx, id, Some(l))?;
            values.push(FieldValue::Location(Some(*l)));
            true
        }
        _ => false,
    };
    tx.prepare_cached("UPDATE requests SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, env.now_ms])?;
    log::record(tx, *id, values, env.now_ms, Outbox::Queued)?;
    Ok(AttachedPhoto {
        photo: info,
        quality: photo.quality,
        location_taken,
        already_attached: false,
    })
}

/// Detaches a photo from a draft, frees its bytes if nothing else uses them, and logs the
/// removal, so the photo never leaves the device.
pub(crate) fn detach_photo(tx: &Transaction, env: Env, id: &RequestId, sha256: &str) -> Result<()> {
    draft_only(tx, id, "remove a photo from")?;
    photos::unlink(tx, id, sha256)?;
    log::record(
        tx,
        *id,
        vec![FieldValue::PhotoRemove(sha256.to_string())],
        env.now_ms,
        Outbox::Queued,
    )?;
    Ok(())
}

/// Photos change only while the request is a draft; says whether it has a location.
fn draft_only(tx: &Transaction, id: &RequestId, action: &'static str) -> Result<bool> {
    let (state, has_location): (String, bool) = tx
        .prepare_cached("SELECT state, lat IS NOT NULL FROM requests WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Error::no_request(*id),
            e => e.into(),
        })?;
    let state = State::parse(&state).unwrap_or(State::Draft);
    if state != State::Draft {
        return Err(Error::WrongState {
            id: *id,
            state,
            action,
        });
    }
    Ok(has_location)
}
