//! The schema, its version (`PRAGMA user_version`) and the steps that bring an older file up to it.
//!
//! A fresh database is created from [`CURRENT`]; an existing one runs [`upgrade_from`] one version
//! at a time. The migration test proves both roads end at the same schema.

use rusqlite::Transaction;

use crate::error::{Error, Result};

pub const VERSION: u32 = 2;

/// The whole schema of [`VERSION`], for a fresh database.
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
-- resident's draft must survive that.
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
    anonymous          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX requests_by_state ON requests (state, created_at DESC, id DESC);
CREATE INDEX requests_by_created ON requests (created_at DESC, id DESC);

CREATE TABLE request_attributes (
    request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    code       TEXT NOT NULL,
    position   INTEGER NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (request_id, code, position)
) WITHOUT ROWID;

CREATE TABLE request_history (
    seq        INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    note       TEXT
);
CREATE INDEX request_history_by_request ON request_history (request_id, seq);
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
        // 2: reporter contact (private) and the lifecycle history; an index for "newest first"
        // across all states. Existing requests get a history that starts at their current state.
        1 => tx.execute_batch(
            r#"
            ALTER TABLE requests ADD COLUMN contact_first_name TEXT;
            ALTER TABLE requests ADD COLUMN contact_last_name TEXT;
            ALTER TABLE requests ADD COLUMN contact_email TEXT;
            ALTER TABLE requests ADD COLUMN contact_phone TEXT;
            ALTER TABLE requests ADD COLUMN anonymous INTEGER NOT NULL DEFAULT 0;
            CREATE INDEX requests_by_created ON requests (created_at DESC, id DESC);
            CREATE TABLE request_history (
                seq        INTEGER PRIMARY KEY,
                request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
                at         INTEGER NOT NULL,
                from_state TEXT,
                to_state   TEXT NOT NULL,
                note       TEXT
            );
            CREATE INDEX request_history_by_request ON request_history (request_id, seq);
            INSERT INTO request_history (request_id, at, from_state, to_state, note)
                SELECT id, created_at, NULL, state, 'history starts at upgrade' FROM requests;
            "#,
        )?,
        v => return Err(Error::NoMigration(v)),
    }
    Ok(())
}
