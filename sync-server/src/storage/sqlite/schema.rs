//! The server database's migration ladder: step `v` moves the schema from version `v` to
//! `v + 1`; a fresh file climbs them all.

use curbside_core::sql::Step;
use curbside_core::sync::schema::{upgrade_v3_to_v4, LOG_V3, OUTBOX_V5};
use rusqlite::{params, Transaction};

use super::tx::SCOPE_COLUMNS;
use crate::scope::{self, RequestScope};

/// Version 1: the catalogue.
const V1: &str = "
CREATE TABLE catalog (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    document    TEXT NOT NULL,
    imported_at INTEGER NOT NULL
);";

/// Version 2: devices, the requests the server has numbered, and the change log of
/// curbside-core, with a cursor index.
const V2: &str = "
CREATE TABLE devices (
    token_hash TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    wards      TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE requests (
    request_id         TEXT PRIMARY KEY,
    service_request_id INTEGER NOT NULL UNIQUE,
    created_by         TEXT NOT NULL,
    ward               TEXT,
    created_at         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sync_changes_by_seq ON sync_changes (seq);";

/// Version 3: what the pull scope needs about each request (where it is, whether it is open,
/// who may see it), kept up to date from the merged changes.
const V3: &str = "
ALTER TABLE requests ADD COLUMN lat REAL;
ALTER TABLE requests ADD COLUMN lon REAL;
ALTER TABLE requests ADD COLUMN status TEXT NOT NULL DEFAULT 'accepted';
ALTER TABLE requests ADD COLUMN public INTEGER NOT NULL DEFAULT 1;
CREATE INDEX requests_by_lat ON requests (lat);
CREATE INDEX requests_by_creator ON requests (created_by);";

/// Version 5: the photos each request refers to, indexed by photo, so the photo endpoints find
/// the requests of a photo without scanning the log.
const V5: &str = "
CREATE TABLE photo_refs (
    sha256     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (sha256, request_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO photo_refs (sha256, request_id)
    SELECT json_extract(value, '$.sha256'), request_id FROM sync_change_rows WHERE field = 'photo';";

/// Version 6: when changes arrived (the highest arrival number at a time, one row per push
/// that applied any), so compaction touches only what arrived before the horizon too.
const V6: &str = "
CREATE TABLE arrivals (
    seq   INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL
);
CREATE INDEX arrivals_by_time ON arrivals (at_ms);
INSERT INTO arrivals (seq, at_ms) SELECT MAX(seq), 0 FROM sync_changes HAVING MAX(seq) IS NOT NULL;";

/// Version 7: the photos stored whole, with the length their uploader sent (an upload's
/// offset once done: what is served was encoded again and differs) and who sent them.
const V7: &str = "
CREATE TABLE photos (
    sha256         TEXT PRIMARY KEY,
    uploaded_bytes INTEGER NOT NULL,
    device_id      TEXT NOT NULL,
    stored_at      INTEGER NOT NULL
) WITHOUT ROWID;";

/// Version 8: revoked devices (their token stops working; their reports stay theirs).
const V8: &str = "ALTER TABLE devices ADD COLUMN revoked_at INTEGER;";

/// Version 9: the feed, which files each change's arrival number under the keys of who may
/// see it ([`scope::filed_under`]), so a pull reads only its own scope's changes. Filled from
/// the log the first time.
const V9: &str = "
CREATE TABLE feed (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE INDEX requests_by_creator_time ON requests (created_by, created_at);
ALTER TABLE requests ADD COLUMN cell TEXT;
CREATE INDEX requests_by_cell ON requests (cell) WHERE cell IS NOT NULL;";

/// Version 10: who may be trusted with what.
/// - `replicas` binds each replica id to the device that first pushed it: a change id is
///   its replica's, so no other device can claim (and so silence) another's future changes.
/// - A photo reference names the device that made it, and `photo_holders` the devices that
///   proved they hold a photo's bytes (they sent them whole): only a reference by a holder
///   grants a look at the photo, so knowing a photo's hash is not enough to read it.
const V10: &str = "
CREATE TABLE replicas (
    replica   TEXT PRIMARY KEY,
    device_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX replicas_by_device ON replicas (device_id);
CREATE TABLE photo_refs_v10 (
    sha256     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (sha256, request_id, device_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO photo_refs_v10 (sha256, request_id, device_id)
    SELECT p.sha256, p.request_id, r.created_by FROM photo_refs p
    JOIN requests r ON r.request_id = p.request_id;
DROP TABLE photo_refs;
ALTER TABLE photo_refs_v10 RENAME TO photo_refs;
CREATE TABLE photo_holders (
    sha256    TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (sha256, device_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO photo_holders (sha256, device_id) SELECT sha256, device_id FROM photos;
CREATE INDEX photos_by_device ON photos (device_id, stored_at);";

/// Version 11: a feed row carries its change's key in the log (request, replica and counter
/// numbers) beside its arrival number, so a pull reaches each change in one search of the log
/// rather than two (through the arrival-number index first). A change that arrives again has
/// a new number: rows with its old one no longer match it, as before.
const V11: &str = "
CREATE TABLE feed_v11 (
    key     TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    request INTEGER NOT NULL,
    replica INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
INSERT INTO feed_v11 (key, seq, request, replica, counter)
    SELECT f.key, f.seq, c.request, c.replica, c.counter
    FROM feed f JOIN sync_changes c ON c.seq = f.seq;
DROP TABLE feed;
ALTER TABLE feed_v11 RENAME TO feed;";

/// Files a change under a key: its row in the feed, found by its arrival number.
pub(super) const FILE: &str = "INSERT OR IGNORE INTO feed (key, seq, request, replica, counter)
     SELECT ?1, seq, request, replica, counter FROM sync_changes WHERE seq = ?2";

/// Version 12: Open311.
/// - Each request's service and when anything of it last arrived, so `GET requests` filters
///   by service, time and update in the index, never by merging the log.
/// - Its service standard's deadlines, when staff first acted on it and when it closed (the
///   standards report), its location's accuracy and its likely duplicates, found on receipt.
/// - Open311 clients' API keys (only their hashes), and the requests posted with them: the
///   `Idempotency-Key` a retry repeats and the `token` a batch service answers with.
const V12: &str = "
ALTER TABLE requests ADD COLUMN service_code TEXT;
ALTER TABLE requests ADD COLUMN updated_at INTEGER;
UPDATE requests SET updated_at = created_at;
UPDATE requests SET service_code = (
    SELECT json_extract(c.value, '$.service_code') FROM sync_change_rows c
    WHERE c.request_id = requests.request_id AND c.field = 'create' LIMIT 1);
CREATE INDEX requests_by_time ON requests (created_at);
CREATE INDEX requests_by_update ON requests (updated_at);
ALTER TABLE requests ADD COLUMN accuracy REAL;
ALTER TABLE requests ADD COLUMN acknowledge_due INTEGER;
ALTER TABLE requests ADD COLUMN resolve_due INTEGER;
ALTER TABLE requests ADD COLUMN acknowledged_at INTEGER;
ALTER TABLE requests ADD COLUMN closed_at INTEGER;
UPDATE requests SET closed_at = updated_at WHERE status IN ('completed', 'cancelled');
-- The duplicate check on receipt: one service's requests in a cell, by latitude; it serves
-- what the cell's own index did (the backfill), and the creator's index is a prefix of
-- (created_by, created_at): every new request wrote both for nothing.
CREATE INDEX requests_by_cell_service ON requests (cell, service_code, lat);
DROP INDEX requests_by_cell;
DROP INDEX requests_by_creator;
CREATE TABLE likely_duplicates (
    request_id TEXT NOT NULL,
    other_id   TEXT NOT NULL,
    distance_m REAL NOT NULL,
    PRIMARY KEY (request_id, other_id)
) WITHOUT ROWID;
CREATE TABLE api_keys (
    key_hash   TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE TABLE open311_posts (
    request_id      TEXT PRIMARY KEY,
    key_id          TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint     TEXT NOT NULL,
    token           TEXT UNIQUE,
    created_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX open311_posts_by_idempotency ON open311_posts (key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;";

/// Files every logged change under its request's feed keys and sets each request's cell: the
/// first fill of the feed, and for tools that write requests and changes straight into the
/// file (benchmarks' seeding). Idempotent.
pub fn fill_feed(tx: &Transaction) -> rusqlite::Result<()> {
    fill(tx, FILE)
}

/// [`fill_feed`] with the insert of the feed's shape at the step that fills it.
fn fill(tx: &Transaction, file: &str) -> rusqlite::Result<()> {
    let requests: Vec<(String, RequestScope)> = tx
        .prepare(&format!(
            "SELECT r.request_id, {SCOPE_COLUMNS} FROM requests r"
        ))?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                RequestScope {
                    created_by: r.get(1)?,
                    ward: r.get(2)?,
                    lat: r.get(3)?,
                    lon: r.get(4)?,
                    public: r.get(5)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut seqs = tx.prepare(
        "SELECT c.seq FROM sync_changes c JOIN sync_requests q ON q.n = c.request WHERE q.id = ?1",
    )?;
    let mut insert = tx.prepare(file)?;
    let mut cell = tx.prepare("UPDATE requests SET cell = ?2 WHERE request_id = ?1")?;
    for (id, scope) in requests {
        if let (Some(lat), Some(lon)) = (scope.lat, scope.lon) {
            cell.execute(params![id, scope::cell_of(lat, lon)])?;
        }
        let keys = scope::filed_under(&scope);
        let found: Vec<i64> = seqs
            .query_map([&id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for seq in found {
            for k in &keys {
                insert.execute(params![k, seq])?;
            }
        }
    }
    Ok(())
}

/// The ladder: step `v` moves the schema from version `v` to `v + 1`; a fresh file climbs all.
pub(super) const LADDER: [Step; 12] = [
    |tx| tx.execute_batch(V1),
    |tx| {
        tx.execute_batch(LOG_V3)?;
        tx.execute_batch(V2)
    },
    |tx| {
        // Also brings the change log's own tables up to this core's (the outbox).
        tx.execute_batch(LOG_V3)?;
        tx.execute_batch(V3)
    },
    |tx| {
        tx.execute_batch(&upgrade_v3_to_v4())?;
        tx.execute_batch("CREATE INDEX sync_changes_by_seq ON sync_changes (seq);")
    },
    |tx| {
        tx.execute_batch(OUTBOX_V5)?;
        tx.execute_batch(V5)
    },
    |tx| tx.execute_batch(V6),
    |tx| tx.execute_batch(V7),
    |tx| tx.execute_batch(V8),
    |tx| {
        tx.execute_batch(V9)?;
        fill(tx, "INSERT OR IGNORE INTO feed (key, seq) VALUES (?1, ?2)")
    },
    |tx| tx.execute_batch(V10),
    |tx| tx.execute_batch(V11),
    |tx| tx.execute_batch(V12),
];

#[cfg(test)]
mod tests {
    use super::*;
    use curbside_core::sql::climb;

    /// A file from before version 11 keeps its feed: each row gains its change's key, and a
    /// row whose change is gone (compacted) goes with it.
    #[test]
    fn the_feed_learns_each_changes_key() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        climb(&tx, 0, &LADDER[..10]).unwrap();
        tx.execute_batch(
            "INSERT INTO sync_requests (n, id) VALUES (1, '0190f3a0-0000-7000-8000-000000000001');
             INSERT INTO sync_replicas (n, id) VALUES (4, '5eed5eed5eed5eed');
             INSERT INTO sync_fields (n, name) VALUES (2, 'description');
             INSERT INTO sync_changes (request, replica, counter, field, value, hlc, replaced, seq)
                 VALUES (1, 4, 7, 2, '\"deep\"', 100, NULL, 30);
             INSERT INTO feed (key, seq) VALUES ('w:10', 30), ('c:abc', 30), ('w:10', 31);",
        )
        .unwrap();
        assert_eq!(climb(&tx, 10, &LADDER).unwrap(), 12);
        let rows: Vec<(String, i64, i64, i64, i64)> = tx
            .prepare("SELECT key, seq, request, replica, counter FROM feed ORDER BY key")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![("c:abc".into(), 30, 1, 4, 7), ("w:10".into(), 30, 1, 4, 7)]
        );
    }
}
