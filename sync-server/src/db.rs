//! The server's embedded store: one SQLite file in the data directory (WAL): the catalogue it
//! publishes, registered devices, the requests it has numbered and curbside-core's change log.

use std::path::Path;
use std::sync::Mutex;

use curbside_core::Catalog;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::ServerError;

const VERSION: u32 = 4;
const SCHEMA: &str = "
CREATE TABLE catalog (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    document    TEXT NOT NULL,
    imported_at INTEGER NOT NULL
);";

/// Version 2: devices, the requests the server has numbered, and the change log of
/// curbside-core (the same merge code as every client), with a cursor index.
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
/// who may see it), kept up to date from the merged changes; the media table of uploads.
const V3: &str = "
ALTER TABLE requests ADD COLUMN lat REAL;
ALTER TABLE requests ADD COLUMN lon REAL;
ALTER TABLE requests ADD COLUMN status TEXT NOT NULL DEFAULT 'accepted';
ALTER TABLE requests ADD COLUMN public INTEGER NOT NULL DEFAULT 1;
CREATE INDEX requests_by_lat ON requests (lat);
CREATE INDEX requests_by_creator ON requests (created_by);";

pub struct ServerDb {
    pub(crate) conn: Mutex<Connection>,
}

impl ServerDb {
    pub fn open(dir: &Path) -> Result<ServerDb, ServerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ServerError::Startup(format!("data directory {}: {e}", dir.display())))?;
        let path = dir.join("curbside-server.sqlite");
        let mut conn = Connection::open(&path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > VERSION {
            return Err(ServerError::Startup(format!(
                "{} was written by a newer server (schema {version}); this one knows {VERSION}",
                path.display()
            )));
        }
        if version < VERSION {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if version == 0 {
                tx.execute_batch(SCHEMA)?;
                write_catalog(&tx, &Catalog::toronto())?;
            }
            if version < 2 {
                tx.execute_batch(curbside_core::sync::log::SCHEMA_V3)?;
                tx.execute_batch(V2)?;
                let server_id = uuid::Uuid::new_v4().simple().to_string();
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('server_id', ?1) ON CONFLICT (key) DO NOTHING",
                    [server_id],
                )?;
            }
            if version < 3 {
                // Also brings the change log's own tables up to this core's (the outbox).
                tx.execute_batch(curbside_core::sync::log::SCHEMA_V3)?;
                tx.execute_batch(V3)?;
            }
            if version < 4 {
                // The change log by numbers (curbside-core's v4 log), and the cursor's index
                // on its new table.
                tx.execute_batch(&curbside_core::sync::log::upgrade_from_v3())?;
                tx.execute_batch("CREATE INDEX sync_changes_by_seq ON sync_changes (seq);")?;
            }
            tx.execute_batch(&format!("PRAGMA user_version = {VERSION}"))?;
            tx.commit()?;
        }
        curbside_core::store::keep_statements_prepared(&conn)?;
        Ok(ServerDb {
            conn: Mutex::new(conn),
        })
    }

    pub fn replace_catalog(&self, catalog: &Catalog) -> Result<(), ServerError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        write_catalog(&tx, catalog)?;
        tx.commit()?;
        Ok(())
    }

    pub fn catalog(&self) -> Result<Catalog, ServerError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let doc: Option<String> = conn
            .query_row("SELECT document FROM catalog WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        match doc {
            Some(doc) => Ok(Catalog::parse(doc.as_bytes())?),
            None => Ok(Catalog::toronto()),
        }
    }
}

fn write_catalog(tx: &Transaction, catalog: &Catalog) -> Result<(), ServerError> {
    tx.execute(
        "INSERT INTO catalog (id, document, imported_at) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET document = excluded.document, imported_at = excluded.imported_at",
        rusqlite::params![catalog.to_json().to_string(), curbside_core::clock::system_ms()],
    )?;
    Ok(())
}
