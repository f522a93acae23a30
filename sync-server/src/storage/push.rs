//! A push, in the writer's transaction: every check first (replica ids, admission by the scope
//! rule), so a refused push writes nothing; then numbering new requests, logging the changes,
//! what the scope rule needs of each touched request, and filing each arrival in the feed under
//! the keys of who may see it. Written once, over any engine's [`Tx`].

use std::collections::{HashMap, HashSet};

use curbside_core::sync::protocol::{Assigned, Role};
use curbside_core::sync::{merge, Change};
use curbside_core::vocab::{Field, FieldValue, ReplicaId, RequestId, Visibility};
use curbside_core::Jurisdiction;

use super::tx::{Arrival, Dues, Known, PhotoEdit, ScopeColumns, Tx, R};
use super::{dues, duplicates, Standards};
use crate::scope::{self, Device, RequestScope};
use crate::ServerError;

/// Replica ids one device may push under: a reinstalled app registers again, so a few.
const MAX_REPLICAS: usize = 8;

/// Changes one request may hold before a resident's pushes to it are refused: far more than a
/// report's life needs, and a bound on what reading a request costs every later call.
pub const MAX_CHANGES: u64 = 1_000;

/// What a push did: the public numbers of its requests, and the requests it creates (new here,
/// or again: a retry whose answer was lost), whose neighbourhood the pull then brings.
#[derive(Debug, Default)]
pub struct Pushed {
    pub assigned: Vec<Assigned>,
    pub fresh: Vec<RequestId>,
}

/// How admission found a request the push touches.
enum Admitted {
    Known { known: Known, creates: bool },
    New,
}

/// Admits and applies one device's push, all or nothing.
pub fn push(
    tx: &mut dyn Tx,
    wards: &Jurisdiction,
    standards: &Standards,
    device: &Device,
    changes: &[Change],
    now_ms: i64,
) -> R<Pushed> {
    let unbound = check_replicas(tx, device, changes)?;
    let admitted = admit(tx, device, changes)?;
    // Nothing is written before this point: a refusal leaves the store as it was.
    if !unbound.is_empty() {
        tx.bind_replicas(&unbound, &device.id)?;
    }
    let new: Vec<(RequestId, Dues)> = admitted
        .iter()
        .filter(|(_, a)| matches!(a, Admitted::New))
        .map(|(id, _)| {
            let service = changes.iter().find_map(|c| match &c.value {
                FieldValue::Create(create) if c.request_id == *id => {
                    Some(create.service_code.as_str())
                }
                _ => None,
            });
            (*id, dues(standards, service, now_ms))
        })
        .collect();
    let numbers = if new.is_empty() {
        Vec::new()
    } else {
        tx.number(&new, &device.id, now_ms)?
    };
    // Staff acting on a request acknowledge it (the first time is what the standard counts).
    if device.role == Role::Inspector {
        let first: Vec<RequestId> = admitted
            .iter()
            .filter(|(_, a)| match a {
                Admitted::Known { known, .. } => !known.acknowledged,
                Admitted::New => true,
            })
            .map(|(id, _)| *id)
            .collect();
        if !first.is_empty() {
            tx.acknowledge(&first, now_ms)?;
        }
    }
    let resolve_by: HashMap<RequestId, i64> = new
        .iter()
        .filter_map(|(id, d)| Some((*id, d.resolve?)))
        .collect();
    let new: Vec<RequestId> = new.into_iter().map(|(id, _)| id).collect();
    let mut numbers = new.iter().copied().zip(numbers).collect::<HashMap<_, _>>();
    let mut pushed = Pushed::default();
    let mut scopes: HashMap<RequestId, RequestScope> = HashMap::new();
    let mut own = Vec::new();
    for (request_id, admitted) in admitted {
        let number = match admitted {
            Admitted::Known { known, creates } => {
                if creates {
                    pushed.fresh.push(request_id);
                }
                scopes.insert(request_id, known.scope);
                known.number
            }
            Admitted::New => {
                let number = numbers.remove(&request_id).unwrap_or_default();
                // The number travels as a change too, so it reaches the reporter even when
                // this answer is lost, and every other replica that sees the request; so does
                // the date the city expects to resolve it, by its service's standard.
                own.push((request_id, FieldValue::ServiceRequestId(number.to_string())));
                if let Some(at) = resolve_by.get(&request_id) {
                    own.push((request_id, FieldValue::ExpectedAt(Some(*at))));
                }
                scopes.insert(
                    request_id,
                    RequestScope {
                        created_by: device.id.clone(),
                        ward: None,
                        lat: None,
                        lon: None,
                        public: true,
                    },
                );
                pushed.fresh.push(request_id);
                number
            }
        };
        pushed.assigned.push(Assigned {
            request_id,
            service_request_id: number.to_string(),
        });
    }
    let photos: Vec<PhotoEdit> = changes
        .iter()
        .filter_map(|c| match &c.value {
            FieldValue::Photo(p) => Some(PhotoEdit {
                sha256: p.sha256.clone(),
                request_id: c.request_id,
                present: true,
            }),
            // A removed photo is no longer shown through this device's reference.
            FieldValue::PhotoRemove(sha) => Some(PhotoEdit {
                sha256: sha.clone(),
                request_id: c.request_id,
                present: false,
            }),
            _ => None,
        })
        .collect();
    if !photos.is_empty() {
        tx.photo_refs(&photos, &device.id)?;
    }
    // Most pushes (notes, descriptions, answers) move no request: their feed keys are known
    // already, and logging and filing are one step.
    if !changes.iter().any(|c| moves(&c.field())) {
        let keys: Vec<(RequestId, String)> = scopes
            .iter()
            .flat_map(|(id, s)| scope::filed_under(s).into_iter().map(|k| (*id, k)))
            .collect();
        tx.apply_filed(changes, &keys, now_ms)?;
        return Ok(pushed);
    }
    let mut arrivals: Vec<Arrival> = Vec::new();
    if !own.is_empty() {
        arrivals.extend(tx.record_own(&own, now_ms)?);
    }
    arrivals.extend(tx.apply(changes, now_ms)?);
    let Some(first) = arrivals.iter().map(|(seq, _)| *seq).min() else {
        return Ok(pushed); // every change was here already
    };
    // Only a change of where a request is, its status or its visibility moves its scope: a
    // note or a description edit costs no re-reading of the request.
    let arrived: HashSet<RequestId> = arrivals.iter().map(|(_, id)| *id).collect();
    let mut moved = Vec::new();
    for c in changes {
        if moves(&c.field()) && arrived.contains(&c.request_id) && !moved.contains(&c.request_id) {
            moved.push(c.request_id);
        }
    }
    if !moved.is_empty() {
        // A request new here has no earlier changes to bring along.
        let again = refresh(tx, wards, &moved, &mut scopes, &new, first - 1, now_ms)?;
        arrivals.extend(again);
    }
    // Placed now, the new requests are checked against what is already open around them.
    duplicates::on_receipt(tx, &new, now_ms)?;
    let mut keys: HashMap<RequestId, Vec<String>> = HashMap::new();
    let mut entries = Vec::with_capacity(arrivals.len() * 3);
    for (seq, id) in &arrivals {
        let keys = keys
            .entry(*id)
            .or_insert_with(|| scopes.get(id).map(scope::filed_under).unwrap_or_default());
        entries.extend(keys.iter().map(|k| (k.clone(), *seq)));
    }
    tx.file(&entries, now_ms)?;
    Ok(pushed)
}

/// Whether a change of `field` may move its request's scope (where it is, whether it is open,
/// who may see it); a creation places it first.
fn moves(field: &Field) -> bool {
    matches!(
        field,
        Field::Create | Field::Location | Field::Status | Field::Visibility
    )
}

/// The replica ids the push uses that are bound to no device yet; refuses one bound to another
/// device: a change id belongs to its replica, and a device that could push under another's
/// replica would make that replica's later changes look like duplicates.
fn check_replicas<'c>(
    tx: &mut dyn Tx,
    device: &Device,
    changes: &'c [Change],
) -> R<Vec<&'c ReplicaId>> {
    let mut replicas: Vec<&ReplicaId> = changes.iter().map(|c| &c.id.replica).collect();
    replicas.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    replicas.dedup();
    let owners = tx.replica_owners(&replicas)?;
    let mut unbound = Vec::new();
    for replica in replicas {
        match owners.get(replica) {
            Some(owner) if *owner == device.id => {}
            Some(_) => {
                return Err(ServerError::Forbidden(format!(
                    "replica {replica} belongs to another device: a replica id is made once, \
                     by one store"
                )))
            }
            None => unbound.push(replica),
        }
    }
    if !unbound.is_empty() {
        let held = tx.replicas_of(&device.id)?.len();
        if held + unbound.len() > MAX_REPLICAS {
            return Err(ServerError::Forbidden(format!(
                "this device already pushed under {held} replica ids: register again"
            )));
        }
    }
    Ok(unbound)
}

fn refuse(status: u16, request_id: &RequestId, message: String) -> ServerError {
    ServerError::RequestRefused {
        status: axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::FORBIDDEN),
        request_id: request_id.to_string(),
        message,
    }
}

/// Checks the device may change every request the push touches: how each was found, in the
/// order the push first names them.
fn admit(tx: &mut dyn Tx, device: &Device, changes: &[Change]) -> R<Vec<(RequestId, Admitted)>> {
    let mut seen: Vec<RequestId> = Vec::new();
    for c in changes {
        if !seen.contains(&c.request_id) {
            seen.push(c.request_id);
        }
    }
    // Staff are never held back from a request; a resident is, past MAX_CHANGES.
    let resident = device.role != Role::Inspector;
    let mut known = tx.known(&seen, resident)?;
    let mut out = Vec::with_capacity(seen.len());
    for request_id in seen {
        let mine = changes.iter().filter(|c| c.request_id == request_id);
        let known = known.remove(&request_id);
        if let Some(c) = mine
            .clone()
            .find(|c| !scope::may_write(device, &c.value, known.as_ref().map(|k| &k.scope)))
        {
            return Err(refuse(
                403,
                &request_id,
                format!("this device may not write {} here", c.field()),
            ));
        }
        let creates = mine.clone().any(|c| c.field() == Field::Create);
        let admitted = match known {
            Some(known) => {
                if !scope::may_change(device, &known.scope) {
                    return Err(refuse(
                        403,
                        &request_id,
                        format!("request {request_id} is not this device's to change"),
                    ));
                }
                if resident && known.changes + mine.clone().count() as u64 > MAX_CHANGES {
                    return Err(refuse(
                        403,
                        &request_id,
                        format!(
                            "request {request_id} holds the most changes a resident may make \
                             ({MAX_CHANGES}): add to it through the city"
                        ),
                    ));
                }
                Admitted::Known { known, creates }
            }
            None if creates => Admitted::New,
            None => {
                return Err(refuse(
                    404,
                    &request_id,
                    format!("request {request_id} is unknown here: push its create change first"),
                ))
            }
        };
        out.push((request_id, admitted));
    }
    Ok(out)
}

/// The scope columns of a request from its merged changes; `ward` is kept when the request is
/// not placed in any ward (moved out of the city's map, it stays with its inspectors).
pub fn scope_columns(
    wards: &Jurisdiction,
    changes: &[Change],
    ward: Option<String>,
) -> ScopeColumns {
    let fields = merge::current(
        changes,
        &[
            Field::Create,
            Field::Location,
            Field::Status,
            Field::Visibility,
        ],
    );
    let (lat, lon, accuracy_m) = match fields.get(&Field::Location) {
        Some(FieldValue::Location(Some(l))) => (Some(l.lat), Some(l.lon), l.accuracy_m),
        _ => (None, None, None),
    };
    let located = lat.zip(lon);
    ScopeColumns {
        lat,
        lon,
        ward: located
            .and_then(|(lat, lon)| wards.ward_of(lat, lon).map(|w| w.code.clone()))
            .or(ward),
        status: match fields.get(&Field::Status) {
            Some(FieldValue::Status(s)) => s.as_str(),
            _ => "accepted",
        },
        public: !matches!(
            fields.get(&Field::Visibility),
            Some(FieldValue::Visibility(Visibility::Private))
        ),
        cell: located.map(|(lat, lon)| scope::cell_of(lat, lon)),
        service_code: match fields.get(&Field::Create) {
            Some(FieldValue::Create(c)) => Some(c.service_code.clone()),
            _ => None,
        },
        accuracy_m,
    }
}

/// Brings the scope columns of the `moved` requests up to date with their merged changes. When
/// that files one under a key it was not filed under (made public, moved to another cell or
/// ward), its changes that arrived before this push (at or before `before`) arrive again, so
/// the devices of the new key get its whole history, not only what follows; a request `new`
/// here has none. Returns those arrivals.
fn refresh(
    tx: &mut dyn Tx,
    wards: &Jurisdiction,
    moved: &[RequestId],
    scopes: &mut HashMap<RequestId, RequestScope>,
    new: &[RequestId],
    before: u64,
    now_ms: i64,
) -> R<Vec<Arrival>> {
    let fields = [
        Field::Create,
        Field::Location,
        Field::Status,
        Field::Visibility,
    ];
    let mut loaded = tx.load(moved, Some(&fields))?;
    let mut columns = Vec::with_capacity(moved.len());
    let mut widened = Vec::new();
    for id in moved {
        let Some(scope) = scopes.get_mut(id) else {
            continue;
        };
        let changes = loaded.remove(id).unwrap_or_default();
        let c = scope_columns(wards, &changes, scope.ward.clone());
        let was = scope::filed_under(scope);
        scope.lat = c.lat;
        scope.lon = c.lon;
        scope.ward = c.ward.clone();
        scope.public = c.public;
        if !new.contains(id) && scope::filed_under(scope).iter().any(|k| !was.contains(k)) {
            widened.push(*id);
        }
        columns.push((*id, c));
    }
    tx.set_scopes(&columns, now_ms)?;
    let mut again = Vec::new();
    for id in widened {
        again.extend(tx.arrive_again(&id, before)?);
    }
    Ok(again)
}
