//! Photos in the store: content-addressed blobs (SHA-256 of the processed JPEG) linked to
//! requests. A photo is written in the same transaction that links it, so a draft never points
//! at a missing photo; bytes no request links to are removed when a link goes and on open.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use super::{PhotoError, PhotoOptions, Processed};
use crate::clock::now_ms;
use crate::draft::State;
use crate::error::{Error, Result};

/// A photo of a request, as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhotoInfo {
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
    pub thumbnail_bytes: u64,
}

/// What attaching did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachedPhoto {
    pub photo: PhotoInfo,
    pub quality: u8,
    /// The photo's GPS fix became the draft's location (it had none).
    pub location_taken: bool,
    /// The same photo was already attached: nothing changed.
    pub already_attached: bool,
}

pub(crate) fn attach(
    tx: &Transaction,
    request_id: &str,
    photo: &Processed,
    options: &PhotoOptions,
) -> Result<AttachedPhoto> {
    let has_location = draft_only(tx, request_id, "attach a photo to")?;
    let info = PhotoInfo {
        sha256: photo.sha256.clone(),
        width: photo.width,
        height: photo.height,
        bytes: photo.jpeg.len() as u64,
        thumbnail_width: photo.thumbnail_width,
        thumbnail_height: photo.thumbnail_height,
        thumbnail_bytes: photo.thumbnail.len() as u64,
    };
    let linked: Vec<String> = tx
        .prepare_cached("SELECT sha256 FROM request_photos WHERE request_id = ?1")?
        .query_map([request_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
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
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO photos (sha256, jpeg, width, height, quality, thumbnail, thumbnail_width,
             thumbnail_height, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (sha256) DO NOTHING",
    )?
    .execute(params![
        photo.sha256,
        photo.jpeg,
        photo.width,
        photo.height,
        photo.quality,
        photo.thumbnail,
        photo.thumbnail_width,
        photo.thumbnail_height,
        now
    ])?;
    tx.prepare_cached(
        "INSERT INTO request_photos (request_id, sha256, position, added_at)
         VALUES (?1, ?2, (SELECT COALESCE(MAX(position), 0) + 1 FROM request_photos WHERE request_id = ?1), ?3)",
    )?
    .execute(params![request_id, photo.sha256, now])?;
    let location_taken = match (&photo.location, has_location) {
        (Some(l), false) => {
            tx.prepare_cached(
                "UPDATE requests SET lat = ?2, lon = ?3, accuracy = ?4, location_source = ?5 WHERE id = ?1",
            )?
            .execute(params![request_id, l.lat, l.lon, l.accuracy_m, l.source.as_str()])?;
            true
        }
        _ => false,
    };
    tx.prepare_cached("UPDATE requests SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![request_id, now])?;
    crate::sync::local_change(
        tx,
        request_id,
        "photo",
        serde_json::json!({"sha256": photo.sha256, "width": photo.width, "height": photo.height}),
        now,
    )?;
    if location_taken {
        crate::sync::local_change(
            tx,
            request_id,
            "location",
            crate::sync::change::location_value(photo.location.as_ref()),
            now,
        )?;
    }
    Ok(AttachedPhoto {
        photo: info,
        quality: photo.quality,
        location_taken,
        already_attached: false,
    })
}

pub(crate) fn detach(tx: &Transaction, request_id: &str, sha256: &str) -> Result<()> {
    draft_only(tx, request_id, "remove a photo from")?;
    let removed = tx
        .prepare_cached("DELETE FROM request_photos WHERE request_id = ?1 AND sha256 = ?2")?
        .execute(params![request_id, sha256])?;
    if removed == 0 {
        return Err(Error::NotFound(format!(
            "photo {sha256} of request {request_id}"
        )));
    }
    remove_orphans(tx)?;
    Ok(())
}

/// Photos change only while the request is a draft; says whether it has a location.
fn draft_only(tx: &Transaction, request_id: &str, action: &'static str) -> Result<bool> {
    let (state, has_location): (String, bool) = tx
        .prepare_cached("SELECT state, lat IS NOT NULL FROM requests WHERE id = ?1")?
        .query_row([request_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| Error::NotFound(request_id.to_string()))?;
    if state != State::Draft.as_str() {
        return Err(Error::WrongState {
            id: request_id.to_string(),
            state: State::parse(&state).unwrap_or(State::Draft),
            action,
        });
    }
    Ok(has_location)
}

/// Frees the bytes of photos no request links to.
pub(crate) fn remove_orphans(tx: &Transaction) -> Result<usize> {
    Ok(tx.execute(
        "DELETE FROM photos WHERE NOT EXISTS
             (SELECT 1 FROM request_photos rp WHERE rp.sha256 = photos.sha256)",
        [],
    )?)
}

pub(crate) fn list(conn: &Connection, request_id: &str) -> Result<Vec<PhotoInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.sha256, p.width, p.height, length(p.jpeg), p.thumbnail_width,
                p.thumbnail_height, length(p.thumbnail)
         FROM request_photos rp JOIN photos p ON p.sha256 = rp.sha256
         WHERE rp.request_id = ?1 ORDER BY rp.position",
    )?;
    let rows = stmt.query_map([request_id], |r| {
        Ok(PhotoInfo {
            sha256: r.get(0)?,
            width: r.get(1)?,
            height: r.get(2)?,
            bytes: r.get::<_, i64>(3)? as u64,
            thumbnail_width: r.get(4)?,
            thumbnail_height: r.get(5)?,
            thumbnail_bytes: r.get::<_, i64>(6)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The JPEG (or its thumbnail) of a stored photo.
pub(crate) fn bytes(conn: &Connection, sha256: &str, thumbnail: bool) -> Result<Vec<u8>> {
    let sql = if thumbnail {
        "SELECT thumbnail FROM photos WHERE sha256 = ?1"
    } else {
        "SELECT jpeg FROM photos WHERE sha256 = ?1"
    };
    conn.prepare_cached(sql)?
        .query_row([sha256], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("photo {sha256}")))
}
