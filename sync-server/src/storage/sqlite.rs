//! The embedded storage: one SQLite file in the data directory (WAL): the catalogue it
//! publishes, registered devices, the requests it has numbered (with what the scope rule needs
//! of each, kept up to date from the merged changes), the photo references, and curbside-core's
//! change log — the same merge code as every client.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use curbside_core::sql::{self, Key, Step};
use curbside_core::sync::protocol::{Assigned, Role};
use curbside_core::sync::schema::{upgrade_v3_to_v4, LOG_V3, OUTBOX_V5};
use curbside_core::sync::{log, Change, Hlc, StoredChange};
use curbside_core::vocab::{Entropy, Field, FieldValue, RequestId};
use curbside_core::{Catalog, Jurisdiction};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{DeviceRecord, NewDevice, Storage, SyncCall, SyncOutcome};
use crate::cursor::LogState;
use crate::scope::{self, Access, Device, RequestScope};
use crate::ServerError;

impl From<rusqlite::Error> for ServerError {
    fn from(e: rusqlite::Error) -> Self {
        ServerError::Internal(format!("database: {e}"))
    }
}

/// Requests a push's new places bring into a resident's view at once (the rest arrive as they
/// change; the duplicate check needs the open ones nearby, and there are rarely this many).
const BACKFILL: usize = 50;

const SERVER_ID: Key = Key::new("server_id");
/// The secret behind the pseudonyms of the public view: never sent, unlike the server id.
const PSEUDONYM_KEY: Key = Key::new("pseudonym_key");
const COMPACTED_SEQ: Key = Key::new("compacted_seq");
const COMPACTIONS: Key = Key::new("compactions");

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

/// Files every logged change under its request's feed keys and sets each request's cell: the
/// first fill of the feed, and for tools that write requests and changes straight into the
/// file (benchmarks' seeding). Idempotent.
pub fn fill_feed(tx: &Transaction) -> rusqlite::Result<()> {
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
    let mut insert = tx.prepare("INSERT OR IGNORE INTO feed (key, seq) VALUES (?1, ?2)")?;
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
const LADDER: [Step; 9] = [
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
        fill_feed(tx)
    },
];

pub struct SqliteStorage {
    conn: Mutex<Connection>,
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
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
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
            log::init_replica(&tx, entropy)?;
            tx.commit().map_err(startup)?;
            pseudonym_key
        };
        sql::keep_statements_prepared(&conn).map_err(startup)?;
        Ok(SqliteStorage {
            conn: Mutex::new(conn),
            wards: OnceLock::new(),
            pseudonym_key,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn wards(&self) -> &Jurisdiction {
        self.wards.get_or_init(Jurisdiction::toronto_shared)
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

fn log_state(tx: &Transaction) -> Result<LogState, ServerError> {
    Ok(LogState {
        server_id: sql::get(tx, SERVER_ID)?.unwrap_or_default(),
        compacted_seq: sql::get_num(tx, COMPACTED_SEQ, 0)?,
        compactions: sql::get_num(tx, COMPACTIONS, 0)?,
    })
}

/// The columns of a [`RequestScope`], in the order [`scope_from_row`] reads them.
const SCOPE_COLUMNS: &str = "r.created_by, r.ward, r.lat, r.lon, r.public";

fn scope_from_row(r: &rusqlite::Row) -> rusqlite::Result<RequestScope> {
    Ok(RequestScope {
        created_by: r.get(0)?,
        ward: r.get(1)?,
        lat: r.get(2)?,
        lon: r.get(3)?,
        public: r.get(4)?,
    })
}

fn scope_row(
    tx: &Transaction,
    request_id: &RequestId,
) -> Result<Option<RequestScope>, ServerError> {
    Ok(tx
        .prepare_cached(&format!(
            "SELECT {SCOPE_COLUMNS} FROM requests r WHERE r.request_id = ?1"
        ))?
        .query_row([request_id.to_string()], scope_from_row)
        .optional()?)
}

fn refuse(status: u16, request_id: &RequestId, message: String) -> ServerError {
    ServerError::RequestRefused {
        status: axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::FORBIDDEN),
        request_id: request_id.to_string(),
        message,
    }
}

/// Checks the device may change every request the push touches, numbers the new ones (the
/// same number again for a retried push) and returns the public ids, and the new requests.
fn admit(
    tx: &Transaction,
    device: &Device,
    changes: &[Change],
    now: i64,
) -> Result<(Vec<Assigned>, Vec<RequestId>), ServerError> {
    let mut seen: Vec<RequestId> = Vec::new();
    for c in changes {
        if !seen.contains(&c.request_id) {
            seen.push(c.request_id);
        }
    }
    let (mut assigned, mut fresh) = (Vec::new(), Vec::new());
    for request_id in seen {
        let mine = changes.iter().filter(|c| c.request_id == request_id);
        let known: Option<(RequestScope, i64)> = tx
            .prepare_cached(&format!(
                "SELECT {SCOPE_COLUMNS}, r.service_request_id FROM requests r
                 WHERE r.request_id = ?1"
            ))?
            .query_row([request_id.to_string()], |r| {
                Ok((scope_from_row(r)?, r.get(5)?))
            })
            .optional()?;
        if let Some(c) = mine
            .clone()
            .find(|c| !scope::may_write(device, &c.value, known.as_ref().map(|k| &k.0)))
        {
            return Err(refuse(
                403,
                &request_id,
                format!("this device may not write {} here", c.field()),
            ));
        }
        let number: i64 = match known {
            Some((request, number)) => {
                if !scope::may_change(device, &request) {
                    return Err(refuse(
                        403,
                        &request_id,
                        format!("request {request_id} is not this device's to change"),
                    ));
                }
                number
            }
            None => {
                if !mine.clone().any(|c| c.field() == Field::Create) {
                    return Err(refuse(
                        404,
                        &request_id,
                        format!(
                            "request {request_id} is unknown here: push its create change first"
                        ),
                    ));
                }
                let number: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(service_request_id), 100000) + 1 FROM requests",
                    [],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO requests (request_id, service_request_id, created_by, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![request_id.to_string(), number, device.id, now],
                )?;
                // The number travels as a change too, so it reaches the reporter even when
                // this answer is lost, and every other replica that sees the request.
                log::record(
                    tx,
                    request_id,
                    vec![FieldValue::ServiceRequestId(number.to_string())],
                    now,
                    log::Outbox::None,
                )?;
                fresh.push(request_id);
                number
            }
        };
        assigned.push(Assigned {
            request_id,
            service_request_id: number.to_string(),
        });
    }
    Ok((assigned, fresh))
}

/// Brings the scope columns of one request up to date with its merged changes.
fn refresh(
    tx: &Transaction,
    wards: &Jurisdiction,
    request_id: &RequestId,
) -> Result<(), ServerError> {
    let fields = log::current(
        tx,
        request_id,
        &[Field::Location, Field::Status, Field::Visibility],
    )?;
    let (lat, lon) = match fields.get(&Field::Location) {
        Some(FieldValue::Location(Some(l))) => (Some(l.lat), Some(l.lon)),
        _ => (None, None),
    };
    let ward = lat
        .zip(lon)
        .and_then(|(lat, lon)| wards.ward_of(lat, lon).map(|w| w.code.clone()));
    let status = match fields.get(&Field::Status) {
        Some(FieldValue::Status(s)) => s.as_str(),
        _ => "accepted",
    };
    let public = !matches!(
        fields.get(&Field::Visibility),
        Some(FieldValue::Visibility(
            curbside_core::vocab::Visibility::Private
        ))
    );
    let cell = lat.zip(lon).map(|(lat, lon)| scope::cell_of(lat, lon));
    tx.prepare_cached(
        "UPDATE requests SET lat = ?2, lon = ?3, ward = COALESCE(?4, ward), status = ?5, public = ?6,
                             cell = ?7
         WHERE request_id = ?1",
    )?
    .execute(params![request_id.to_string(), lat, lon, ward, status, public, cell])?;
    Ok(())
}

/// What one device may see, decided per request by the scope rule and remembered for the call.
struct View<'d> {
    device: &'d Device,
    pseudonym_key: &'d str,
    /// Where a resident has reported from.
    places: Vec<(f64, f64)>,
    access: HashMap<RequestId, Access>,
}

impl<'d> View<'d> {
    fn new(
        tx: &Transaction,
        device: &'d Device,
        pseudonym_key: &'d str,
    ) -> Result<View<'d>, ServerError> {
        let places = if device.role == Role::Resident {
            reported_places(tx, &device.id)?
        } else {
            Vec::new()
        };
        Ok(View {
            device,
            pseudonym_key,
            places,
            access: HashMap::new(),
        })
    }

    fn access(&mut self, tx: &Transaction, request_id: &RequestId) -> Result<Access, ServerError> {
        if let Some(a) = self.access.get(request_id) {
            return Ok(*a);
        }
        let a = match scope_row(tx, request_id)? {
            None => Access::None,
            Some(row) => scope::access(self.device, &row, &self.places),
        };
        self.access.insert(*request_id, a);
        Ok(a)
    }

    fn allows(&mut self, tx: &Transaction, c: &StoredChange) -> Result<bool, ServerError> {
        let access = self.access(tx, &c.request_id)?;
        if !scope::sees(self.device, access, c) {
            return Ok(false);
        }
        // Retracting an internal note would tell a resident that one existed, and its id.
        if c.field == Field::NoteRetract && self.device.role != Role::Inspector {
            return retracts_public_note(tx, c);
        }
        Ok(true)
    }

    /// The change in the form this device receives it ([`scope::shape`]).
    fn shape(&self, c: StoredChange) -> Option<StoredChange> {
        let access = self.access.get(&c.request_id).copied()?;
        scope::shape(self.device, access, c, self.pseudonym_key)
    }
}

/// Whether a retraction removes a public note (one not found counts as internal).
fn retracts_public_note(tx: &Transaction, c: &StoredChange) -> Result<bool, ServerError> {
    let Ok(FieldValue::NoteRetract(id)) = FieldValue::from_json_text(&c.field, c.value.get())
    else {
        return Ok(false);
    };
    Ok(log::load_fields(tx, &c.request_id, &[Field::Note])?
        .iter()
        .any(|n| matches!(&n.value, FieldValue::Note(n) if n.id == id && n.public)))
}

fn reported_places(conn: &Connection, device_id: &str) -> Result<Vec<(f64, f64)>, ServerError> {
    Ok(conn
        .prepare_cached(
            "SELECT lat, lon FROM requests WHERE created_by = ?1 AND lat IS NOT NULL
             ORDER BY created_at DESC LIMIT ?2",
        )?
        .query_map(params![device_id, scope::MAX_PLACES as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// Files the changes that arrived after `before` under the feed keys of their requests.
fn file(tx: &Transaction, before: u64) -> Result<(), ServerError> {
    let mut keys: HashMap<RequestId, Vec<String>> = HashMap::new();
    let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO feed (key, seq) VALUES (?1, ?2)")?;
    for (seq, id) in log::arrivals_after(tx, before)? {
        if let std::collections::hash_map::Entry::Vacant(e) = keys.entry(id) {
            e.insert(
                scope_row(tx, &id)?
                    .map(|r| scope::filed_under(&r))
                    .unwrap_or_default(),
            );
        }
        for k in &keys[&id] {
            insert.execute(params![k, seq as i64])?;
        }
    }
    Ok(())
}

/// A page of what `view`'s device may see after arrival number `after`: the feeds of its keys
/// merged in arrival order, each change checked by the view. Reads at most about `page` feed
/// rows per key and a bounded number of changes, whatever the size of the log; when nothing
/// is left the cursor moves to the end of the log, so a device that sees little is caught up
/// at once.
fn pull(
    tx: &Transaction,
    view: &mut View,
    after: u64,
    page: usize,
    replica: Option<&curbside_core::vocab::ReplicaId>,
) -> Result<(Vec<StoredChange>, u64, bool), ServerError> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let end = log::last_seq(tx)?;
    let keys = scope::feed_keys(view.device, &view.places);
    // Changes skipped (the device's own, or outside its view) count too: a page's work is
    // bounded even for a device that may see few of the changes filed under its keys.
    let scan = page.saturating_mul(4).max(64);
    // One stream per key, each the change itself joined to its feed row, merged by arrival.
    let sql = format!(
        "SELECT {}, f.seq FROM feed f JOIN sync_change_rows c ON c.seq = f.seq
         WHERE f.key = ?1 AND f.seq > ?2 ORDER BY f.seq",
        log::STORED_COLUMNS
    );
    let mut statements = Vec::with_capacity(keys.len());
    for _ in &keys {
        statements.push(tx.prepare(&sql)?);
    }
    let mut streams = Vec::with_capacity(keys.len());
    for (stmt, key) in statements.iter_mut().zip(&keys) {
        streams.push(stmt.query(params![key, after as i64])?);
    }
    let next = |rows: &mut rusqlite::Rows| -> Result<Option<(u64, StoredChange)>, ServerError> {
        Ok(match rows.next()? {
            Some(r) => Some((r.get::<_, i64>(7)? as u64, log::read_stored(r)?)),
            None => None,
        })
    };
    // The head of each stream, by arrival number; the change waits beside it.
    let mut heads: Vec<Option<StoredChange>> = Vec::with_capacity(keys.len());
    let mut heap = BinaryHeap::new();
    for (i, rows) in streams.iter_mut().enumerate() {
        let head = next(rows)?;
        if let Some((seq, _)) = &head {
            heap.push(Reverse((*seq, i)));
        }
        heads.push(head.map(|(_, c)| c));
    }
    let (mut out, mut cursor, mut scanned) = (Vec::new(), after, 0usize);
    while let Some(Reverse((seq, i))) = heap.pop() {
        let change = heads[i].take().expect("a head for each entry");
        if let Some((s, c)) = next(&mut streams[i])? {
            heap.push(Reverse((s, i)));
            heads[i] = Some(c);
        }
        if seq <= cursor {
            continue; // filed under two of this device's keys
        }
        if out.len() == page || scanned == scan {
            return Ok((out, cursor, true));
        }
        cursor = seq;
        scanned += 1;
        if Some(change.replica()) != replica && view.allows(tx, &change)? {
            out.push(change);
        }
    }
    Ok((out, cursor.max(end), false))
}

/// The public view of open requests near the resident's new requests: at most
/// [`BACKFILL`] requests, whole, within `page` changes, found through the cells around each
/// new place (an index, not a scan).
fn backfill(
    tx: &Transaction,
    view: &mut View,
    fresh: &[RequestId],
    page: usize,
) -> Result<Vec<StoredChange>, ServerError> {
    let mut out = Vec::new();
    let mut sent = HashSet::new();
    let mut near = tx.prepare_cached(
        "SELECT request_id FROM requests
         WHERE cell = ?1 AND public AND status NOT IN ('completed', 'cancelled')
           AND created_by <> ?2
         LIMIT ?3",
    )?;
    for id in fresh {
        let place: Option<(f64, f64)> = tx
            .prepare_cached(
                "SELECT lat, lon FROM requests WHERE request_id = ?1 AND lat IS NOT NULL",
            )?
            .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((lat, lon)) = place else { continue };
        if !view.places.contains(&(lat, lon)) {
            view.places.push((lat, lon));
        }
        for cell in scope::cells_near(lat, lon) {
            let others: Vec<String> = near
                .query_map(params![cell, view.device.id, BACKFILL as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for other in others {
                let Ok(other) = RequestId::parse(&other) else {
                    continue;
                };
                if sent.len() == BACKFILL || !sent.insert(other) {
                    continue;
                }
                // Decided before this place joined the view, perhaps as out of sight.
                view.access.remove(&other);
                let mut whole = Vec::new();
                for c in log::load(tx, &other)? {
                    let c = StoredChange::from(&c);
                    if view.allows(tx, &c)? {
                        whole.push(c);
                    }
                }
                if out.len() + whole.len() > page {
                    return Ok(out);
                }
                out.extend(whole);
            }
        }
    }
    Ok(out)
}

impl Storage for SqliteStorage {
    fn catalog(&self) -> Result<Catalog, ServerError> {
        let doc: Option<String> = self
            .conn()
            .query_row("SELECT document FROM catalog WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        match doc {
            Some(doc) => Catalog::parse(doc.as_bytes())
                .map_err(|e| ServerError::Internal(format!("stored catalogue: {e}"))),
            None => Ok(Catalog::toronto()),
        }
    }

    fn replace_catalog(&self, catalog: &Catalog, now_ms: i64) -> Result<(), ServerError> {
        self.write(|tx| write_catalog(tx, catalog, now_ms))
    }

    fn add_device(&self, d: &NewDevice) -> Result<(), ServerError> {
        let mut wards: Vec<&String> = d.device.wards.iter().collect();
        wards.sort();
        self.conn().execute(
            "INSERT INTO devices (token_hash, device_id, role, wards, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                d.token_hash,
                d.device.id,
                d.device.role.as_str(),
                serde_json::to_string(&wards).unwrap_or_default(),
                d.created_at_ms
            ],
        )?;
        Ok(())
    }

    fn device(&self, token_hash: &str) -> Result<Option<Device>, ServerError> {
        let row: Option<(String, String, String)> = self
            .conn()
            .prepare_cached(
                "SELECT device_id, role, wards FROM devices
                 WHERE token_hash = ?1 AND revoked_at IS NULL",
            )?
            .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        Ok(row.map(|(id, role, wards)| Device {
            id,
            role: Role::parse(&role).unwrap_or(Role::Resident),
            wards: serde_json::from_str(&wards).unwrap_or_default(),
        }))
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, ServerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT device_id, role, wards, created_at, revoked_at FROM devices
             ORDER BY created_at, device_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeviceRecord {
                device_id: r.get(0)?,
                role: r.get(1)?,
                wards: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                created_at_ms: r.get(3)?,
                revoked_at_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_device(&self, device_id: &str, now_ms: i64) -> Result<bool, ServerError> {
        Ok(self.conn().execute(
            "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2) WHERE device_id = ?1",
            params![device_id, now_ms],
        )? > 0)
    }

    fn rotate_token(&self, device_id: &str, token_hash: &str) -> Result<(), ServerError> {
        self.conn().execute(
            "UPDATE devices SET token_hash = ?2 WHERE device_id = ?1 AND revoked_at IS NULL",
            params![device_id, token_hash],
        )?;
        Ok(())
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

    fn sync(&self, call: SyncCall<'_>) -> Result<SyncOutcome, ServerError> {
        let wards = self.wards();
        self.write(|tx| {
            let state = log_state(tx)?;
            let after = state.position(call.cursor)?;
            let before = log::last_seq(tx)?;
            let (assigned, fresh) = admit(tx, call.device, call.changes, call.now_ms)?;
            let report = log::apply(tx, call.changes, call.now_ms)?;
            if report.applied > 0 {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO arrivals (seq, at_ms)
                     SELECT MAX(seq), ?1 FROM sync_changes",
                )?
                .execute([call.now_ms])?;
            }
            let mut photo = tx.prepare_cached(
                "INSERT OR IGNORE INTO photo_refs (sha256, request_id) VALUES (?1, ?2)",
            )?;
            for c in call.changes {
                if let FieldValue::Photo(p) = &c.value {
                    photo.execute(params![p.sha256, c.request_id.to_string()])?;
                }
            }
            let touched: HashSet<RequestId> = call.changes.iter().map(|c| c.request_id).collect();
            for id in &touched {
                refresh(tx, wards, id)?;
            }
            file(tx, before)?;
            let mut view = View::new(tx, call.device, &self.pseudonym_key)?;
            let (mut changes, seq, more) = pull(tx, &mut view, after, call.page, call.replica)?;
            // A resident reporting from a new place sees what is already open around it.
            if call.device.role == Role::Resident {
                changes.extend(backfill(tx, &mut view, &fresh, call.page)?);
            }
            let changes = changes.into_iter().filter_map(|c| view.shape(c)).collect();
            Ok(SyncOutcome {
                assigned,
                changes,
                cursor: state.cursor(seq),
                more,
            })
        })
    }

    fn photo_scope(&self, sha256: &str) -> Result<Vec<RequestScope>, ServerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SCOPE_COLUMNS} FROM photo_refs p
             JOIN requests r ON r.request_id = p.request_id WHERE p.sha256 = ?1"
        ))?;
        let rows = stmt.query_map([sha256], scope_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn reported_places(&self, device_id: &str) -> Result<Vec<(f64, f64)>, ServerError> {
        reported_places(&self.conn(), device_id)
    }

    fn photo_stored(
        &self,
        sha256: &str,
        uploaded_bytes: u64,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO photos (sha256, uploaded_bytes, device_id, stored_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![sha256, uploaded_bytes as i64, device_id, now_ms],
        )?;
        Ok(())
    }

    fn photo_uploaded_bytes(&self, sha256: &str) -> Result<Option<u64>, ServerError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT uploaded_bytes FROM photos WHERE sha256 = ?1")?
            .query_row([sha256], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|n| n as u64))
    }

    fn compact(&self, horizon: Hlc, arrived_by_ms: i64) -> Result<usize, ServerError> {
        self.write(|tx| {
            let arrived_by: Option<i64> = tx.query_row(
                "SELECT MAX(seq) FROM arrivals WHERE at_ms <= ?1",
                [arrived_by_ms],
                |r| r.get(0),
            )?;
            let Some(arrived_by) = arrived_by else {
                return Ok(0);
            };
            // Older marks say nothing the newest one before the horizon does not.
            tx.execute("DELETE FROM arrivals WHERE seq < ?1", [arrived_by])?;
            let (deleted, max_seq) = log::compact(tx, horizon, arrived_by as u64)?;
            if deleted > 0 {
                let reached = sql::get_num(tx, COMPACTED_SEQ, 0u64)?.max(max_seq);
                sql::set(tx, COMPACTED_SEQ, &reached.to_string())?;
                sql::increment(tx, COMPACTIONS)?;
            }
            Ok(deleted)
        })
    }
}
