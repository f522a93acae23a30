//! Content-addressed, resumable photo upload and download:
//! `HEAD /v1/media/{sha256}` says how many bytes the server holds (`Upload-Offset`),
//! `PATCH` appends at that offset, and when the last byte arrives the server checks the hash,
//! decodes the photo and strips any metadata before it is served by `GET` (the `media_url`).
//! A photo is accepted only from a device that may change a request referring to it (the scope
//! rule, on storage's index of photo references).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use curbside_core::sync::protocol::{MEDIA, UPLOAD_LENGTH, UPLOAD_OFFSET};
use curbside_core::PhotoOptions;
use sha2::{Digest, Sha256};

use crate::auth::Authed;
use crate::scope::{self, Device};
use crate::{blocking, AppState, ServerError};

/// Largest photo accepted: a Curbside client sends ≤ 500 KB by default; other clients less
/// careful get room, not a hole.
pub const MAX_PHOTO: u64 = 8 << 20;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            &format!("{MEDIA}/{{sha256}}"),
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

/// How many bytes of a photo the server holds, finished or not.
pub fn photo_offset(state: &AppState, sha: &str) -> Result<Option<u64>, ServerError> {
    let sha = check_name(sha)?;
    let (done, part) = paths(state, &sha);
    let len = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).ok();
    Ok(len(&done).or_else(|| len(&part)))
}

async fn status(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    Authed(_): Authed,
) -> Result<Response, ServerError> {
    blocking(&state, move |state| {
        Ok(match photo_offset(state, &sha)? {
            Some(n) => (StatusCode::OK, offset_header(n)).into_response(),
            None => (StatusCode::NOT_FOUND, offset_header(0)).into_response(),
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

/// What a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Appended; the server holds this many bytes (the whole photo: it is stored).
    Taken { held: u64, complete: bool },
    /// The offset was not the server's: it holds this many bytes.
    Moved { held: u64 },
}

/// Appends `body` at `offset` of the photo `sha` (`total` bytes in all) for `device`.
pub fn photo_chunk(
    state: &AppState,
    device: &Device,
    sha: &str,
    offset: u64,
    total: u64,
    body: &[u8],
) -> Result<Chunk, ServerError> {
    let sha = check_name(sha)?;
    let end = offset.checked_add(body.len() as u64);
    if total > MAX_PHOTO || end.is_none_or(|end| end > total) {
        return Err(ServerError::PayloadTooLarge(format!(
            "a photo has at most {MAX_PHOTO} bytes, and a chunk must end within Upload-Length"
        )));
    }
    // Checked when an upload starts; later chunks continue a file that exists only because a
    // start passed, and the hash is checked at the end whoever sent them.
    if offset == 0
        && !state
            .storage
            .photo_scope(&sha)?
            .iter()
            .any(|r| scope::may_change(device, r))
    {
        return Err(ServerError::Forbidden(
            "no request this device may change refers to that photo: sync its request first".into(),
        ));
    }
    let (done, part) = paths(state, &sha);
    if let Ok(m) = std::fs::metadata(&done) {
        return Ok(Chunk::Taken {
            held: m.len(),
            complete: true,
        });
    }
    std::fs::create_dir_all(part.parent().expect("in media/"))?;
    let held = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if held != offset {
        // Another attempt got further, or a lost chunk: the client asks again.
        return Ok(Chunk::Moved { held });
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)?;
    f.write_all(body)?;
    f.sync_data()?;
    let held = offset + body.len() as u64;
    if held < total {
        return Ok(Chunk::Taken {
            held,
            complete: false,
        });
    }
    let bytes = std::fs::read(&part)?;
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
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
    std::fs::write(&tmp, &clean)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
    std::fs::rename(&tmp, &done)?;
    let _ = std::fs::remove_file(&part);
    tracing::info!(bytes = clean.len(), "photo stored");
    Ok(Chunk::Taken {
        held: total,
        complete: true,
    })
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    Authed(device): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ServerError> {
    let offset = header_u64(&headers, UPLOAD_OFFSET)?;
    let total = header_u64(&headers, UPLOAD_LENGTH)?;
    blocking(&state, move |state| {
        Ok(
            match photo_chunk(state, &device, &sha, offset, total, &body)? {
                Chunk::Taken {
                    held,
                    complete: true,
                } => (StatusCode::CREATED, offset_header(held)).into_response(),
                Chunk::Taken { held, .. } => {
                    (StatusCode::NO_CONTENT, offset_header(held)).into_response()
                }
                Chunk::Moved { held } => {
                    (StatusCode::CONFLICT, offset_header(held)).into_response()
                }
            },
        )
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
