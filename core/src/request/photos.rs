//! Photos in the store: content-addressed blobs (SHA-256 of the processed JPEG), the links that
//! attach them to requests, and the queue of those the server still needs. A photo is written in
//! the same transaction that links it, so a request never points at a missing photo; bytes no
//! request links to are removed when a link goes and on open.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use crate::error::{Error, Missing, Result};
use crate::photo::Processed;
use crate::vocab::RequestId;

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

impl PhotoInfo {
    pub(super) fn of(photo: &Processed) -> PhotoInfo {
        PhotoInfo {
            sha256: photo.sha256.clone(),
            width: photo.width,
            height: photo.height,
            bytes: photo.jpeg.len() as u64,
            thumbnail_width: photo.thumbnail_width,
            thumbnail_height: photo.thumbnail_height,
            thumbnail_bytes: photo.thumbnail.len() as u64,
        }
    }
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

/// The hashes of the photos linked to a request, in order.
pub(super) fn linked(conn: &Connection, id: &RequestId) -> Result<Vec<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT sha256 FROM request_photos WHERE request_id = ?1 ORDER BY position",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Stores the photo's bytes (once, whoever else links them) and links them to the request.
pub(super) fn link(tx: &Transaction, id: &RequestId, photo: &Processed, now_ms: i64) -> Result<()> {
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
        now_ms
    ])?;
    tx.prepare_cached(
        "INSERT INTO request_photos (request_id, sha256, position, added_at)
         VALUES (?1, ?2, (SELECT COALESCE(MAX(position), 0) + 1 FROM request_photos WHERE request_id = ?1), ?3)",
    )?
    .execute(params![id, photo.sha256, now_ms])?;
    Ok(())
}

/// Removes a link, and the bytes if nothing else links them.
pub(super) fn unlink(tx: &Transaction, id: &RequestId, sha256: &str) -> Result<()> {
    let removed = tx
        .prepare_cached("DELETE FROM request_photos WHERE request_id = ?1 AND sha256 = ?2")?
        .execute(params![id, sha256])?;
    if removed == 0 {
        return Err(Error::NotFound(Missing::PhotoOf {
            request: *id,
            sha256: sha256.to_string(),
        }));
    }
    remove_orphans(tx)?;
    Ok(())
}

/// Frees the bytes of photos no request links to.
pub(crate) fn remove_orphans(tx: &Transaction) -> Result<usize> {
    Ok(tx.execute(
        "DELETE FROM photos WHERE NOT EXISTS
             (SELECT 1 FROM request_photos rp WHERE rp.sha256 = photos.sha256)",
        [],
    )?)
}

pub(crate) fn photos(conn: &Connection, id: &RequestId) -> Result<Vec<PhotoInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.sha256, p.width, p.height, length(p.jpeg), p.thumbnail_width,
                p.thumbnail_height, length(p.thumbnail)
         FROM request_photos rp JOIN photos p ON p.sha256 = rp.sha256
         WHERE rp.request_id = ?1 ORDER BY rp.position",
    )?;
    let rows = stmt.query_map([id], |r| {
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
pub(crate) fn photo_bytes(conn: &Connection, sha256: &str, thumbnail: bool) -> Result<Vec<u8>> {
    let sql = if thumbnail {
        "SELECT thumbnail FROM photos WHERE sha256 = ?1"
    } else {
        "SELECT jpeg FROM photos WHERE sha256 = ?1"
    };
    conn.prepare_cached(sql)?
        .query_row([sha256], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(Missing::Photo(sha256.to_string())))
}

/// The server took a request's photo reference: its bytes are to be uploaded.
pub(crate) fn queue_upload(tx: &Transaction, sha256: &str, now_ms: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO photo_uploads (sha256, queued_at)
         SELECT sha256, ?2 FROM photos WHERE sha256 = ?1
         ON CONFLICT (sha256) DO NOTHING",
    )?
    .execute(params![sha256, now_ms])?;
    Ok(())
}

/// Photos to upload, oldest first, with their sizes. Photos whose bytes are gone (detached and
/// cleaned) have nothing to send and leave the queue.
pub(crate) fn queued_uploads(tx: &Transaction) -> Result<Vec<(String, u64)>> {
    tx.execute(
        "DELETE FROM photo_uploads WHERE sha256 NOT IN (SELECT sha256 FROM photos)",
        [],
    )?;
    let mut stmt = tx.prepare(
        "SELECT u.sha256, length(p.jpeg) FROM photo_uploads u
         JOIN photos p ON p.sha256 = u.sha256 ORDER BY u.queued_at",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn uploaded(tx: &Transaction, sha256: &str) -> Result<()> {
    tx.execute("DELETE FROM photo_uploads WHERE sha256 = ?1", [sha256])?;
    Ok(())
}
