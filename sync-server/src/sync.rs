//! The Curbside sync protocol, server side: device registration, and `POST /v1/sync`, which
//! takes a device's pending changes and answers with the changes in its scope since its cursor,
//! a page at a time. Everything is checked before storage is touched; storage applies the push
//! all or nothing with curbside-core's merge code. The blocking functions here are the
//! handlers' logic, callable in process (the simulation drives them without sockets).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use curbside_core::sync::log::MAX_AHEAD_MS;
use curbside_core::sync::protocol::{
    RegisterBody, Registered, Role, SyncRequest, SyncResponse, DEVICES, MAX_PUSH, ROTATE_TOKEN,
    SYNC,
};
use curbside_core::sync::{Change, ChangeError, StoredChange, WireChange};
use curbside_core::vocab::ids::uuid_v7;

use crate::auth::{token_hash, Authed};
use crate::limits::ClientAddr;
use crate::scope::Device;
use crate::storage::{NewDevice, SyncCall};
use crate::{blocking, AppState, ServerError};

/// Photo references one push may carry: a request holds a handful of photos.
pub const MAX_PHOTO_REFS: usize = 32;

/// Largest sync body, decompressed (read no further): a full push of small changes fits.
pub const MAX_SYNC_BODY: usize = 4 << 20;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            DEVICES,
            post(register_handler).layer(DefaultBodyLimit::max(16 << 10)),
        )
        .route(ROTATE_TOKEN, post(rotate_handler))
        .route(
            SYNC,
            post(sync_handler).layer(DefaultBodyLimit::max(MAX_SYNC_BODY)),
        )
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ServerError> {
    body.map(|Json(b)| b).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ServerError::PayloadTooLarge(e.body_text()),
        _ => ServerError::BadRequest(format!("body: {}", e.body_text())),
    })
}

async fn register_handler(
    State(state): State<Arc<AppState>>,
    ClientAddr(address): ClientAddr,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> Result<Json<Registered>, ServerError> {
    // Before the body: registration is open, so it is the cheapest thing to flood.
    if let Some(ip) = address {
        state.limits.registration(ip)?;
    }
    let body = json_body(body)?;
    blocking(&state, move |state| register(state, body).map(Json)).await
}

/// Registers a device: a resident, or an inspector of some wards with the admin key.
pub fn register(state: &AppState, body: RegisterBody) -> Result<Registered, ServerError> {
    let role = body.role.unwrap_or(Role::Resident);
    if role == Role::Inspector {
        let granted = body
            .admin_key
            .as_deref()
            .is_some_and(|given| crate::auth::is_admin_key(state, given));
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
    let token = new_token();
    let now = state.clock.now_ms();
    let device_id = uuid_v7(now, &*state.entropy).hyphenated().to_string();
    state.storage.add_device(&NewDevice {
        token_hash: token_hash(&token),
        device: Device {
            id: device_id.clone(),
            role,
            wards: wards.iter().cloned().collect(),
        },
        created_at_ms: now,
    })?;
    tracing::info!(role = role.as_str(), "device registered");
    Ok(Registered {
        device_id,
        token,
        role,
        wards,
    })
}

/// 244 random bits from the OS; only the hash is kept.
pub(crate) fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn rotate_handler(
    State(state): State<Arc<AppState>>,
    Authed(device): Authed,
) -> Result<Json<Registered>, ServerError> {
    blocking(&state, move |state| rotate(state, &device).map(Json)).await
}

/// A new token for `device`; the old one stops working in the same transaction.
pub fn rotate(state: &AppState, device: &Device) -> Result<Registered, ServerError> {
    let token = new_token();
    state
        .storage
        .rotate_token(&device.id, &token_hash(&token))?;
    tracing::info!("device token rotated");
    Ok(Registered {
        device_id: device.id.clone(),
        token,
        role: device.role,
        wards: {
            let mut w: Vec<String> = device.wards.iter().cloned().collect();
            w.sort();
            w
        },
    })
}

async fn sync_handler(
    State(state): State<Arc<AppState>>,
    Authed(device): Authed,
    body: Result<Json<SyncRequest<WireChange>>, JsonRejection>,
) -> Result<Json<SyncResponse<StoredChange>>, ServerError> {
    let body = json_body(body)?;
    blocking(&state, move |state| sync(state, &device, body).map(Json)).await
}

/// One sync call of an authenticated device.
pub fn sync(
    state: &AppState,
    device: &Device,
    body: SyncRequest<WireChange>,
) -> Result<SyncResponse<StoredChange>, ServerError> {
    if body.changes.len() > MAX_PUSH {
        return Err(ServerError::BadRequest(format!(
            "push at most {MAX_PUSH} changes at a time"
        )));
    }
    // Each photo reference is a row in the photo index and a permission for uploads.
    if body.changes.iter().filter(|c| c.field == "photo").count() > MAX_PHOTO_REFS {
        return Err(ServerError::BadRequest(format!(
            "push at most {MAX_PHOTO_REFS} photo references at a time"
        )));
    }
    let now = state.clock.now_ms();
    let horizon_ms = crate::retention_horizon_ms(now, state.retention_days);
    // Checked before any state is touched: the batch is applied whole or not at all.
    let mut changes = Vec::with_capacity(body.changes.len());
    for wire in body.changes {
        let request_id = wire.request_id.chars().take(64).collect::<String>();
        let refused = |e: ChangeError| ServerError::RequestRefused {
            status: StatusCode::BAD_REQUEST,
            request_id: request_id.clone(),
            message: e.to_string(),
        };
        let change = Change::try_from(wire).map_err(refused)?;
        change.check_not_before(horizon_ms).map_err(refused)?;
        match change.check_stamp(now, MAX_AHEAD_MS) {
            Ok(()) => changes.push(change),
            Err(ChangeError::FromTheFuture { .. }) => {
                return Err(ServerError::ClockAhead {
                    server_time_ms: now,
                })
            }
            Err(e) => return Err(refused(e)),
        }
    }
    let accepted: Vec<String> = changes.iter().map(|c| c.id.to_string()).collect();
    let outcome = state.storage.sync(SyncCall {
        device: device.clone(),
        standards: state.standards.clone(),
        changes,
        cursor: body.cursor,
        replica: body.replica,
        now_ms: now,
        page: state.page,
    })?;
    state.metrics.pushed.observe(accepted.len() as f64);
    state.metrics.pulled.observe(outcome.changes.len() as f64);
    Ok(SyncResponse {
        accepted,
        assigned: outcome.assigned,
        changes: outcome.changes,
        cursor: outcome.cursor,
        more: outcome.more,
        server_time_ms: now,
        clock_offset_ms: body.client_time_ms.map(|t| now.saturating_sub(t)),
    })
}
