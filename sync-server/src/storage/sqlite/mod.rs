//! The embedded storage: one SQLite file in the data directory (WAL): the catalogue it
//! publishes, registered devices, the requests it has numbered (with what the scope rule needs
//! of each, kept up to date from the merged changes), the photo references, the feed of who
//! may see each change, and curbside-core's change log — the same merge code as every client.
//!
//! Writes go to one writer thread that commits many devices' pushes together ([`conns`]);
//! reads (pulls, token and photo checks) run on a pool of readers, each on its own snapshot.
//! A sync is a push on the writer, then a pull on a reader that sees it.

mod conns;
mod schema;
mod tx;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use curbside_core::sql::{self, Key};
use curbside_core::sync::{log, Hlc};
use curbside_core::vocab::Entropy;
use curbside_core::{Catalog, Jurisdiction};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::open311::{
    self, ApiKeyRecord, FoundRequest, NewApiKey, Post, Posted, RequestQuery, StandardRow,
};
use super::push::{self, Pushed};
use super::{compact, pull, DeviceRecord, NewDevice, PhotoRef, Storage, SyncCall, SyncOutcome};
use crate::scope::Device;
use crate::ServerError;
use conns::{Readers, Writer};
use schema::LADDER;
use tx::{scope_from_row, SqliteTx, SCOPE_COLUMNS};

pub use schema::fill_feed;

impl From<rusqlite::Error> for ServerError {
    fn from(e: rusqlite::Error) -> Self {
        ServerError::Internal(format!("database: {e}"))
    }
}

const SERVER_ID: Key = Key::new("server_id");
/// The secret behind the pseudonyms of the public view: never sent, unlike the server id.
const PSEUDONYM_KEY: Key = Key::new("pseudonym_key");
const COMPACTED_SEQ: Key = Key::new("compacted_seq");
const COMPACTIONS: Key = Key::new("compactions");

pub struct SqliteStorage {
    writer: Writer,
    readers: Readers,
    /// Ward boundaries, for a new request's ward and inspectors' scope; loaded on first use.
    wards: OnceLock<Arc<Jurisdiction>>,
    pseudonym_key: String,
}

impl SqliteStorage {
    /// Opens (or creates) `curbside-server.sqlite` in `dir`, climbing the migration ladder.
    pub fn open(
        dir: &Path,
        now_ms: i64,
        entropy: &dyn Entropy,
    ) -> Result<SqliteStorage, ServerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ServerError::Startup(format!("data directory {}: {e}", dir.display())))?;
        let path = dir.join("curbside-server.sqlite");
        let startup = |e: rusqlite::Error| ServerError::Startup(format!("{}: {e}", path.display()));
        let mut conn = Connection::open(&path).map_err(startup)?;
        // The writer: each caller's write in a group commit has a savepoint, whose journal is
        // kept in memory (not a temporary file written page by page); and a cache for the
        // index pages every new request touches.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536;",
        )
        .map_err(startup)?;
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(startup)?;
        if version as usize > LADDER.len() {
            return Err(ServerError::Startup(format!(
                "{} was written by a newer server (schema {version}); this one knows {}",
                path.display(),
                LADDER.len()
            )));
        }
        let pseudonym_key = {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(startup)?;
            sql::climb(&tx, version, &LADDER).map_err(startup)?;
            if version == 0 {
                write_catalog(&tx, &Catalog::toronto(), now_ms)?;
            }
            for key in [SERVER_ID, PSEUDONYM_KEY] {
                if sql::get(&tx, key)?.is_none() {
                    let id = format!("{:016x}{:016x}", entropy.next_u64(), entropy.next_u64());
                    sql::set(&tx, key, &id)?;
                }
            }
            let pseudonym_key = sql::get(&tx, PSEUDONYM_KEY)?.unwrap_or_default();
            let own = log::init_replica(&tx, entropy)?;
            // The server's own changes (public numbers) are its replica's: no device's.
            tx.execute(
                "INSERT OR IGNORE INTO replicas (replica, device_id) VALUES (?1, '')",
                [own.as_str()],
            )
            .map_err(startup)?;
            tx.commit().map_err(startup)?;
            pseudonym_key
        };
        sql::keep_statements_prepared(&conn).map_err(startup)?;
        // Pushes, posts, filing and compaction: more statements than a device's store runs.
        conn.set_prepared_statement_cache_capacity(256);
        Ok(SqliteStorage {
            writer: Writer::start(conn, &path)
                .map_err(|e| ServerError::Startup(format!("{}: {e}", path.display())))?,
            readers: Readers::new(&path),
            wards: OnceLock::new(),
            pseudonym_key,
        })
    }

    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, ServerError> {
        self.writer.write(f)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        self.readers.read(f)
    }

    fn wards(&self) -> Arc<Jurisdiction> {
        self.wards.get_or_init(Jurisdiction::toronto_shared).clone()
    }
}

fn write_catalog(tx: &Transaction, catalog: &Catalog, now_ms: i64) -> Result<(), ServerError> {
    tx.execute(
        "INSERT INTO catalog (id, document, imported_at) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET document = excluded.document, imported_at = excluded.imported_at",
        params![catalog.to_json().to_string(), now_ms],
    )?;
    Ok(())
}

impl Storage for SqliteStorage {
    fn catalog(&self) -> Result<Catalog, ServerError> {
        let doc: Option<String> = self.read(|tx| {
            Ok(tx
                .query_row("SELECT document FROM catalog WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()?)
        })?;
        super::stored_catalog(doc)
    }

    fn replace_catalog(&self, catalog: &Catalog, now_ms: i64) -> Result<(), ServerError> {
        let catalog = catalog.clone();
        self.write(move |tx| write_catalog(tx, &catalog, now_ms))
    }

    fn add_device(&self, d: &NewDevice) -> Result<(), ServerError> {
        let wards = super::wards_column(&d.device.wards);
        let d = d.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO devices (token_hash, device_id, role, wards, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                d.token_hash,
                d.device.id,
                d.device.role.as_str(),
                wards,
                d.created_at_ms
            ])?;
            Ok(())
        })
    }

    fn device(&self, token_hash: &str) -> Result<Option<Device>, ServerError> {
        let row: Option<(String, String, String)> = self.read(|tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT device_id, role, wards FROM devices
                     WHERE token_hash = ?1 AND revoked_at IS NULL",
                )?
                .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?)
        })?;
        Ok(row.map(|(id, role, wards)| super::device_of(id, &role, &wards)))
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, ServerError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT device_id, role, wards, created_at, revoked_at FROM devices
                 ORDER BY created_at, device_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(super::record_of(
                    r.get(0)?,
                    r.get(1)?,
                    &r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn revoke_device(&self, device_id: &str, now_ms: i64) -> Result<bool, ServerError> {
        let device_id = device_id.to_string();
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2) WHERE device_id = ?1",
                params![device_id, now_ms],
            )? > 0)
        })
    }

    fn rotate_token(&self, device_id: &str, token_hash: &str) -> Result<(), ServerError> {
        let (device_id, token_hash) = (device_id.to_string(), token_hash.to_string());
        self.write(move |tx| {
            tx.execute(
                "UPDATE devices SET token_hash = ?2 WHERE device_id = ?1 AND revoked_at IS NULL",
                params![device_id, token_hash],
            )?;
            Ok(())
        })
    }

    fn pool_use(&self) -> super::PoolUse {
        self.writer.commits().with(self.readers.use_())
    }

    fn writable(&self) -> Result<(), ServerError> {
        // A real write to the file, synced: what a push needs.
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('ready_at', strftime('%s', 'now'))",
                [],
            )?;
            Ok(())
        })
    }

    fn sync(&self, call: SyncCall) -> Result<SyncOutcome, ServerError> {
        // A cursor from elsewhere is refused before anything is written.
        self.read(|tx| {
            tx::log_state(tx)?
                .position(call.cursor.as_deref())
                .map(|_| ())
        })?;
        let SyncCall {
            device,
            standards,
            changes,
            cursor,
            replica,
            now_ms,
            page,
        } = call;
        let pushed = if changes.is_empty() {
            Pushed::default()
        } else {
            let (device, wards) = (device.clone(), self.wards());
            self.write(move |tx| {
                push::push(
                    &mut SqliteTx(tx),
                    &wards,
                    &standards,
                    &device,
                    &changes,
                    now_ms,
                )
            })?
        };
        // On a snapshot that holds the push.
        let page = self.read(|tx| {
            pull::pull(
                &mut SqliteTx(tx),
                &device,
                &self.pseudonym_key,
                cursor.as_deref(),
                page,
                replica.as_ref(),
                &pushed.fresh,
            )
        })?;
        Ok(SyncOutcome {
            assigned: pushed.assigned,
            changes: page.changes,
            cursor: page.cursor,
            more: page.more,
        })
    }

    fn photo_scope(&self, sha256: &str) -> Result<Vec<PhotoRef>, ServerError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {SCOPE_COLUMNS}, p.device_id, h.device_id IS NOT NULL FROM photo_refs p
                 JOIN requests r ON r.request_id = p.request_id
                 LEFT JOIN photo_holders h ON h.sha256 = p.sha256 AND h.device_id = p.device_id
                 WHERE p.sha256 = ?1"
            ))?;
            let rows = stmt.query_map([sha256], |r| {
                Ok(PhotoRef {
                    request: scope_from_row(r)?,
                    by: r.get(5)?,
                    held: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn photo_held_by(&self, sha256: &str, device_id: &str) -> Result<bool, ServerError> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT 1 FROM photo_holders h JOIN photos p ON p.sha256 = h.sha256
                     WHERE h.sha256 = ?1 AND h.device_id = ?2",
                )?
                .exists(params![sha256, device_id])?)
        })
    }

    fn photo_bytes_stored_by(&self, device_id: &str, since_ms: i64) -> Result<u64, ServerError> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(uploaded_bytes), 0) FROM photos
                     WHERE device_id = ?1 AND stored_at >= ?2",
                )?
                .query_row(params![device_id, since_ms], |r| r.get::<_, i64>(0))?
                as u64)
        })
    }

    fn reported_places(&self, device_id: &str) -> Result<Vec<(f64, f64)>, ServerError> {
        self.read(|tx| tx::reported_places(tx, device_id))
    }

    fn photo_stored(
        &self,
        sha256: &str,
        uploaded_bytes: u64,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        let (sha256, device_id) = (sha256.to_string(), device_id.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO photos (sha256, uploaded_bytes, device_id, stored_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![sha256, uploaded_bytes as i64, device_id, now_ms],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO photo_holders (sha256, device_id) VALUES (?1, ?2)",
                params![sha256, device_id],
            )?;
            Ok(())
        })
    }

    fn photo_uploaded_bytes(&self, sha256: &str) -> Result<Option<u64>, ServerError> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached("SELECT uploaded_bytes FROM photos WHERE sha256 = ?1")?
                .query_row([sha256], |r| r.get::<_, i64>(0))
                .optional()?
                .map(|n| n as u64))
        })
    }

    fn add_api_key(&self, key: &NewApiKey) -> Result<(), ServerError> {
        let key = key.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO api_keys (key_hash, key_id, label, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.key_hash, key.key_id, key.label, key.created_at_ms],
            )?;
            Ok(())
        })
    }

    fn api_key(&self, key_hash: &str) -> Result<Option<String>, ServerError> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT key_id FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
                )?
                .query_row([key_hash], |r| r.get(0))
                .optional()?)
        })
    }

    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, ServerError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT key_id, label, created_at, revoked_at FROM api_keys
                 ORDER BY created_at, key_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ApiKeyRecord {
                    key_id: r.get(0)?,
                    label: r.get(1)?,
                    created_at_ms: r.get(2)?,
                    revoked_at_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn revoke_api_key(&self, key_id: &str, now_ms: i64) -> Result<bool, ServerError> {
        let key_id = key_id.to_string();
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE key_id = ?1",
                params![key_id, now_ms],
            )? > 0)
        })
    }

    fn post_request(&self, post: Post) -> Result<Posted, ServerError> {
        let wards = self.wards();
        self.write(move |tx| open311::post(&mut SqliteTx(tx), &wards, &post))
    }

    fn token_request(&self, token: &str) -> Result<Option<String>, ServerError> {
        self.read(|tx| {
            let number: Option<i64> = tx
                .prepare_cached(
                    "SELECT r.service_request_id FROM open311_posts p
                     JOIN requests r ON r.request_id = p.request_id WHERE p.token = ?1",
                )?
                .query_row([token], |r| r.get(0))
                .optional()?;
            Ok(number.map(|n| n.to_string()))
        })
    }

    fn standard_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<StandardRow>, ServerError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {} FROM requests WHERE created_at BETWEEN ?1 AND ?2
                 ORDER BY created_at LIMIT ?3",
                open311::STANDARD_COLUMNS
            ))?;
            let rows = stmt.query_map(params![from_ms, to_ms, limit as i64], |r| {
                Ok(StandardRow {
                    service_code: r.get(0)?,
                    ward: r.get(1)?,
                    created_at_ms: r.get(2)?,
                    times: open311::StandardTimes {
                        acknowledge_due_ms: r.get(3)?,
                        resolve_due_ms: r.get(4)?,
                        acknowledged_at_ms: r.get(5)?,
                        closed_at_ms: r.get(6)?,
                    },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn find_requests(
        &self,
        query: &RequestQuery,
        known: &open311::Known<'_>,
    ) -> Result<Vec<FoundRequest>, ServerError> {
        self.read(|tx| open311::find(&mut SqliteTx(tx), query, known))
    }

    fn compact(&self, horizon: Hlc, arrived_by_ms: i64) -> Result<usize, ServerError> {
        compact::run(|progress| {
            self.write(move |tx| {
                compact::step(&mut SqliteTx(tx), horizon, arrived_by_ms, &progress)
            })
        })
    }
}
