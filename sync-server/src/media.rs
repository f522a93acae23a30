//! Content-addressed, resumable photo upload and download:
//! `HEAD /v1/media/{sha256}` says how many bytes the server holds (`Upload-Offset`),
//! `PATCH` appends at that offset, and when the last byte arrives the server checks the hash and
//! encodes the photo again from its pixels before `GET` serves it (the `media_url`).
//!
//! - An upload belongs to the device that started it: its unfinished bytes live in
//!   `media/parts/{device}/`, where no other device can append, and count against that device's
//!   quota ([`PART_QUOTA`], [`MAX_PARTS`]); parts untouched for [`STALE_PART`] are swept.
//! - Checking the offset and appending are one step, under an exclusive lock on the part file
//!   (threads and processes alike): two chunks at one offset cannot both append.
//! - Nothing the uploader sent but the picture is served: no metadata segment, nothing after
//!   the image's end (a second JPEG with GPS tags, say).
//! - Every method needs a token, and a photo is answered only to a device that may see a
//!   request referring to it (the scope rule, on storage's index of photo references); a
//!   chunk only from one that may change such a request.

use std::fs::File;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use curbside_core::sync::protocol::{Role, MEDIA, UPLOAD_LENGTH, UPLOAD_OFFSET};
use curbside_core::PhotoOptions;
use sha2::{Digest, Sha256};

use crate::auth::Authed;
use crate::scope::{self, Access, Device};
use crate::{blocking, AppState, ServerError};

/// Largest photo accepted: a Curbside client sends ≤ 500 KB by default; other clients less
/// careful get room, not a hole.
pub const MAX_PHOTO: u64 = 8 << 20;
/// Largest chunk one PATCH carries.
pub const MAX_CHUNK: usize = 2 << 20;
/// Unfinished bytes (as declared by `Upload-Length`) one device may hold at once.
pub const PART_QUOTA: u64 = 32 << 20;
/// Unfinished uploads one device may hold at once.
pub const MAX_PARTS: usize = 16;
/// Photo bytes one device may store in a day: a few hundred of a Curbside client's photos.
pub const DAILY_BYTES: u64 = 128 << 20;
/// An unfinished upload untouched this long is dropped: its device starts again.
pub const STALE_PART: Duration = Duration::from_secs(2 * 86_400);

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            &format!("{MEDIA}/{{sha256}}"),
            get(download).head(status).patch(upload),
        )
        .layer(DefaultBodyLimit::max(MAX_CHUNK))
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

fn finished(state: &AppState, sha: &str) -> PathBuf {
    state.data_dir.join("media").join(format!("{sha}.jpg"))
}

fn parts_dir(state: &AppState, device: &Device) -> PathBuf {
    // Device ids are UUIDs the server made: safe as a directory name.
    state.data_dir.join("media").join("parts").join(&device.id)
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

fn not_found(sha: &str) -> ServerError {
    ServerError::NotFound(format!("no photo {sha} that this device may see"))
}

/// May `device` see the photo: does a request it may see refer to it, by a device that sent
/// its bytes? (A reference alone could be made by anyone who knows a hash.)
fn may_see(state: &AppState, device: &Device, sha: &str) -> Result<bool, ServerError> {
    let refs = state.storage.photo_scope(sha)?;
    let requests: Vec<_> = refs.iter().filter(|r| r.held).map(|r| &r.request).collect();
    if requests.iter().any(|r| scope::may_change(device, r)) {
        return Ok(true);
    }
    if device.role != Role::Resident || !requests.iter().any(|r| r.public) {
        return Ok(false);
    }
    let places = state.storage.reported_places(&device.id)?;
    Ok(requests
        .iter()
        .any(|r| scope::access(device, r, &places) != Access::None))
}

/// May `device` upload the photo: did it refer to it in a request it may change?
fn may_upload(state: &AppState, device: &Device, sha: &str) -> Result<bool, ServerError> {
    Ok(state
        .storage
        .photo_scope(sha)?
        .iter()
        .any(|r| r.by == device.id && scope::may_change(device, &r.request)))
}

/// How many bytes of a photo the server holds for `device`: the whole upload once stored from
/// its bytes, else what it has sent of its own upload.
pub fn photo_offset(
    state: &AppState,
    device: &Device,
    sha: &str,
) -> Result<Option<u64>, ServerError> {
    let sha = check_name(sha)?;
    if let Some(n) = state.storage.photo_uploaded_bytes(&sha)? {
        if finished(state, &sha).exists() && state.storage.photo_held_by(&sha, &device.id)? {
            return Ok(Some(n));
        }
    }
    let part = parts_dir(state, device).join(format!("{sha}.part"));
    Ok(std::fs::metadata(part).ok().map(|m| m.len()))
}

async fn status(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    Authed(device): Authed,
) -> Result<Response, ServerError> {
    blocking(&state, move |state| {
        Ok(match photo_offset(state, &device, &sha)? {
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

/// How the server decodes a photo it stores: far within what its memory allows, whatever
/// the file claims. A Curbside client sends at most 1,600 px on the long edge; 16 MP leaves a
/// phone's camera room, and the decoder may use 64 MB at most (a progressive JPEG keeps all its
/// coefficients).
pub fn decode_options() -> PhotoOptions {
    PhotoOptions {
        max_file_bytes: MAX_PHOTO as usize,
        max_pixels: 16_000_000,
        max_decode_bytes: 64 << 20,
        // A little above a phone's own quality: encoding again loses as little as it can.
        quality: 90,
        ..PhotoOptions::default()
    }
}

/// Refuses a device that stored [`DAILY_BYTES`] of photos in the last day.
fn check_daily_quota(state: &AppState, device: &Device) -> Result<(), ServerError> {
    let since = state.clock.now_ms() - 86_400_000;
    let stored = state.storage.photo_bytes_stored_by(&device.id, since)?;
    if stored >= DAILY_BYTES {
        return Err(ServerError::TooMany {
            retry_after_s: 3_600,
            message: format!(
                "this device stored {stored} bytes of photos today, the most one device may \
                 ({DAILY_BYTES}): try again later"
            ),
        });
    }
    Ok(())
}

/// What a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Appended; the server holds this many bytes (the whole photo: it is stored).
    Taken { held: u64, complete: bool },
    /// The offset was not the server's: it holds this many bytes.
    Moved { held: u64 },
}

/// The unfinished uploads a device holds: how many, and the bytes they declared.
fn parts_held(dir: &FsPath) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
        .fold((0, 0), |(n, bytes), e| {
            let declared = declared_length(&e.path()).unwrap_or(MAX_PHOTO);
            (n + 1, bytes + declared)
        })
}

/// The `Upload-Length` an upload was started with, kept beside its part.
fn declared_length(part: &FsPath) -> Option<u64> {
    std::fs::read_to_string(part.with_extension("length"))
        .ok()?
        .trim()
        .parse()
        .ok()
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
    if total == 0 || total > MAX_PHOTO || end.is_none_or(|end| end > total) {
        return Err(ServerError::PayloadTooLarge(format!(
            "a photo has 1 to {MAX_PHOTO} bytes, and a chunk must end within Upload-Length"
        )));
    }
    // Every chunk, not only the first: the index makes it one lookup.
    if !may_upload(state, device, &sha)? {
        return Err(ServerError::Forbidden(
            "no request this device may change refers to that photo: sync its request first".into(),
        ));
    }
    let done = finished(state, &sha);
    // Stored already, from this device's bytes. Another device sends them whole too: that is
    // how it shows it holds the photo (a hash alone is no proof).
    if let Some(n) = state.storage.photo_uploaded_bytes(&sha)? {
        if done.exists() && state.storage.photo_held_by(&sha, &device.id)? {
            return Ok(Chunk::Taken {
                held: n,
                complete: true,
            });
        }
    }
    let dir = parts_dir(state, device);
    let part = dir.join(format!("{sha}.part"));
    let length = part.with_extension("length");
    if !part.exists() {
        if offset != 0 {
            return Ok(Chunk::Moved { held: 0 });
        }
        check_daily_quota(state, device)?;
        let (count, bytes) = parts_held(&dir);
        if count >= MAX_PARTS || bytes + total > PART_QUOTA {
            return Err(ServerError::TooMany {
                retry_after_s: STALE_PART.as_secs(),
                message: format!(
                    "this device has {count} unfinished uploads ({bytes} bytes): finish them first \
                     (at most {MAX_PARTS} and {PART_QUOTA} bytes)"
                ),
            });
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&length, total.to_string())?;
    }
    if declared_length(&part).is_some_and(|declared| declared != total) {
        return Err(ServerError::BadRequest(
            "Upload-Length differs from the one this upload started with".into(),
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&part)?;
    // Offset check and append as one step, whoever else is sending chunks of it.
    file.lock()?;
    let held = file.metadata()?.len();
    if held != offset {
        // Another attempt got further, or a lost chunk: the client asks again.
        return Ok(Chunk::Moved { held });
    }
    file.write_all(body)?;
    file.sync_data()?;
    let held = offset + body.len() as u64;
    if held < total {
        return Ok(Chunk::Taken {
            held,
            complete: false,
        });
    }
    let bytes = std::fs::read(&part)?;
    let forget = || {
        let _ = std::fs::remove_file(&part);
        let _ = std::fs::remove_file(&length);
    };
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != sha {
        forget();
        return Err(ServerError::BadRequest(
            "the bytes do not hash to the name they were sent under; send them again".into(),
        ));
    }
    if done.exists() {
        // The same bytes as a photo stored already: this device now holds it too.
        state
            .storage
            .photo_stored(&sha, total, &device.id, state.clock.now_ms())?;
        forget();
        return Ok(Chunk::Taken {
            held: total,
            complete: true,
        });
    }
    check_daily_quota(state, device)?;
    let clean = {
        // Decoding is the costly step: a few at a time, whoever sends them.
        let _turn = state.decodes.turn()?;
        curbside_core::photo::clean_upload(&bytes, &decode_options())
    };
    let clean = match clean {
        Ok(c) => c,
        Err(e) => {
            forget();
            return Err(ServerError::BadRequest(format!("photo: {e}")));
        }
    };
    // Written whole, then renamed: a reader never sees half a photo.
    let tmp = part.with_extension("tmp");
    std::fs::write(&tmp, &clean)?;
    File::open(&tmp).and_then(|f| f.sync_all())?;
    std::fs::rename(&tmp, &done)?;
    state
        .storage
        .photo_stored(&sha, total, &device.id, state.clock.now_ms())?;
    forget();
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

/// The stored photo's bytes, for a device that may see it.
pub fn photo_bytes(state: &AppState, device: &Device, sha: &str) -> Result<Vec<u8>, ServerError> {
    let sha = check_name(sha)?;
    if !may_see(state, device, &sha)? {
        return Err(not_found(&sha));
    }
    std::fs::read(finished(state, &sha)).map_err(|_| not_found(&sha))
}

async fn download(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    Authed(device): Authed,
) -> Result<Response, ServerError> {
    let bytes = blocking(&state, move |state| photo_bytes(state, &device, &sha)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            // Who may see it can change (a request made private): never in a shared cache.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Drops unfinished uploads untouched since `before`; returns how many went.
pub fn sweep_parts(state: &AppState, before: SystemTime) -> usize {
    let root = state.data_dir.join("media").join("parts");
    let Ok(devices) = std::fs::read_dir(&root) else {
        return 0;
    };
    let mut swept = 0;
    for dir in devices.filter_map(|d| d.ok()).map(|d| d.path()) {
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let stale = |p: &FsPath| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < before)
        };
        for path in files.filter_map(|f| f.ok()).map(|f| f.path()) {
            let part = path.with_extension("part");
            // A part goes with its declared length; a length or temporary file left alone
            // (a crash) goes when it is old.
            let gone = match path.extension().and_then(|x| x.to_str()) {
                Some("part") => stale(&path),
                _ => !part.exists() && stale(&path),
            };
            if gone && std::fs::remove_file(&path).is_ok() && path == part {
                let _ = std::fs::remove_file(path.with_extension("length"));
                swept += 1;
            }
        }
        // Only succeeds once empty.
        let _ = std::fs::remove_dir(&dir);
    }
    swept
}
