//! The device store's schema: one migration ladder, from an empty file to [`VERSION`]. A fresh
//! database climbs the same steps as an old one, so each table's DDL is written once, in the
//! step that makes or changes it; the migration test proves an upgraded file with data equals a
//! fresh one. The change log's tables are [`crate::sync::schema`]'s, taken as steps here.

use rusqlite::Transaction;

use crate::error::{Error, Result};
use crate::sql::Step;
use crate::sync::schema::{upgrade_v3_to_v4, LOG_V3, OUTBOX_V5};

pub const VERSION: u32 = 7;

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

/// Version 2: reporter contact (private), the lifecycle history, photos, wards, the cache of
/// synced-in requests and the replication log. Requests move to a WITHOUT ROWID table keyed by
/// their time-ordered id, with their attribute answers as JSON in the row: two B-trees fewer
/// per write. Existing requests get a history that starts at their current state.
const V2: &str = r#"
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
            "#;

/// Version 3: the sync engine's queues. Every change this replica made so far is unsent.
const V3: &str = "
CREATE TABLE photo_uploads (
    sha256    TEXT PRIMARY KEY,
    queued_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO sync_outbox (request_id, id)
    SELECT request_id, id FROM sync_changes
    WHERE replica = (SELECT value FROM meta WHERE key = 'replica_id') ORDER BY seq;";

/// Version 5: a request's device-local lifecycle and the city's replicated status become two
/// columns (the state a person sees is derived from them); the device's own lifecycle steps
/// move into the row, read and written with it, and keep only what the change log does not
/// already tell (the creation, the city's statuses). Requests are few on a device and listed
/// newest first, so the state index goes: every step of a request wrote two of its pages.
const V5: &str = "
ALTER TABLE requests RENAME COLUMN state TO lifecycle;
ALTER TABLE requests ADD COLUMN status TEXT;
UPDATE requests SET
    status = CASE WHEN lifecycle IN ('draft', 'queued', 'sent') THEN NULL ELSE lifecycle END,
    lifecycle = CASE WHEN lifecycle IN ('draft', 'queued', 'sent') THEN lifecycle
                     ELSE 'delivered' END;
DROP INDEX requests_by_state;
ALTER TABLE requests ADD COLUMN state TEXT GENERATED ALWAYS AS
    (CASE lifecycle WHEN 'delivered' THEN COALESCE(status, 'accepted') ELSE lifecycle END) VIRTUAL;
-- The device's own steps with the request, oldest first: [{at, state, note}].
ALTER TABLE requests ADD COLUMN events TEXT NOT NULL DEFAULT '[]';
UPDATE requests SET events = COALESCE((
    SELECT json_group_array(json_object('at', at, 'state', to_state, 'note', note)) FROM (
        SELECT h.at, h.to_state, h.note FROM request_history h
        WHERE h.request_id = requests.id
          AND NOT (h.from_state IS NULL AND EXISTS (SELECT 1 FROM sync_change_rows c
                   WHERE c.request_id = h.request_id AND c.field = 'create'))
          AND NOT (h.to_state IN ('accepted', 'in_progress', 'scheduled', 'completed', 'cancelled')
                   AND EXISTS (SELECT 1 FROM sync_change_rows c
                   WHERE c.request_id = h.request_id AND c.field = 'status'
                     AND c.value = json_quote(h.to_state)))
        ORDER BY h.seq)), '[]');
DROP TABLE request_history;";

/// Version 6: the city's service standards ([`crate::catalog::Standard`], as JSON; none: the
/// default) and, per request, the date the city expects to resolve it (its `expected_at`) and
/// the request staff found it repeats (`duplicate_of`), mirrored from the log like its status.
const V6: &str = "
ALTER TABLE services ADD COLUMN standard TEXT;
ALTER TABLE requests ADD COLUMN expected_at INTEGER;
ALTER TABLE requests ADD COLUMN duplicate_of TEXT;";

/// Version 7: the city's news about the user's own requests (statuses, public notes) until the
/// user has seen it ([`crate::request::Update`]). Unseen rows have their own small index: the
/// badge count reads only those.
const V7: &str = "
CREATE TABLE updates (
    change_id  TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    status     TEXT,
    note       TEXT,
    -- A note's id, so that its retraction takes it back.
    note_id    TEXT,
    seen       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX updates_unseen ON updates (request_id) WHERE seen = 0;
CREATE INDEX updates_of ON updates (request_id);
CREATE INDEX updates_by_note ON updates (note_id) WHERE note_id IS NOT NULL;
-- A device upgraded with requests already sent has seen their news so far: a full resync
-- that pulls their history again must not bring it back as new.
INSERT INTO meta (key, value)
    SELECT 'news_from', CAST(strftime('%s', 'now') AS INTEGER) * 1000
    WHERE EXISTS (SELECT 1 FROM requests WHERE lifecycle != 'draft');";

/// The ladder: step `v` moves the schema from version `v` to `v + 1`.
pub const LADDER: [Step; VERSION as usize] = [
    |tx| tx.execute_batch(V1),
    |tx| {
        tx.execute_batch(V2)?;
        tx.execute_batch(LOG_V3)
    },
    |tx| {
        tx.execute_batch(LOG_V3)?;
        tx.execute_batch(V3)
    },
    |tx| tx.execute_batch(&upgrade_v3_to_v4()),
    |tx| {
        tx.execute_batch(V5)?;
        tx.execute_batch(OUTBOX_V5)
    },
    |tx| tx.execute_batch(V6),
    |tx| tx.execute_batch(V7),
];

/// Moves the schema from `version` to `version + 1`.
pub fn upgrade_from(tx: &Transaction, version: u32) -> Result<()> {
    let step = LADDER
        .get(version as usize)
        .ok_or(Error::NoMigration(version))?;
    Ok(step(tx)?)
}
