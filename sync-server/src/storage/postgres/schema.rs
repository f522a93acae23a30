//! The PostgreSQL database's migration ladder: step `v` moves the schema from version `v` to
//! `v + 1` (kept in `meta` as `schema_version`); a new database climbs them all. Instances
//! starting together take turns (an advisory lock), so each step runs once.
//!
//! The tables are the SQLite file's, in PostgreSQL's terms: the log keeps its ids as text and
//! numbers arrivals from a sequence, which writers draw from only while they hold the log's
//! turn (`log_lock`), so numbers become visible in their order.

/// Version 1: everything the server keeps.
const V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE log_lock (id INTEGER PRIMARY KEY);
INSERT INTO log_lock (id) VALUES (1);
CREATE TABLE catalog (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    document    TEXT NOT NULL,
    imported_at BIGINT NOT NULL
);
CREATE TABLE devices (
    token_hash TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    wards      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE SEQUENCE request_numbers START 100001;
CREATE TABLE requests (
    request_id         TEXT PRIMARY KEY,
    service_request_id BIGINT NOT NULL UNIQUE,
    created_by         TEXT NOT NULL,
    ward               TEXT,
    created_at         BIGINT NOT NULL,
    lat                DOUBLE PRECISION,
    lon                DOUBLE PRECISION,
    status             TEXT NOT NULL DEFAULT 'accepted',
    public             BOOLEAN NOT NULL DEFAULT TRUE,
    cell               TEXT,
    -- Changes ever logged for it (the bound on a resident's pushes), kept by the inserts.
    changes            BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX requests_by_creator_time ON requests (created_by, created_at);
CREATE INDEX requests_by_cell ON requests (cell) WHERE cell IS NOT NULL;
-- CACHE 1 (the default, said here): a session caching numbers would draw them out of order.
CREATE SEQUENCE arrival_numbers CACHE 1;
CREATE SEQUENCE own_counter;
CREATE TABLE sync_changes (
    seq        BIGINT PRIMARY KEY,
    request_id TEXT NOT NULL,
    replica    TEXT NOT NULL,
    counter    BIGINT NOT NULL,
    field      TEXT NOT NULL,
    value      TEXT NOT NULL,
    hlc        BIGINT NOT NULL,
    replaced   BIGINT,
    UNIQUE (request_id, replica, counter)
);
-- A feed key is kept as 64 bits of its hash: two keys meeting only widen a pull, which the
-- view then narrows change by change.
CREATE TABLE feed (
    key BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE arrivals (
    seq   BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL
);
CREATE INDEX arrivals_by_time ON arrivals (at_ms);
CREATE TABLE replicas (
    replica   TEXT PRIMARY KEY,
    device_id TEXT NOT NULL
);
CREATE INDEX replicas_by_device ON replicas (device_id);
CREATE TABLE photo_refs (
    sha256     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (sha256, request_id, device_id)
);
CREATE TABLE photo_holders (
    sha256    TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (sha256, device_id)
);
CREATE TABLE photos (
    sha256         TEXT PRIMARY KEY,
    uploaded_bytes BIGINT NOT NULL,
    device_id      TEXT NOT NULL,
    stored_at      BIGINT NOT NULL
);
CREATE INDEX photos_by_device ON photos (device_id, stored_at);";

/// Version 2: Open311 (as the SQLite file's version 12): each request's service and last
/// arrival, its standard's deadlines, acknowledgement and closing, accuracy and likely
/// duplicates, API keys (hashed) and the requests posted with them.
const V2: &str = "
ALTER TABLE requests ADD COLUMN service_code TEXT;
ALTER TABLE requests ADD COLUMN updated_at BIGINT;
UPDATE requests SET updated_at = created_at;
UPDATE requests r SET service_code = c.value::json->>'service_code'
    FROM sync_changes c WHERE c.request_id = r.request_id AND c.field = 'create';
CREATE INDEX requests_by_time ON requests (created_at);
CREATE INDEX requests_by_update ON requests (updated_at);
ALTER TABLE requests ADD COLUMN accuracy DOUBLE PRECISION;
ALTER TABLE requests ADD COLUMN acknowledge_due BIGINT;
ALTER TABLE requests ADD COLUMN resolve_due BIGINT;
ALTER TABLE requests ADD COLUMN acknowledged_at BIGINT;
ALTER TABLE requests ADD COLUMN closed_at BIGINT;
UPDATE requests SET closed_at = updated_at WHERE status IN ('completed', 'cancelled');
-- The duplicate check on receipt: one service's requests in a cell, by latitude; it serves
-- what the cell's own index did (the backfill), and the creator's index is a prefix of
-- (created_by, created_at): every new request wrote both for nothing.
CREATE INDEX requests_by_cell_service ON requests (cell, service_code, lat);
DROP INDEX requests_by_cell;
CREATE TABLE likely_duplicates (
    request_id TEXT NOT NULL,
    other_id   TEXT NOT NULL,
    distance_m DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (request_id, other_id)
);
CREATE TABLE api_keys (
    key_hash   TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE open311_posts (
    request_id      TEXT PRIMARY KEY,
    key_id          TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint     TEXT NOT NULL,
    token           TEXT UNIQUE,
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX open311_posts_by_idempotency ON open311_posts (key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;";

/// The ladder.
pub(super) const LADDER: [&str; 2] = [V1, V2];

/// The advisory lock instances take while they climb the ladder.
pub(super) const CLIMBING: i64 = 0x0c42_b51d_e000_0001;
