//! PostgreSQL storage, for several server instances on one database: the same tables as the
//! embedded SQLite file and the same rules over them ([`super::push`], [`super::pull`]), each
//! step a statement ([`tx`]). Each instance has one group-committing writer and a pool of
//! readers ([`conns`]); instances take turns at the log's arrival numbers, and share the
//! server's id, its replica and its pseudonym key, so a device may sync through any of them.
//!
//! Photo files are not in the database: instances share the media directory (a shared volume).

mod conns;
mod schema;
mod tx;

use std::sync::{Arc, OnceLock};

use curbside_core::sync::Hlc;
use curbside_core::vocab::{Entropy, ReplicaId};
use curbside_core::{Catalog, Jurisdiction};

use super::open311::{
    self, ApiKeyRecord, FoundRequest, NewApiKey, Post, Posted, RequestQuery, StandardRow,
};
use super::push::{self, Pushed};
use super::tx::Tx;
use super::{compact, pull, DeviceRecord, NewDevice, PhotoRef, Storage, SyncCall, SyncOutcome};
use crate::cursor::LogState;
use crate::scope::{Device, RequestScope};
use crate::ServerError;
use conns::{Conn, Readers, Writer};
pub use tx::PgTx;

pub struct PgStorage {
    writer: Writer,
    readers: Readers,
    wards: OnceLock<Arc<Jurisdiction>>,
    pseudonym_key: String,
    /// Every instance's: cursors name it.
    server_id: String,
}

/// Where a database is, for messages: never its password.
pub fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{host}:{port}/{}",
        config.get_dbname().unwrap_or_default()
    )
}

/// Makes an empty database `name` on the PostgreSQL server at `server` (a URL naming any of
/// its databases) and returns the new database's URL: for tests and benchmarks, which want a
/// database each.
pub fn create_database(server: &str, name: &str) -> Result<String, ServerError> {
    // A name PostgreSQL keeps as written: lower case, not led by a digit, within its 63 bytes.
    let fits = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !fits {
        return Err(ServerError::BadRequest(format!("database name {name:?}")));
    }
    let create = format!("CREATE DATABASE {name}");
    super::where_it_may_block(|| {
        let mut admin = postgres::Client::connect(server, postgres::NoTls)?;
        admin.batch_execute(&create)?;
        Ok::<_, ServerError>(())
    })?;
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => base.to_string(),
    };
    Ok(format!("{base}/{name}{query}"))
}

impl PgStorage {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), climbing the
    /// migration ladder if this server's schema is newer.
    pub fn open(url: &str, now_ms: i64, entropy: &dyn Entropy) -> Result<PgStorage, ServerError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| ServerError::Startup(format!("database URL: {e}")))?;
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        config.application_name("curbside-server");
        // Every statement here is an index lookup (a request's work is bounded by its own
        // limits). Statements are prepared once per connection, and a plan made while a table
        // was small (a new database) would scan it for good once it is large: the planner is
        // told to scan only where no index serves. No statement, lock wait or open transaction
        // may hold the log (or a connection) for long: a stuck instance must not stall the
        // others.
        let ours = "-c enable_seqscan=off -c statement_timeout=30000 -c lock_timeout=30000 \
                    -c idle_in_transaction_session_timeout=60000";
        let options = match config.get_options() {
            Some(given) if !given.is_empty() => format!("{given} {ours}"),
            _ => ours.to_string(),
        };
        config.options(&options);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        let place = describe(&config);
        let startup = |e: ServerError| ServerError::Startup(format!("{place}: {e}"));
        let (writer, (pseudonym_key, server_id)) = super::where_it_may_block(|| {
            let mut conn = Conn::open(&config).map_err(startup)?;
            let keys = climb(&mut conn, now_ms, entropy).map_err(startup)?;
            Ok::<_, ServerError>((Writer::start(conn, config.clone())?, keys))
        })?;
        Ok(PgStorage {
            writer,
            readers: Readers::new(config),
            wards: OnceLock::new(),
            pseudonym_key,
            server_id,
        })
    }

    fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&mut PgTx) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, ServerError> {
        self.writer.write(f)
    }

    fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut PgTx) -> Result<T, ServerError> + Send,
    ) -> Result<T, ServerError> {
        self.readers.read(f)
    }

    fn wards(&self) -> Arc<Jurisdiction> {
        self.wards.get_or_init(Jurisdiction::toronto_shared).clone()
    }
}

/// Brings the schema up to this server's version, once whoever else is starting; makes the
/// server's id, pseudonym key and replica the first time. Returns the pseudonym key and the
/// server's id.
fn climb(
    conn: &mut Conn,
    now_ms: i64,
    entropy: &dyn Entropy,
) -> Result<(String, String), ServerError> {
    let Conn { client, cache } = conn;
    let mut tx = conns::write_transaction(client)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::CLIMBING])?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])?
        .get(0);
    let version: usize = if exists {
        tx.query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])?
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    if version > schema::LADDER.len() {
        return Err(ServerError::Startup(format!(
            "the database was written by a newer server (schema {version}); this one knows {}",
            schema::LADDER.len()
        )));
    }
    for step in &schema::LADDER[version..] {
        tx.batch_execute(step)?;
    }
    let mut pg = PgTx::new(&mut tx, cache);
    pg.set_meta("schema_version", &schema::LADDER.len().to_string())?;
    if version == 0 {
        write_catalog(&mut pg, &Catalog::toronto(), now_ms)?;
    }
    for key in ["server_id", "pseudonym_key"] {
        if pg.meta(key)?.is_none() {
            let id = format!("{:016x}{:016x}", entropy.next_u64(), entropy.next_u64());
            pg.set_meta(key, &id)?;
        }
    }
    if pg.meta("replica_id")?.is_none() {
        let own = ReplicaId::random(entropy);
        pg.set_meta("replica_id", own.as_str())?;
        // The server's own changes (public numbers) are its replica's: no device's.
        pg.write(
            "INSERT INTO replicas (replica, device_id) VALUES ($1, '') ON CONFLICT DO NOTHING",
            &[&own.as_str()],
        )?;
    }
    let key = pg.meta("pseudonym_key")?.unwrap_or_default();
    let server_id = pg.meta("server_id")?.unwrap_or_default();
    tx.commit()?;
    Ok((key, server_id))
}

fn write_catalog(tx: &mut PgTx, catalog: &Catalog, now_ms: i64) -> Result<(), ServerError> {
    tx.write(
        "INSERT INTO catalog (id, document, imported_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE
         SET document = excluded.document, imported_at = excluded.imported_at",
        &[&catalog.to_json().to_string(), &now_ms],
    )?;
    Ok(())
}

impl Storage for PgStorage {
    fn catalog(&self) -> Result<Catalog, ServerError> {
        let doc: Option<String> = self.read(|tx| {
            Ok(tx
                .query_opt("SELECT document FROM catalog WHERE id = 1", &[])?
                .map(|r| r.get(0)))
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
            tx.write(
                "INSERT INTO devices (token_hash, device_id, role, wards, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &d.token_hash,
                    &d.device.id,
                    &d.device.role.as_str(),
                    &wards,
                    &d.created_at_ms,
                ],
            )?;
            Ok(())
        })
    }

    fn device(&self, token_hash: &str) -> Result<Option<Device>, ServerError> {
        let row = self.read(|tx| {
            tx.query_opt(
                "SELECT device_id, role, wards FROM devices
                 WHERE token_hash = $1 AND revoked_at IS NULL",
                &[&token_hash],
            )
        })?;
        Ok(row.map(|r| super::device_of(r.get(0), r.get(1), r.get(2))))
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, ServerError> {
        let rows = self.read(|tx| {
            tx.query(
                "SELECT device_id, role, wards, created_at, revoked_at FROM devices
                 ORDER BY created_at, device_id",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| super::record_of(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect())
    }

    fn revoke_device(&self, device_id: &str, now_ms: i64) -> Result<bool, ServerError> {
        let device_id = device_id.to_string();
        self.write(move |tx| {
            Ok(!tx
                .write(
                    "UPDATE devices SET revoked_at = COALESCE(revoked_at, $2)
                     WHERE device_id = $1 RETURNING 1",
                    &[&device_id, &now_ms],
                )?
                .is_empty())
        })
    }

    fn rotate_token(&self, device_id: &str, token_hash: &str) -> Result<(), ServerError> {
        let (device_id, token_hash) = (device_id.to_string(), token_hash.to_string());
        self.write(move |tx| {
            tx.write(
                "UPDATE devices SET token_hash = $2 WHERE device_id = $1 AND revoked_at IS NULL",
                &[&device_id, &token_hash],
            )?;
            Ok(())
        })
    }

    fn pool_use(&self) -> super::PoolUse {
        self.writer.commits().with(self.readers.use_())
    }

    fn writable(&self) -> Result<(), ServerError> {
        // A real write, committed: what a push needs.
        self.write(|tx| {
            tx.set_meta("ready_at", "now")?;
            Ok(())
        })
    }

    fn sync(&self, call: SyncCall) -> Result<SyncOutcome, ServerError> {
        // A cursor from elsewhere is refused before anything is written.
        // (The server's id never changes: known without a read. Expiry is the pull's to
        // judge, on the log as it then is.)
        LogState {
            server_id: self.server_id.clone(),
            compacted_seq: 0,
            compactions: 0,
        }
        .position(call.cursor.as_deref())?;
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
            self.write(move |tx| push::push(tx, &wards, &standards, &device, &changes, now_ms))?
        };
        // On one snapshot, which holds the push.
        let page = self.readers.snapshot(|tx| {
            pull::pull(
                tx,
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
        let rows = self.read(|tx| {
            tx.query(
                "SELECT r.created_by, r.ward, r.lat, r.lon, r.public, p.device_id,
                        h.device_id IS NOT NULL
                 FROM photo_refs p
                 JOIN requests r ON r.request_id = p.request_id
                 LEFT JOIN photo_holders h ON h.sha256 = p.sha256 AND h.device_id = p.device_id
                 WHERE p.sha256 = $1",
                &[&sha256],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| PhotoRef {
                request: RequestScope {
                    created_by: r.get(0),
                    ward: r.get(1),
                    lat: r.get(2),
                    lon: r.get(3),
                    public: r.get(4),
                },
                by: r.get(5),
                held: r.get(6),
            })
            .collect())
    }

    fn photo_held_by(&self, sha256: &str, device_id: &str) -> Result<bool, ServerError> {
        self.read(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT 1 FROM photo_holders h JOIN photos p ON p.sha256 = h.sha256
                     WHERE h.sha256 = $1 AND h.device_id = $2",
                    &[&sha256, &device_id],
                )?
                .is_some())
        })
    }

    fn photo_bytes_stored_by(&self, device_id: &str, since_ms: i64) -> Result<u64, ServerError> {
        self.read(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT COALESCE(sum(uploaded_bytes), 0)::int8 FROM photos
                     WHERE device_id = $1 AND stored_at >= $2",
                    &[&device_id, &since_ms],
                )?
                .map(|r| r.get::<_, i64>(0) as u64)
                .unwrap_or(0))
        })
    }

    fn reported_places(&self, device_id: &str) -> Result<Vec<(f64, f64)>, ServerError> {
        Ok(self.read(|tx| tx.pull_context(device_id, true))?.places)
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
            tx.write(
                "INSERT INTO photos (sha256, uploaded_bytes, device_id, stored_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&sha256, &(uploaded_bytes as i64), &device_id, &now_ms],
            )?;
            tx.write(
                "INSERT INTO photo_holders (sha256, device_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&sha256, &device_id],
            )?;
            Ok(())
        })
    }

    fn photo_uploaded_bytes(&self, sha256: &str) -> Result<Option<u64>, ServerError> {
        self.read(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT uploaded_bytes FROM photos WHERE sha256 = $1",
                    &[&sha256],
                )?
                .map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn add_api_key(&self, key: &NewApiKey) -> Result<(), ServerError> {
        let key = key.clone();
        self.write(move |tx| {
            tx.write(
                "INSERT INTO api_keys (key_hash, key_id, label, created_at) VALUES ($1, $2, $3, $4)",
                &[&key.key_hash, &key.key_id, &key.label, &key.created_at_ms],
            )?;
            Ok(())
        })
    }

    fn api_key(&self, key_hash: &str) -> Result<Option<String>, ServerError> {
        let row = self.read(|tx| {
            tx.query_opt(
                "SELECT key_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                &[&key_hash],
            )
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, ServerError> {
        let rows = self.read(|tx| {
            tx.query(
                "SELECT key_id, label, created_at, revoked_at FROM api_keys
                 ORDER BY created_at, key_id",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| ApiKeyRecord {
                key_id: r.get(0),
                label: r.get(1),
                created_at_ms: r.get(2),
                revoked_at_ms: r.get(3),
            })
            .collect())
    }

    fn revoke_api_key(&self, key_id: &str, now_ms: i64) -> Result<bool, ServerError> {
        let key_id = key_id.to_string();
        self.write(move |tx| {
            Ok(!tx
                .write(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1
                     RETURNING key_id",
                    &[&key_id, &now_ms],
                )?
                .is_empty())
        })
    }

    fn post_request(&self, post: Post) -> Result<Posted, ServerError> {
        let wards = self.wards();
        self.write(move |tx| open311::post(tx, &wards, &post))
    }

    fn token_request(&self, token: &str) -> Result<Option<String>, ServerError> {
        let row = self.read(|tx| {
            tx.query_opt(
                "SELECT r.service_request_id FROM open311_posts p
                 JOIN requests r ON r.request_id = p.request_id WHERE p.token = $1",
                &[&token],
            )
        })?;
        Ok(row.map(|r| r.get::<_, i64>(0).to_string()))
    }

    fn standard_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<StandardRow>, ServerError> {
        let rows = self.read(|tx| {
            tx.query_made(
                &format!(
                    "SELECT {} FROM requests WHERE created_at BETWEEN $1 AND $2
                     ORDER BY created_at LIMIT $3",
                    open311::STANDARD_COLUMNS
                ),
                &[&from_ms, &to_ms, &(limit as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| StandardRow {
                service_code: r.get(0),
                ward: r.get(1),
                created_at_ms: r.get(2),
                times: open311::StandardTimes {
                    acknowledge_due_ms: r.get(3),
                    resolve_due_ms: r.get(4),
                    acknowledged_at_ms: r.get(5),
                    closed_at_ms: r.get(6),
                },
            })
            .collect())
    }

    fn find_requests(
        &self,
        query: &RequestQuery,
        known: &open311::Known<'_>,
    ) -> Result<Vec<FoundRequest>, ServerError> {
        self.readers.snapshot(|tx| open311::find(tx, query, known))
    }

    fn compact(&self, horizon: Hlc, arrived_by_ms: i64) -> Result<usize, ServerError> {
        compact::run(|progress| {
            self.write(move |tx| compact::step(tx, horizon, arrived_by_ms, &progress))
        })
    }
}
