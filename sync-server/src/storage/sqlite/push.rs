//! A push, inside the writer's transaction: admission by the scope rule (numbering new
//! requests), what the scope rule needs of each touched request, and filing each arrival in the
//! feed under the keys of who may see it.

use std::collections::{HashMap, HashSet};

use curbside_core::sync::protocol::{Assigned, Role};
use curbside_core::sync::{log, Change};
use curbside_core::vocab::{Field, FieldValue, RequestId};
use curbside_core::Jurisdiction;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::scope::{self, Device, RequestScope};
use crate::ServerError;

/// Admits and applies one device's push (all or nothing), brings the scope of the requests it
/// touched up to date and files its arrivals in the feed. Returns the public numbers of its
/// requests and those new here.
pub(super) fn push(
    tx: &Transaction,
    wards: &Jurisdiction,
    device: &Device,
    changes: &[Change],
    now_ms: i64,
) -> Result<(Vec<Assigned>, Vec<RequestId>), ServerError> {
    let before = log::last_seq(tx)?;
    bind_replicas(tx, device, changes)?;
    let (assigned, fresh) = admit(tx, device, changes, now_ms)?;
    let report = log::apply(tx, changes, now_ms)?;
    let mut photo = tx.prepare_cached(
        "INSERT OR IGNORE INTO photo_refs (sha256, request_id, device_id) VALUES (?1, ?2, ?3)",
    )?;
    let mut unphoto = tx.prepare_cached(
        "DELETE FROM photo_refs WHERE sha256 = ?1 AND request_id = ?2 AND device_id = ?3",
    )?;
    for c in changes {
        match &c.value {
            FieldValue::Photo(p) => {
                photo.execute(params![p.sha256, c.request_id.to_string(), device.id])?;
            }
            // A removed photo is no longer shown through this device's reference.
            FieldValue::PhotoRemove(sha) => {
                unphoto.execute(params![sha, c.request_id.to_string(), device.id])?;
            }
            _ => {}
        }
    }
    // Only a change of where a request is, its status or its visibility moves its scope: a
    // note or a description edit costs no re-reading of the request.
    let moved: HashSet<RequestId> = changes
        .iter()
        .filter(|c| {
            matches!(
                c.field(),
                Field::Create | Field::Location | Field::Status | Field::Visibility
            )
        })
        .map(|c| c.request_id)
        .collect();
    for id in &moved {
        refresh(tx, wards, id, before)?;
    }
    if report.applied > 0 {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO arrivals (seq, at_ms) SELECT MAX(seq), ?1 FROM sync_changes",
        )?
        .execute([now_ms])?;
    }
    file(tx, before)?;
    Ok((assigned, fresh))
}

/// Replica ids one device may push under: a reinstalled app registers again, so a few.
const MAX_REPLICAS: i64 = 8;

/// Changes one request may hold before a resident's pushes to it are refused: far more than a
/// report's life needs, and a bound on what reading a request costs every later call.
pub(super) const MAX_CHANGES: u64 = 1_000;

/// Binds each replica id the push uses to this device the first time it is seen, and refuses
/// one bound to another device: a change id belongs to its replica, and a device that could
/// push under another's replica would make that replica's later changes look like duplicates.
fn bind_replicas(tx: &Transaction, device: &Device, changes: &[Change]) -> Result<(), ServerError> {
    let mut replicas: Vec<&str> = changes.iter().map(|c| c.id.replica.as_str()).collect();
    replicas.sort_unstable();
    replicas.dedup();
    for replica in replicas {
        let owner: Option<String> = tx
            .prepare_cached("SELECT device_id FROM replicas WHERE replica = ?1")?
            .query_row([replica], |r| r.get(0))
            .optional()?;
        match owner {
            Some(owner) if owner == device.id => {}
            Some(_) => {
                return Err(ServerError::Forbidden(format!(
                    "replica {replica} belongs to another device: a replica id is made once, \
                     by one store"
                )))
            }
            None => {
                let held: i64 = tx
                    .prepare_cached("SELECT COUNT(*) FROM replicas WHERE device_id = ?1")?
                    .query_row([&device.id], |r| r.get(0))?;
                if held >= MAX_REPLICAS {
                    return Err(ServerError::Forbidden(format!(
                        "this device already pushed under {held} replica ids: register again"
                    )));
                }
                tx.prepare_cached("INSERT INTO replicas (replica, device_id) VALUES (?1, ?2)")?
                    .execute(params![replica, device.id])?;
            }
        }
    }
    Ok(())
}

/// The columns of a [`RequestScope`], in the order [`scope_from_row`] reads them.
pub(super) const SCOPE_COLUMNS: &str = "r.created_by, r.ward, r.lat, r.lon, r.public";

pub(super) fn scope_from_row(r: &rusqlite::Row) -> rusqlite::Result<RequestScope> {
    Ok(RequestScope {
        created_by: r.get(0)?,
        ward: r.get(1)?,
        lat: r.get(2)?,
        lon: r.get(3)?,
        public: r.get(4)?,
    })
}

pub(super) fn scope_row(
    tx: &Transaction,
    request_id: &RequestId,
) -> Result<Option<RequestScope>, ServerError> {
    Ok(tx
        .prepare_cached(&format!(
            "SELECT {SCOPE_COLUMNS} FROM requests r WHERE r.request_id = ?1"
        ))?
        .query_row([request_id.to_string()], scope_from_row)
        .optional()?)
}

fn refuse(status: u16, request_id: &RequestId, message: String) -> ServerError {
    ServerError::RequestRefused {
        status: axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::FORBIDDEN),
        request_id: request_id.to_string(),
        message,
    }
}

/// Checks the device may change every request the push touches, numbers the new ones (the
/// same number again for a retried push) and returns the public ids, and the requests the push
/// creates (new here, or again: a retry whose answer was lost).
fn admit(
    tx: &Transaction,
    device: &Device,
    changes: &[Change],
    now: i64,
) -> Result<(Vec<Assigned>, Vec<RequestId>), ServerError> {
    let mut seen: Vec<RequestId> = Vec::new();
    for c in changes {
        if !seen.contains(&c.request_id) {
            seen.push(c.request_id);
        }
    }
    let (mut assigned, mut fresh) = (Vec::new(), Vec::new());
    for request_id in seen {
        let mine = changes.iter().filter(|c| c.request_id == request_id);
        let known: Option<(RequestScope, i64)> = tx
            .prepare_cached(&format!(
                "SELECT {SCOPE_COLUMNS}, r.service_request_id FROM requests r
                 WHERE r.request_id = ?1"
            ))?
            .query_row([request_id.to_string()], |r| {
                Ok((scope_from_row(r)?, r.get(5)?))
            })
            .optional()?;
        if let Some(c) = mine
            .clone()
            .find(|c| !scope::may_write(device, &c.value, known.as_ref().map(|k| &k.0)))
        {
            return Err(refuse(
                403,
                &request_id,
                format!("this device may not write {} here", c.field()),
            ));
        }
        let number: i64 = match known {
            Some((request, number)) => {
                if !scope::may_change(device, &request) {
                    return Err(refuse(
                        403,
                        &request_id,
                        format!("request {request_id} is not this device's to change"),
                    ));
                }
                // Staff are never held back from a request; a resident is past this many.
                if device.role != Role::Inspector
                    && log::count(tx, &request_id)? + mine.clone().count() as u64 > MAX_CHANGES
                {
                    return Err(refuse(
                        403,
                        &request_id,
                        format!(
                            "request {request_id} holds the most changes a resident may make \
                             ({MAX_CHANGES}): add to it through the city"
                        ),
                    ));
                }
                // A retried creation (its answer was lost) brings the neighbourhood again.
                if mine.clone().any(|c| c.field() == Field::Create) {
                    fresh.push(request_id);
                }
                number
            }
            None => {
                if !mine.clone().any(|c| c.field() == Field::Create) {
                    return Err(refuse(
                        404,
                        &request_id,
                        format!(
                            "request {request_id} is unknown here: push its create change first"
                        ),
                    ));
                }
                let number: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(service_request_id), 100000) + 1 FROM requests",
                    [],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO requests (request_id, service_request_id, created_by, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![request_id.to_string(), number, device.id, now],
                )?;
                // The number travels as a change too, so it reaches the reporter even when
                // this answer is lost, and every other replica that sees the request.
                log::record(
                    tx,
                    request_id,
                    vec![FieldValue::ServiceRequestId(number.to_string())],
                    now,
                    log::Outbox::None,
                )?;
                fresh.push(request_id);
                number
            }
        };
        assigned.push(Assigned {
            request_id,
            service_request_id: number.to_string(),
        });
    }
    Ok((assigned, fresh))
}

/// Brings the scope columns of one request up to date with its merged changes. When that
/// files it under a key it was not filed under (made public, moved to another cell or ward),
/// its changes from before this push (`before`) arrive again, so the devices of the new key
/// get its whole history, not only what follows.
fn refresh(
    tx: &Transaction,
    wards: &Jurisdiction,
    request_id: &RequestId,
    before: u64,
) -> Result<(), ServerError> {
    let was = scope_row(tx, request_id)?.map(|r| scope::filed_under(&r));
    let fields = log::current(
        tx,
        request_id,
        &[Field::Location, Field::Status, Field::Visibility],
    )?;
    let (lat, lon) = match fields.get(&Field::Location) {
        Some(FieldValue::Location(Some(l))) => (Some(l.lat), Some(l.lon)),
        _ => (None, None),
    };
    let ward = lat
        .zip(lon)
        .and_then(|(lat, lon)| wards.ward_of(lat, lon).map(|w| w.code.clone()));
    let status = match fields.get(&Field::Status) {
        Some(FieldValue::Status(s)) => s.as_str(),
        _ => "accepted",
    };
    let public = !matches!(
        fields.get(&Field::Visibility),
        Some(FieldValue::Visibility(
            curbside_core::vocab::Visibility::Private
        ))
    );
    let cell = lat.zip(lon).map(|(lat, lon)| scope::cell_of(lat, lon));
    tx.prepare_cached(
        "UPDATE requests SET lat = ?2, lon = ?3, ward = COALESCE(?4, ward), status = ?5, public = ?6,
                             cell = ?7
         WHERE request_id = ?1",
    )?
    .execute(params![request_id.to_string(), lat, lon, ward, status, public, cell])?;
    if let (Some(was), Some(now)) = (was, scope_row(tx, request_id)?) {
        if scope::filed_under(&now).iter().any(|k| !was.contains(k)) {
            log::arrive_again(tx, request_id, before)?;
        }
    }
    Ok(())
}

/// Files the changes that arrived after `before` under the feed keys of their requests.
fn file(tx: &Transaction, before: u64) -> Result<(), ServerError> {
    let mut keys: HashMap<RequestId, Vec<String>> = HashMap::new();
    let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO feed (key, seq) VALUES (?1, ?2)")?;
    for (seq, id) in log::arrivals_after(tx, before)? {
        if let std::collections::hash_map::Entry::Vacant(e) = keys.entry(id) {
            e.insert(
                scope_row(tx, &id)?
                    .map(|r| scope::filed_under(&r))
                    .unwrap_or_default(),
            );
        }
        for k in &keys[&id] {
            insert.execute(params![k, seq as i64])?;
        }
    }
    Ok(())
}
