//! Content-addressed, resumable photo upload and download:
//! `HEAD /v1/media/{sha256}` says how many bytes the server holds (`Upload-Offset`),
//! `PATCH` appends at that offset, and when the last byte arrives the server checks the hash,
//! decodes the photo and strips any metadata before it is served by `GET` (the `media_url`).
//! A photo is accepted only from a device that may see a request it belongs to.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use curbside_core::sync::protocol::{Role, UPLOAD_LENGTH, UPLOAD_OFFSET};
use curbside_core::PhotoOptions;
use sha2::{Digest, Sha256};

use crate::sync::{bearer, blocking, device};
use crate::{AppState, ServerError};

/// Largest photo accepted: a Curbside client sends ≤ 500 KB by default; other clients less
/// careful get room, not a hole.
pub const MAX_PHOTO: u64 = 8 << 20;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/media/{sha256}",
            get(download).head(status).patch(upload),
        )
        .layer(DefaultBodyLimit::max(2 << 20))
}

fn check_name(sha: &str) -> Result<String, ServerError> {
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha.to_ascii_lowercase())
    } else {
        Err(ServerError::NotFound(
            "media are named by the SHA-256 of their bytes (64 hex digits)".into(),
        ))
    }
}

fn paths(state: &AppState, sha: &str) -> (PathBuf, PathBuf) {
    let dir = state.data_dir.join("media");
    (
        dir.join(format!("{sha}.jpg")),
        dir.join(format!("{sha}.part")),
    )
}

fn offset_header(n: u64) -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::HeaderName::from_static(UPLOAD_OFFSET),
            HeaderValue::from(n),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// May this device send this photo? Only if a request it may change or see refers to it.
fn may_send(
    conn: &rusqlite::Connection,
    device_id: &str,
    role: Role,
    wards: &std::collections::HashSet<String>,
    sha: &str,
) -> Result<bool, ServerError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.created_by, r.ward FROM sync_change_rows c JOIN requests r ON r.request_id = c.request_id
         WHERE c.field = 'photo' AND json_extract(c.value, '$.sha256') = ?1",
    )?;
    let rows = stmt.query_map([sha], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    for row in rows {
        let (by, ward) = row?;
        if by == device_id || (role == Role::Inspector && ward.is_some_and(|w| wards.contains(&w)))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn status(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let sha = check_name(&sha)?;
    let token = bearer(&headers)?;
    blocking(&state, move |state| {
        {
            let conn = state.db.conn.lock().unwrap_or_else(|p| p.into_inner());
            device(&conn, &token)?;
        }
        let (done, part) = paths(state, &sha);
        let len = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).ok();
        Ok(match (len(&done), len(&part)) {
            (Some(n), _) => (StatusCode::OK, offset_header(n)).into_response(),
            (None, Some(n)) => (StatusCode::OK, offset_header(n)).into_response(),
            (None, None) => (StatusCode::NOT_FOUND, offset_header(0)).into_response(),
        })
    })
    .await
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64, ServerError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ServerError::BadRequest(format!("send the {name} header (bytes)")))
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ServerError> {
    let sha = check_name(&sha)?;
    let token = bearer(&headers)?;
    let offset = header_u64(&headers, UPLOAD_OFFSET)?;
    let total = header_u64(&headers, UPLOAD_LENGTH)?;
    if total > MAX_PHOTO || offset + body.len() as u64 > total {
        return Err(ServerError::PayloadTooLarge(format!(
            "a photo has at most {MAX_PHOTO} bytes, and a chunk must end within Upload-Length"
        )));
    }
    blocking(&state, move |state| {
        {
            let conn = state.db.conn.lock().unwrap_or_else(|p| p.into_inner());
            let d = device(&conn, &token)?;
            // Checked when an upload starts (it scans the photo references); later chunks
            // continue a file that exists only because a start passed, and the hash is
            // checked at the end whoever sent them.
            if offset == 0 && !may_send(&conn, &d.id, d.role, &d.wards, &sha)? {
                return Err(ServerError::Forbidden(
                    "no request this device may change refers to that photo: sync its request first".into(),
                ));
            }
        }
        let (done, part) = paths(state, &sha);
        if let Ok(m) = std::fs::metadata(&done) {
            return Ok((StatusCode::OK, offset_header(m.len())).into_response());
        }
        std::fs::create_dir_all(part.parent().expect("in media/"))
            .map_err(|e| ServerError::Startup(format!("media directory: {e}")))?;
        let held = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if held != offset {
            // Another attempt got further, or a lost chunk: the client asks again.
            return Ok((StatusCode::CONFLICT, offset_header(held)).into_response());
        }
        let io = |e: std::io::Error| ServerError::Startup(format!("media: {e}"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_data().map_err(io)?;
        let held = offset + body.len() as u64;
        if held < total {
            return Ok((StatusCode::NO_CONTENT, offset_header(held)).into_response());
        }
        let bytes = std::fs::read(&part).map_err(io)?;
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        if digest != sha {
            let _ = std::fs::remove_file(&part);
            return Err(ServerError::BadRequest(
                "the bytes do not hash to the name they were sent under; send them again".into(),
            ));
        }
        let options = PhotoOptions {
            max_file_bytes: MAX_PHOTO as usize,
            ..PhotoOptions::default()
        };
        let clean = match curbside_core::photo::clean_upload(&bytes, &options) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(ServerError::BadRequest(format!("photo: {e}")));
            }
        };
        // Written whole, then renamed: a reader never sees half a photo.
        let tmp = part.with_extension("tmp");
        std::fs::write(&tmp, &clean).map_err(io)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &done).map_err(io)?;
        let _ = std::fs::remove_file(&part);
        tracing::info!(bytes = clean.len(), "photo stored");
        Ok((StatusCode::CREATED, offset_header(total)).into_response())
    })
    .await
}

async fn download(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
) -> Result<Response, ServerError> {
    let sha = check_name(&sha)?;
    let (done, _) = paths(&state, &sha);
    let bytes = tokio::fs::read(&done)
        .await
        .map_err(|_| ServerError::NotFound(format!("no photo {sha}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        bytes,
    )
        .into_response())
}
