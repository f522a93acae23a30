//! The Curbside sync protocol, server side: device registration, and `POST /v1/sync`, which
//! takes a client's pending changes (merged with curbside-core's own code, all or nothing) and
//! answers with the changes in the device's scope since its cursor, a page at a time.
//!
//! Scope: an inspector sees the requests of their wards in full; a resident sees their own
//! requests (without internal notes), plus the public view of requests near the places they
//! report from, for duplicate detection. SQLite work runs on the blocking pool, never on the
//! async executor.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use curbside_core::sync::change::{inspector_only, is_internal_note};
use curbside_core::sync::protocol::{
    Assigned, RegisterBody, Registered, Role, SyncRequest, SyncResponse, MAX_PUSH, PAGE,
};
use curbside_core::sync::{self, Change, ChangeError, Hlc};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{AppState, ServerError};

/// How near (metres) a request must be to a place a resident reported from to be in their
/// public view: the duplicate check looks at most ~100 m away, and people move a little.
pub const NEAR_M: f64 = 500.0;
/// Requests a new place brings into a resident's view at once.
const BACKFILL: usize = 200;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/devices", post(register))
        .route("/v1/sync", post(sync_handler))
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ServerError> {
    body.map(|Json(b)| b).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ServerError::PayloadTooLarge(e.body_text()),
        _ => ServerError::BadRequest(format!("body: {}", e.body_text())),
    })
}

/// Runs `f` with the database on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|e| ServerError::Startup(format!("worker: {e}")))?
}

async fn register(
    State(state): State<Arc<AppState>>,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> Result<Json<Registered>, ServerError> {
    let body = json_body(body)?;
    let role = body.role.unwrap_or(Role::Resident);
    if role == Role::Inspector {
        let granted =
            matches!((&state.admin_key, &body.admin_key), (Some(k), Some(given)) if k == given);
        if !granted {
            return Err(ServerError::Forbidden(
                "an inspector needs the server's admin key".into(),
            ));
        }
        if body.wards.is_empty() {
            return Err(ServerError::BadRequest(
                "an inspector needs at least one ward".into(),
            ));
        }
    }
    let wards = if role == Role::Inspector {
        body.wards
    } else {
        Vec::new()
    };
    // 244 random bits from the OS; only the hash is kept.
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let device_id = uuid::Uuid::now_v7().hyphenated().to_string();
    let registered = Registered {
        device_id,
        token,
        role,
        wards,
    };
    blocking(&state, move |state| {
        let conn = state.db.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "INSERT INTO devices (token_hash, device_id, role, wards, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                hash(&registered.token),
                registered.device_id,
                registered.role.as_str(),
                json!(registered.wards).to_string(),
                curbside_core::clock::system_ms()
            ],
        )?;
        tracing::info!(role = registered.role.as_str(), "device registered");
        Ok(Json(registered))
    })
    .await
}

pub(crate) struct Device {
    pub id: String,
    pub role: Role,
    pub wards: HashSet<String>,
}

pub(crate) fn bearer(headers: &HeaderMap) -> Result<String, ServerError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .ok_or_else(|| {
            ServerError::Unauthorized(
                "send Authorization: Bearer TOKEN from POST /v1/devices".into(),
            )
        })
}

pub(crate) fn device(conn: &rusqlite::Connection, token: &str) -> Result<Device, ServerError> {
    let row: Option<(String, String, String)> = conn
        .query_row(
            "SELECT device_id, role, wards FROM devices WHERE token_hash = ?1",
            [hash(token)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (id, role, wards) = row.ok_or_else(|| ServerError::Unauthorized("unknown token".into()))?;
    Ok(Device {
        id,
        role: if role == "inspector" {
            Role::Inspector
        } else {
            Role::Resident
        },
        wards: serde_json::from_str(&wards).unwrap_or_default(),
    })
}

async fn sync_handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<SyncRequest>, JsonRejection>,
) -> Result<Json<SyncResponse>, ServerError> {
    let token = bearer(&headers)?;
    let body = json_body(body)?;
    blocking(&state, move |state| {
        sync_blocking(state, &token, body).map(Json)
    })
    .await
}

fn sync_blocking(
    state: &AppState,
    token: &str,
    body: SyncRequest,
) -> Result<SyncResponse, ServerError> {
    if body.changes.len() > MAX_PUSH {
        return Err(ServerError::BadRequest(format!(
            "push at most {MAX_PUSH} changes at a time"
        )));
    }
    let now = curbside_core::clock::system_ms();
    // Checked before any state is touched: the batch is applied whole or not at all.
    for c in &body.changes {
        match c.check(now, sync::log::MAX_AHEAD_MS) {
            Ok(_) => {}
            Err(ChangeError::FromTheFuture { .. }) => {
                return Err(ServerError::ClockAhead {
                    server_time_ms: now,
                })
            }
            Err(e) => {
                return Err(ServerError::RequestRefused {
                    status: StatusCode::BAD_REQUEST,
                    request_id: c.request_id.clone(),
                    message: e.to_string(),
                })
            }
        }
    }
    let mut conn = state.db.conn.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let device = device(&tx, token)?;
    let meta = |key: &str| -> Result<Option<String>, ServerError> {
        Ok(tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let server_id = meta("server_id")?.unwrap_or_default();
    let compacted: u64 = meta("compacted_seq")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let generation: u64 = meta("compactions")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let malformed = |c: &str| ServerError::BadRequest(format!("cursor {c:?} is malformed"));
    // A cursor is `server:seq:compactions`. It expires when changes after it were compacted
    // away, unless it was given after that compaction (a full resync still paging through).
    let after = match body.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => {
            let mut parts = c.split(':');
            let (id, seq, given_at) = (parts.next(), parts.next(), parts.next());
            if parts.next().is_some() {
                return Err(malformed(c));
            }
            let seq: u64 = match (id, seq) {
                (Some(id), Some(seq)) if id == server_id => {
                    seq.parse().map_err(|_| malformed(c))?
                }
                (Some(_), Some(_)) => return Err(ServerError::CursorForeign),
                _ => return Err(malformed(c)),
            };
            // Cursors from before compactions were counted carry no count.
            let given_at: u64 = match given_at {
                Some(g) => g.parse().map_err(|_| malformed(c))?,
                None => 0,
            };
            if seq < compacted && given_at < generation {
                return Err(ServerError::CursorExpired);
            }
            seq
        }
    };

    let (assigned, fresh) = admit(&tx, &device, &body.changes, now)?;
    sync::apply(&tx, &body.changes, now).map_err(|e| ServerError::BadRequest(e.to_string()))?;
    let touched: HashSet<&str> = body.changes.iter().map(|c| c.request_id.as_str()).collect();
    for id in touched {
        refresh(&tx, state, id)?;
    }

    let mut view = View::new(&tx, device)?;
    let (mut changes, seq, more) = sync::log::changes_since(&tx, after, PAGE, |c| {
        Some(&c.replica) != body.replica.as_ref() && view.allows(&tx, c)
    })
    .map_err(|e| ServerError::BadRequest(e.to_string()))?;
    // A resident reporting from a new place sees what is already open around it.
    if view.device.role == Role::Resident {
        changes.extend(backfill(&tx, &mut view, &fresh)?);
    }
    tx.commit()?;
    Ok(SyncResponse {
        accepted: body.changes.iter().map(|c| c.id.clone()).collect(),
        assigned,
        changes,
        cursor: format!("{server_id}:{seq}:{generation}"),
        more,
        server_time_ms: now,
        clock_offset_ms: body.client_time_ms.map(|t| now - t),
    })
}

/// Checks the device may change every request the push touches, numbers the new ones (the
/// same number again for a retried push) and returns the public ids, and the new requests.
fn admit(
    tx: &Transaction,
    device: &Device,
    changes: &[Change],
    now: i64,
) -> Result<(Vec<Assigned>, Vec<String>), ServerError> {
    let mut seen = Vec::new();
    for c in changes {
        if !seen.contains(&c.request_id) {
            seen.push(c.request_id.clone());
        }
    }
    let refuse = |status, request_id: &str, message: String| ServerError::RequestRefused {
        status,
        request_id: request_id.to_string(),
        message,
    };
    let (mut assigned, mut fresh) = (Vec::new(), Vec::new());
    for request_id in seen {
        let mine = changes.iter().filter(|c| c.request_id == request_id);
        if device.role == Role::Resident {
            if let Some(c) = mine.clone().find(|c| inspector_only(&c.field, &c.value)) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    &request_id,
                    format!("a resident may not write {}", c.field),
                ));
            }
        }
        let known: Option<(i64, String, Option<String>)> = tx
            .query_row(
                "SELECT service_request_id, created_by, ward FROM requests WHERE request_id = ?1",
                [&request_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let number = match known {
            Some((number, by, ward)) => {
                let allowed = by == device.id
                    || (device.role == Role::Inspector
                        && ward.is_some_and(|w| device.wards.contains(&w)));
                if !allowed {
                    return Err(refuse(
                        StatusCode::FORBIDDEN,
                        &request_id,
                        format!("request {request_id} is not this device's to change"),
                    ));
                }
                number
            }
            None => {
                if !mine.clone().any(|c| c.field == "create") {
                    return Err(refuse(
                        StatusCode::NOT_FOUND,
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
                    params![request_id, number, device.id, now],
                )?;
                // The number travels as a change too, so it reaches the reporter even when
                // this answer is lost, and every other replica that sees the request.
                sync::log::stamp_changes(
                    tx,
                    &request_id,
                    vec![("service_request_id".into(), json!(number.to_string()))],
                    now,
                )
                .map_err(|e| ServerError::BadRequest(e.to_string()))?;
                fresh.push(request_id.clone());
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

/// Brings the scope columns of one request up to date with its merged changes.
fn refresh(tx: &Transaction, state: &AppState, request_id: &str) -> Result<(), ServerError> {
    let fields = sync::log::current_values(tx, request_id, &["location", "status", "visibility"])
        .map_err(|e| ServerError::BadRequest(e.to_string()))?;
    let location = fields.get("location");
    let (lat, lon) = (
        location.and_then(|l| l["lat"].as_f64()),
        location.and_then(|l| l["lon"].as_f64()),
    );
    let ward = lat.zip(lon).and_then(|(lat, lon)| {
        let wards = state
            .wards
            .get_or_init(curbside_core::Jurisdiction::toronto);
        wards.ward_of(lat, lon).map(|w| w.code.clone())
    });
    let status = fields
        .get("status")
        .and_then(|s| s.as_str())
        .unwrap_or("accepted")
        .to_string();
    let public = fields.get("visibility").and_then(|v| v.as_str()) != Some("private");
    tx.execute(
        "UPDATE requests SET lat = ?2, lon = ?3, ward = COALESCE(?4, ward), status = ?5, public = ?6
         WHERE request_id = ?1",
        params![request_id, lat, lon, ward, status, public],
    )?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Access {
    None,
    Full,
    Public,
}

/// Creator, ward, latitude, longitude, public.
type ScopeRow = (String, Option<String>, Option<f64>, Option<f64>, bool);

/// What one device may see, decided per request and remembered for the call.
struct View {
    device: Device,
    /// Where a resident has reported from.
    places: Vec<(f64, f64)>,
    access: HashMap<String, Access>,
}

impl View {
    fn new(tx: &Transaction, device: Device) -> Result<View, ServerError> {
        let places = if device.role == Role::Resident {
            tx.prepare_cached(
                "SELECT lat, lon FROM requests WHERE created_by = ?1 AND lat IS NOT NULL",
            )?
            .query_map([&device.id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
        } else {
            Vec::new()
        };
        Ok(View {
            device,
            places,
            access: HashMap::new(),
        })
    }

    fn access(&mut self, tx: &Transaction, request_id: &str) -> Access {
        if let Some(a) = self.access.get(request_id) {
            return *a;
        }
        let row: Option<ScopeRow> = tx
            .prepare_cached(
                "SELECT created_by, ward, lat, lon, public FROM requests WHERE request_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([request_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .unwrap_or(None);
        let d = &self.device;
        let a = match row {
            None => Access::None,
            Some((by, _, _, _, _)) if by == d.id => Access::Full,
            Some((_, ward, _, _, _)) if d.role == Role::Inspector => {
                if ward.is_some_and(|w| d.wards.contains(&w)) {
                    Access::Full
                } else {
                    Access::None
                }
            }
            Some((_, _, Some(lat), Some(lon), true))
                if self.places.iter().any(|&(plat, plon)| {
                    curbside_core::geo::distance_m(lat, lon, plat, plon) <= NEAR_M
                }) =>
            {
                Access::Public
            }
            Some(_) => Access::None,
        };
        self.access.insert(request_id.to_string(), a);
        a
    }

    fn allows(&mut self, tx: &Transaction, c: &Change) -> bool {
        let resident = self.device.role == Role::Resident;
        match self.access(tx, &c.request_id) {
            Access::None => false,
            Access::Full => !(resident && is_internal_note(&c.field, &c.value)),
            Access::Public => public_field(c),
        }
    }
}

/// What anyone may see of a request: never contact details, assignees, priorities or
/// internal notes.
fn public_field(c: &Change) -> bool {
    match c.field.as_str() {
        "create" | "service_request_id" | "description" | "location" | "address" | "status"
        | "visibility" | "photo" | "photo_remove" | "note_retract" => true,
        "note" => !is_internal_note(&c.field, &c.value),
        _ => false,
    }
}

/// The public view of open requests near the resident's new requests.
fn backfill(
    tx: &Transaction,
    view: &mut View,
    fresh: &[String],
) -> Result<Vec<Change>, ServerError> {
    let mut out = Vec::new();
    let mut sent = HashSet::new();
    for id in fresh {
        let place: Option<(f64, f64)> = tx
            .query_row(
                "SELECT lat, lon FROM requests WHERE request_id = ?1 AND lat IS NOT NULL",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((lat, lon)) = place else { continue };
        if !view.places.contains(&(lat, lon)) {
            view.places.push((lat, lon));
        }
        // A box a little larger than the circle; the view decides exactly.
        let dlat = NEAR_M / 110_000.0;
        let dlon = NEAR_M / (111_000.0 * lat.to_radians().cos().max(0.1));
        let near: Vec<String> = tx
            .prepare_cached(
                "SELECT request_id FROM requests
                 WHERE lat BETWEEN ?1 AND ?2 AND lon BETWEEN ?3 AND ?4
                   AND status NOT IN ('completed', 'cancelled') AND public AND created_by <> ?5
                 LIMIT ?6",
            )?
            .query_map(
                params![
                    lat - dlat,
                    lat + dlat,
                    lon - dlon,
                    lon + dlon,
                    view.device.id,
                    BACKFILL as i64
                ],
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?;
        for other in near {
            // Decided before this place joined the view, perhaps as out of sight.
            view.access.remove(&other);
            if !sent.insert(other.clone()) {
                continue;
            }
            let changes =
                sync::log::load(tx, &other).map_err(|e| ServerError::BadRequest(e.to_string()))?;
            out.extend(changes.into_iter().filter(|c| view.allows(tx, c)));
        }
    }
    Ok(out)
}

/// Drops overwritten values and removals older than the retention, and remembers how far
/// that reached so older cursors resync in full.
pub fn compact(state: &AppState, retention_days: u32) -> Result<usize, ServerError> {
    let horizon_ms = curbside_core::clock::system_ms() - i64::from(retention_days) * 86_400_000;
    let horizon = Hlc::new(horizon_ms.max(0) as u64, 0);
    let mut conn = state.db.conn.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (deleted, max_seq) =
        sync::log::compact(&tx, horizon).map_err(|e| ServerError::BadRequest(e.to_string()))?;
    if deleted > 0 {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('compacted_seq', ?1)
             ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            [max_seq.to_string()],
        )?;
        tx.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('compactions', '1')
             ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        )?;
    }
    tx.commit()?;
    Ok(deleted)
}
