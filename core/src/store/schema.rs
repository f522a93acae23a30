//! The schema, its version (`PRAGMA user_version`) and the steps that bring an older file up to it.
//!
//! A fresh database is created from [`CURRENT`]; an existing one runs [`upgrade_from`] one version
//! at a time. The migration test proves both roads end at the same schema.

use rusqlite::Transaction;

use crate::error::{Error, Result};

pub const VERSION: u32 = 4;

/// The whole schema of [`VERSION`], for a fresh database, together with the replication
/// tables of [`crate::sync::log::SCHEMA`] (defined once, there, and shared with the server).
pub const CURRENT: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE services (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    metadata    INTEGER NOT NULL,
    type        TEXT NOT NULL,
    keywords    TEXT,
    grp         TEXT,
    position    INTEGER NOT NULL
);

CREATE TABLE service_attributes (
    service_code         TEXT NOT NULL REFERENCES services(code) ON DELETE CASCADE,
    code                 TEXT NOT NULL,
    variable             INTEGER NOT NULL,
    datatype             TEXT NOT NULL,
    required             INTEGER NOT NULL,
    datatype_description TEXT,
    position             INTEGER NOT NULL,
    description          TEXT NOT NULL,
    value_list           TEXT,
    PRIMARY KEY (service_code, code)
) WITHOUT ROWID;

-- service_code has no foreign key on purpose: a newer catalogue may drop a service, and the
-- resident's draft must survive that. Ids are UUIDv7, so ordering by id is ordering by creation.
CREATE TABLE requests (
    id                 TEXT PRIMARY KEY,
    service_code       TEXT NOT NULL,
    state              TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    lat                REAL,
    lon                REAL,
    accuracy           REAL,
    location_source    TEXT,
    address            TEXT,
    service_request_id TEXT,
    status_notes       TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    contact_first_name TEXT,
    contact_last_name  TEXT,
    contact_email      TEXT,
    contact_phone      TEXT,
    anonymous          INTEGER NOT NULL DEFAULT 0,
    -- Answers to the service's attributes: {"CODE": ["value", …]}. Always read and written
    -- with the request, so they live in its row.
    attributes         TEXT NOT NULL DEFAULT '{}',
    -- The ward the location fell in when the request was queued.
    ward               TEXT,
    ward_name          TEXT
) WITHOUT ROWID;
CREATE INDEX requests_by_state ON requests (state);

-- seq counts a request's entries from 1.
CREATE TABLE request_history (
    request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    note       TEXT,
    PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;

-- Processed photos (no metadata), named by the SHA-256 of their JPEG bytes.
CREATE TABLE photos (
    sha256           TEXT PRIMARY KEY,
    jpeg             BLOB NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    quality          INTEGER NOT NULL,
    thumbnail        BLOB NOT NULL,
    thumbnail_width  INTEGER NOT NULL,
    thumbnail_height INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE TABLE request_photos (
    request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    sha256     TEXT NOT NULL REFERENCES photos(sha256),
    position   INTEGER NOT NULL,
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (request_id, sha256)
) WITHOUT ROWID;
CREATE INDEX request_photos_by_photo ON request_photos (sha256);

-- Requests synced in from the server (others' reports near the user, an inspector's wards):
-- what duplicate detection looks at besides the user's own.
CREATE TABLE known_requests (
    id                 TEXT PRIMARY KEY,
    service_request_id TEXT,
    service_code       TEXT NOT NULL,
    open               INTEGER NOT NULL,
    lat                REAL NOT NULL,
    lon                REAL NOT NULL,
    accuracy           REAL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) WITHOUT ROWID;

-- Photos whose request the server has acknowledged and whose bytes it may not hold yet.
CREATE TABLE photo_uploads (
    sha256    TEXT PRIMARY KEY,
    queued_at INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 1 as it shipped: kept verbatim so the migration test can start from it.
pub const V1: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE services (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    metadata    INTEGER NOT NULL,
    type        TEXT NOT NULL,
    keywords    TEXT,
    grp         TEXT,
    position    INTEGER NOT NULL
);

CREATE TABLE service_attributes (
    service_code         TEXT NOT NULL REFERENCES services(code) ON DELETE CASCADE,
    code                 TEXT NOT NULL,
    variable             INTEGER NOT NULL,
    datatype             TEXT NOT NULL,
    required             INTEGER NOT NULL,
    datatype_description TEXT,
    position             INTEGER NOT NULL,
    description          TEXT NOT NULL,
    value_list           TEXT,
    PRIMARY KEY (service_code, code)
) WITHOUT ROWID;

CREATE TABLE requests (
    id                 TEXT PRIMARY KEY,
    service_code       TEXT NOT NULL,
    state              TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    lat                REAL,
    lon                REAL,
    accuracy           REAL,
    location_source    TEXT,
    address            TEXT,
    service_request_id TEXT,
    status_notes       TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX requests_by_state ON requests (state, created_at DESC, id DESC);

CREATE TABLE request_attributes (
    request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    code       TEXT NOT NULL,
    position   INTEGER NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (request_id, code, position)
) WITHOUT ROWID;
"#;

/// Moves the schema from `version` to `version + 1`.
pub fn upgrade_from(tx: &Transaction, version: u32) -> Result<()> {
    match version {
        // 2: reporter contact (private), the lifecycle history, photos, wards, the cache of
        // synced-in requests and the replication log. Requests move to a
        // WITHOUT ROWID table keyed by their time-ordered id, with their attribute answers as
        // JSON in the row: two B-trees fewer per write. Existing requests get a history that
        // starts at their current state.
        1 => tx.execute_batch(
            r#"
            CREATE TABLE requests_v2 (
                id                 TEXT PRIMARY KEY,
                service_code       TEXT NOT NULL,
                state              TEXT NOT NULL,
                description        TEXT NOT NULL DEFAULT '',
                lat                REAL,
                lon                REAL,
                accuracy           REAL,
                location_source    TEXT,
                address            TEXT,
                service_request_id TEXT,
                status_notes       TEXT,
                created_at         INTEGER NOT NULL,
                updated_at         INTEGER NOT NULL,
                contact_first_name TEXT,
                contact_last_name  TEXT,
                contact_email      TEXT,
                contact_phone      TEXT,
                anonymous          INTEGER NOT NULL DEFAULT 0,
                attributes         TEXT NOT NULL DEFAULT '{}',
                ward               TEXT,
                ward_name          TEXT
            ) WITHOUT ROWID;
            INSERT INTO requests_v2 (id, service_code, state, description, lat, lon, accuracy,
                    location_source, address, service_request_id, status_notes, created_at,
                    updated_at, attributes)
                SELECT r.id, r.service_code, r.state, r.description, r.lat, r.lon, r.accuracy,
                       r.location_source, r.address, r.service_request_id, r.status_notes,
                       r.created_at, r.updated_at,
                       COALESCE((SELECT json_group_object(code, json(answer)) FROM (
                           SELECT code, json_group_array(value ORDER BY position) AS answer
                           FROM request_attributes a WHERE a.request_id = r.id GROUP BY code)),
                         '{}')
                FROM requests r;
            DROP TABLE request_attributes;
            DROP TABLE requests;
            ALTER TABLE requests_v2 RENAME TO requests;
            CREATE INDEX requests_by_state ON requests (state);
            CREATE TABLE request_history (
                request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
                seq        INTEGER NOT NULL,
                at         INTEGER NOT NULL,
                from_state TEXT,
                to_state   TEXT NOT NULL,
                note       TEXT,
                PRIMARY KEY (request_id, seq)
            ) WITHOUT ROWID;
            -- Processed photos (no metadata), named by the SHA-256 of their JPEG bytes.
            CREATE TABLE photos (
                sha256           TEXT PRIMARY KEY,
                jpeg             BLOB NOT NULL,
                width            INTEGER NOT NULL,
                height           INTEGER NOT NULL,
                quality          INTEGER NOT NULL,
                thumbnail        BLOB NOT NULL,
                thumbnail_width  INTEGER NOT NULL,
                thumbnail_height INTEGER NOT NULL,
                created_at       INTEGER NOT NULL
            );

            CREATE TABLE request_photos (
                request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
                sha256     TEXT NOT NULL REFERENCES photos(sha256),
                position   INTEGER NOT NULL,
                added_at   INTEGER NOT NULL,
                PRIMARY KEY (request_id, sha256)
            ) WITHOUT ROWID;
            CREATE INDEX request_photos_by_photo ON request_photos (sha256);
            -- Requests synced in from the server (others' reports near the user, an inspector's wards):
            -- what duplicate detection looks at besides the user's own.
            CREATE TABLE known_requests (
                id                 TEXT PRIMARY KEY,
                service_request_id TEXT,
                service_code       TEXT NOT NULL,
                open               INTEGER NOT NULL,
                lat                REAL NOT NULL,
                lon                REAL NOT NULL,
                accuracy           REAL,
                created_at         INTEGER NOT NULL,
                updated_at         INTEGER NOT NULL
            ) WITHOUT ROWID;
            INSERT INTO request_history (request_id, seq, at, from_state, to_state, note)
                SELECT id, 1, created_at, NULL, state, 'history starts at upgrade' FROM requests;
            "#,
        )
        .and_then(|()| tx.execute_batch(crate::sync::log::SCHEMA_V3))?,
        // 3: the sync engine's queues. Every change this replica made so far is unsent.
        2 => tx.execute_batch(&format!(
            "{}
            CREATE TABLE photo_uploads (
                sha256    TEXT PRIMARY KEY,
                queued_at INTEGER NOT NULL
            ) WITHOUT ROWID;
            INSERT INTO sync_outbox (request_id, id)
                SELECT request_id, id FROM sync_changes
                WHERE replica = (SELECT value FROM meta WHERE key = 'replica_id') ORDER BY seq;",
            crate::sync::log::SCHEMA_V3
        ))?,
        // 4: the change log keeps replica ids, request ids and field names once, by number.
        3 => tx.execute_batch(&crate::sync::log::upgrade_from_v3())?,
        v => return Err(Error::NoMigration(v)),
    }
    Ok(())
}
