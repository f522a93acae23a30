//! The Curbside sync protocol, server side: device registration, and `POST /v1/sync`, which
//! takes a client's pending changes (merged with curbside-core's own code, all or nothing) and
//! answers with the changes in the device's scope since its cursor, a page at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use curbside_core::sync::{self, Change};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AppState, ServerError};

/// Changes one push may carry, and one pull page returns.
pub const MAX_PUSH: usize = 1_000;
pub const PAGE: usize = 500;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/devices", post(register))
        .route("/v1/sync", post(sync_handler))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Resident,
    Inspector,
}

#[derive(Deserialize)]
pub struct RegisterBody {
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub wards: Vec<String>,
    #[serde(default)]
    pub admin_key: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct Registered {
    pub device_id: String,
    pub token: String,
    pub role: Role,
    pub wards: Vec<String>,
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ServerError> {
    body.map(|Json(b)| b)
        .map_err(|e| ServerError::BadRequest(format!("body: {}", e.body_text())))
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
    let conn = state.db.conn.lock().unwrap_or_else(|p| p.into_inner());
    conn.execute(
        "INSERT INTO devices (token_hash, device_id, role, wards, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            hash(&token),
            device_id,
            if role == Role::Inspector { "inspector" } else { "resident" },
            serde_json::to_string(&wards).expect("strings"),
            curbside_core::clock::now_ms()
        ],
    )?;
    tracing::info!(role = ?role, "device registered");
    Ok(Json(Registered {
        device_id,
        token,
        role,
        wards,
    }))
}

struct Device {
    id: String,
    role: Role,
    wards: HashSet<String>,
}

fn device(tx: &Transaction, headers: &HeaderMap) -> Result<Device, ServerError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ServerError::Unauthorized(
                "send Authorization: Bearer TOKEN from POST /v1/devices".into(),
            )
        })?;
    let row: Option<(String, String, String)> = tx
        .query_row(
            "SELECT device_id, role, wards FROM devices WHERE token_hash = ?1",
            [hash(token.trim())],
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

#[derive(Deserialize)]
pub struct SyncBody {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub client_time_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Assigned {
    pub request_id: String,
    pub service_request_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Every pushed change is now held by the server (new or seen before).
    pub accepted: Vec<String>,
    /// The public id of every request the push touched.
    pub assigned: Vec<Assigned>,
    pub changes: Vec<Change>,
    pub cursor: String,
    /// More changes wait: sync again with the new cursor.
    pub more: bool,
    pub server_time_ms: i64,
    /// Server time minus the client's: the client adds it to its clock.
    pub clock_offset_ms: Option<i64>,
}

async fn sync_handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<SyncBody>, JsonRejection>,
) -> Result<Json<SyncResponse>, ServerError> {
    let body = json_body(body)?;
    if body.changes.len() > MAX_PUSH {
        return Err(ServerError::BadRequest(format!(
            "push at most {MAX_PUSH} changes at a time"
        )));
    }
    let now = curbside_core::clock::now_ms();
    let mut conn = state.db.conn.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let device = device(&tx, &headers)?;
    let server_id: String =
        tx.query_row("SELECT value FROM meta WHERE key = 'server_id'", [], |r| {
            r.get(0)
        })?;
    let after = match body.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match c.split_once(':') {
            Some((id, seq)) if id == server_id => seq
                .parse()
                .map_err(|_| ServerError::BadRequest(format!("cursor {c:?} is malformed")))?,
            Some(_) => {
                return Err(ServerError::Conflict(
                    "the cursor comes from another server: sync again from the start".into(),
                ))
            }
            None => {
                return Err(ServerError::BadRequest(format!(
                    "cursor {c:?} is malformed"
                )))
            }
        },
    };

    let assigned = admit(&tx, &state, &device, &body.changes, now)?;
    sync::apply(&tx, &body.changes, now).map_err(|e| ServerError::BadRequest(e.to_string()))?;

    // Pull: what the device may see, since its cursor.
    let mut in_scope: HashMap<String, bool> = HashMap::new();
    let mut scope_of = |request_id: &str| -> bool {
        if let Some(&v) = in_scope.get(request_id) {
            return v;
        }
        let row: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT created_by, ward FROM requests WHERE request_id = ?1",
                [request_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .unwrap_or(None);
        let v = match row {
            None => false,
            Some((by, ward)) => {
                by == device.id
                    || (device.role == Role::Inspector
                        && ward.is_some_and(|w| device.wards.contains(&w)))
            }
        };
        in_scope.insert(request_id.to_string(), v);
        v
    };
    let (changes, seq, more) =
        sync::log::changes_since(&tx, after, PAGE, |c| scope_of(&c.request_id))
            .map_err(|e| ServerError::BadRequest(e.to_string()))?;
    tx.commit()?;
    Ok(Json(SyncResponse {
        accepted: body.changes.iter().map(|c| c.id.clone()).collect(),
        assigned,
        changes,
        cursor: format!("{server_id}:{seq}"),
        more,
        server_time_ms: now,
        clock_offset_ms: body.client_time_ms.map(|t| now - t),
    }))
}

/// Checks the device may change every request the push touches, numbers the new ones (the
/// same number again for a retried push) and returns the public ids.
fn admit(
    tx: &Transaction,
    state: &AppState,
    device: &Device,
    changes: &[Change],
    now: i64,
) -> Result<Vec<Assigned>, ServerError> {
    let mut seen = Vec::new();
    for c in changes {
        if !seen.contains(&c.request_id) {
            seen.push(c.request_id.clone());
        }
    }
    let mut assigned = Vec::new();
    for request_id in seen {
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
                    return Err(ServerError::Forbidden(format!(
                        "request {request_id} is not this device's to change"
                    )));
                }
                number
            }
            None => {
                if !changes
                    .iter()
                    .any(|c| c.request_id == request_id && c.field == "create")
                {
                    return Err(ServerError::BadRequest(format!(
                        "request {request_id} is unknown here: push its create change first"
                    )));
                }
                let ward = changes
                    .iter()
                    .filter(|c| c.request_id == request_id && c.field == "location")
                    .max_by_key(|c| (c.hlc, c.replica.clone()))
                    .and_then(|c| Some((c.value["lat"].as_f64()?, c.value["lon"].as_f64()?)))
                    .and_then(|(lat, lon)| {
                        let wards = state
                            .wards
                            .get_or_init(curbside_core::Jurisdiction::toronto);
                        wards.ward_of(lat, lon).map(|w| w.code.clone())
                    });
                let number: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(service_request_id), 100000) + 1 FROM requests",
                    [],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO requests (request_id, service_request_id, created_by, ward, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![request_id, number, device.id, ward, now],
                )?;
                number
            }
        };
        assigned.push(Assigned {
            request_id,
            service_request_id: number.to_string(),
        });
    }
    Ok(assigned)
}
