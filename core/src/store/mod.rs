//! The device's store: one SQLite file in WAL mode, with one writer connection and a few
//! readers, so a list on the UI thread never waits for a sync applying a large pull. Opening
//! checks that the file is ours and not from a newer app before anything is written to it, then
//! climbs the migration ladder. The store is given its clock and its source of ids.

pub mod events;
pub mod schema;
mod sync;

pub use events::{ChangeKind, Listener, ListenerId, Origin, RequestEvent};
pub use sync::{Registration, SyncFailure, SyncState};

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::catalog::{self, Catalog, DefinitionCache, Service, ServiceDefinition};
use crate::error::{Error, Result};
use crate::geo::{Jurisdiction, KnownRequest, NearbyHit, NearbyIndex, NearbyParams, Ward};
use crate::photo::{self, PhotoOptions};
use crate::request::{
    self, known, AttachedPhoto, Draft, DraftEdit, DraftSummary, Env, PhotoInfo, Update,
};
use crate::sql;
use crate::vocab::{
    Clock, Entropy, IdSource, Location, OsEntropy, Problem, ReplicaId, RequestId, State,
    SystemClock,
};

/// `PRAGMA application_id`: marks a file as Curbside's ("CURB").
const APPLICATION_ID: i32 = 0x4355_5242;
/// Idle reader connections kept open.
const READERS: usize = 4;
/// Commits between two signals to the checkpointer.
const CHECKPOINT_EVERY: u64 = 64;
/// WAL pages past which the writer checkpoints by itself (the checkpointer fell behind).
const WAL_CEILING_PAGES: u32 = 10_000;

/// How hard a commit works to survive power loss. Both survive the app being killed at any
/// moment: a commit is in the WAL before `commit` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL`: a power cut may lose the last commits, never corrupt the file.
    /// SQLite's recommendation for WAL and what Android uses.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before it returns.
    Full,
}

/// How a store is opened: its durability, and the world it reads time and ids from.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Normal,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
        }
    }
}

/// Copies the WAL back into the database from its own thread and connection, so that no write
/// waits for it (a checkpoint run by the writer stalls the commit that triggers it, several
/// times longer than the commit itself). Passive: it never blocks readers or the writer.
struct Checkpointer {
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("curbside-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    // A busy database only means the next signal tries again.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    fn nudge(&self) {
        if let Some(w) = &self.wake {
            let _ = w.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Store {
    writer: Mutex<Connection>,
    commits: std::sync::atomic::AtomicU64,
    checkpointer: Checkpointer,
    /// Idle reader connections; more are opened when all are busy.
    readers: Mutex<Vec<Connection>>,
    clock: Arc<dyn Clock>,
    ids: IdSource,
    replica: ReplicaId,
    definitions: DefinitionCache,
    photo_options: PhotoOptions,
    /// Loaded on first use: most app starts never need the ward polygons.
    jurisdiction: OnceLock<Arc<Jurisdiction>>,
    nearby_params: NearbyParams,
    /// Built on the first duplicate query, then kept in step with every write.
    nearby: Mutex<Option<NearbyIndex>>,
    listeners: events::Listeners,
    path: PathBuf,
}

fn id_of(id: &str) -> Result<RequestId> {
    Ok(RequestId::parse(id)?)
}

impl Store {
    /// Opens (or creates) the store at `path`. A new store starts with the Toronto catalogue.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with_options(path, Options::default())
    }

    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Store> {
        Store::open_with_options(
            path,
            Options {
                durability,
                ..Options::default()
            },
        )
    }

    pub fn open_with_options(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        check_header(&path)?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(&path, e))?;
        // Reads only until we know the file is ours and not newer than this build.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let (version, app_id, tables) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version),
                        (SELECT application_id FROM pragma_application_id),
                        (SELECT count(*) FROM sqlite_master)",
                [],
                |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, i32>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .map_err(|e| classify(&path, e))?;
        if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
            return Err(Error::NotADatabase { path });
        }
        if version > schema::VERSION {
            return Err(Error::NewerSchema {
                path,
                found: version,
                supported: schema::VERSION,
            });
        }
        // No integrity scan here: it would read the whole file (photos included) on every app
        // start. Truncation is caught by the header check; damage inside a page surfaces as
        // SQLITE_CORRUPT from the query that meets it, and no write happens before these reads.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = {};
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA wal_autocheckpoint = {WAL_CEILING_PAGES};",
            match options.durability {
                Durability::Normal => "NORMAL",
                Durability::Full => "FULL",
            }
        ))
        .map_err(|e| classify(&path, e))?;
        let mut conn = conn;
        let replica = {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Another process may have initialised the file while we waited for the lock.
            let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version < schema::VERSION {
                // The path is the app's private directory: it names no one.
                tracing::info!(target: "curbside::store", from = version, to = schema::VERSION,
                    "store schema upgraded");
            }
            sql::climb(&tx, version, &schema::LADDER)?;
            if version == 0 {
                tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
                catalog::replace(&tx, &Catalog::toronto(), options.clock.now_ms())?;
            }
            let replica = crate::sync::log::init_replica(&tx, &*options.entropy)?;
            // Photo bytes whose link did not survive (an older build's crash, a hand edit).
            request::remove_orphans(&tx)?;
            tx.commit()?;
            replica
        };
        sql::keep_statements_prepared(&conn)?;
        let checkpointer = Checkpointer::start(&path)?;
        Ok(Store {
            writer: Mutex::new(conn),
            commits: std::sync::atomic::AtomicU64::new(0),
            checkpointer,
            readers: Mutex::new(Vec::new()),
            clock: options.clock,
            ids: IdSource::new(options.entropy),
            replica,
            definitions: DefinitionCache::default(),
            photo_options: PhotoOptions::default(),
            jurisdiction: OnceLock::new(),
            nearby_params: NearbyParams::default(),
            nearby: Mutex::new(None),
            listeners: events::Listeners::default(),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This store's replica id in the change log: which changes in a history are its own.
    pub fn replica_id(&self) -> &ReplicaId {
        &self.replica
    }

    /// The store's clock (milliseconds since 1970).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn env(&self) -> Env<'_> {
        Env {
            now_ms: self.clock.now_ms(),
            ids: &self.ids,
            replica: &self.replica,
        }
    }

    /// Runs `f` in one immediate transaction on the writer and commits it, or rolls everything
    /// back.
    fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        // A panic while holding the lock cannot leave a half-done write: the transaction was
        // rolled back when it unwound. The connection itself is still good.
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        let commits = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if commits % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1 {
            self.checkpointer.nudge();
        }
        Ok(value)
    }

    /// Runs `f` on a reader connection: it sees the last commit and never waits for the writer.
    /// One read transaction, so what `f` reads in several statements is one snapshot.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.pool().pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let value = conn
            .unchecked_transaction()
            .map_err(Error::from)
            .and_then(|snapshot| f(&snapshot));
        let mut pool = self.pool();
        if pool.len() < READERS {
            pool.push(conn);
        }
        value
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_reader(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(&self.path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        sql::keep_statements_prepared(&conn)?;
        Ok(conn)
    }

    // ---- catalogue ----

    /// Replaces the catalogue. Drafts keep their service code; a draft whose service has gone
    /// shows `service_name: None` and fails validation with `ServiceGone`.
    pub fn import_catalog(&self, catalog: &Catalog) -> Result<()> {
        let now = self.now_ms();
        self.write(|tx| catalog::replace(tx, catalog, now))
    }

    pub fn services(&self) -> Result<Vec<Service>> {
        self.read(catalog::services)
    }

    pub fn service(&self, code: &str) -> Result<Service> {
        self.read(|c| catalog::service(c, code))?
            .ok_or_else(|| Error::UnknownService(code.to_string()))
    }

    pub fn definition(&self, code: &str) -> Result<ServiceDefinition> {
        self.read(|c| self.definitions.get(c, code))?
            .map(|d| (*d).clone())
            .ok_or_else(|| Error::UnknownService(code.to_string()))
    }

    // ---- drafts ----

    /// Creates a draft (UUIDv7 id) with `edit` applied; all or nothing.
    pub fn create_draft(&self, service_code: &str, edit: &DraftEdit) -> Result<String> {
        let env = self.env();
        let id =
            self.write(|tx| request::create(tx, &self.definitions, env, service_code, edit))?;
        self.tell(&id, ChangeKind::Created);
        Ok(id.to_string())
    }

    pub fn edit_draft(&self, id: &str, edit: &DraftEdit) -> Result<()> {
        let (id, env) = (id_of(id)?, self.env());
        self.write(|tx| request::edit(tx, &self.definitions, env, &id, edit))?;
        self.tell(&id, ChangeKind::Edited);
        Ok(())
    }

    pub fn draft(&self, id: &str) -> Result<Draft> {
        let id = id_of(id)?;
        self.read(|c| request::get(c, &id))
    }

    /// Newest first; `state` filters.
    pub fn drafts(&self, state: Option<State>, limit: u32) -> Result<Vec<DraftSummary>> {
        self.read(|c| request::list(c, state, limit))
    }

    /// Every problem that would stop the draft from being queued (empty when it is ready).
    pub fn validate_draft(&self, id: &str) -> Result<Vec<Problem>> {
        let id = id_of(id)?;
        self.read(|c| {
            let d = request::get(c, &id)?;
            let def = self.definitions.get(c, &d.service_code)?;
            Ok(request::validate(&d, def.as_deref()))
        })
    }

    /// Validates and queues the draft; on failure returns `Error::Invalid` with every problem.
    pub fn submit_draft(&self, id: &str) -> Result<()> {
        let (id, env) = (id_of(id)?, self.env());
        let jurisdiction = self.jurisdiction();
        self.write(|tx| request::submit(tx, &self.definitions, &jurisdiction, env, &id))?;
        self.reindex(&id)?;
        self.tell(&id, ChangeKind::Submitted);
        Ok(())
    }

    /// Takes a queued request back to a draft so it can be edited.
    pub fn withdraw_draft(&self, id: &str) -> Result<()> {
        let (id, env) = (id_of(id)?, self.env());
        self.write(|tx| request::withdraw(tx, env, &id))?;
        self.tell(&id, ChangeKind::Withdrawn);
        Ok(())
    }

    /// Deletes the request and frees the bytes of photos no other request uses.
    pub fn delete_draft(&self, id: &str) -> Result<()> {
        let id = id_of(id)?;
        self.write(|tx| request::delete(tx, &id))?;
        self.reindex(&id)?;
        self.tell(&id, ChangeKind::Deleted);
        Ok(())
    }

    // ---- photos ----

    pub fn photo_options(&self) -> &PhotoOptions {
        &self.photo_options
    }

    /// Changes how later photos are processed (size, budget, how many per request).
    pub fn set_photo_options(&mut self, options: PhotoOptions) {
        self.photo_options = options;
    }

    /// Processes a photo (orientation, resize, budget, no metadata) and attaches it to a draft.
    /// The draft takes the photo's GPS fix as its location when it has none. The work on the
    /// pixels happens before the store is locked; the write is one transaction.
    pub fn attach_photo(&self, id: &str, bytes: &[u8]) -> Result<AttachedPhoto> {
        let id = id_of(id)?;
        let processed = photo::process(bytes, &self.photo_options)?;
        let env = self.env();
        let attached =
            self.write(|tx| request::attach_photo(tx, env, &id, &processed, &self.photo_options))?;
        self.tell(&id, ChangeKind::Photos);
        Ok(attached)
    }

    pub fn detach_photo(&self, id: &str, sha256: &str) -> Result<()> {
        let (id, env) = (id_of(id)?, self.env());
        self.write(|tx| request::detach_photo(tx, env, &id, sha256.trim()))?;
        self.tell(&id, ChangeKind::Photos);
        Ok(())
    }

    pub fn photos(&self, id: &str) -> Result<Vec<PhotoInfo>> {
        let id = id_of(id)?;
        self.read(|c| request::photos(c, &id))
    }

    /// The processed JPEG of a stored photo.
    pub fn photo_jpeg(&self, sha256: &str) -> Result<Vec<u8>> {
        self.read(|c| request::photo_bytes(c, sha256, false))
    }

    pub fn photo_thumbnail(&self, sha256: &str) -> Result<Vec<u8>> {
        self.read(|c| request::photo_bytes(c, sha256, true))
    }

    // ---- the lifecycle, told by a channel other than sync ----

    /// The request was handed to the server.
    pub fn mark_sent(&self, id: &str) -> Result<()> {
        let (id, env) = (id_of(id)?, self.env());
        self.write(|tx| request::mark_sent(tx, env, &id))?;
        self.tell_from(Origin::Sync, &id, ChangeKind::Sent);
        Ok(())
    }

    /// The server refused the request: it goes back to a draft with the reason in its history.
    pub fn mark_rejected(&self, id: &str, reason: &str) -> Result<()> {
        let (id, env) = (id_of(id)?, self.env());
        self.write(|tx| request::refuse(tx, env, &id, reason))?;
        self.reindex(&id)?;
        self.tell_from(Origin::Sync, &id, ChangeKind::Rejected);
        Ok(())
    }

    pub fn mark_accepted(&self, id: &str, service_request_id: &str) -> Result<()> {
        let (id, env) = (id_of(id)?, self.env());
        self.write(|tx| request::accept(tx, env, &id, service_request_id))?;
        self.tell_from(Origin::Sync, &id, ChangeKind::Accepted);
        Ok(())
    }

    /// A status of the city's learned outside sync (an Open311 server polled), with its note.
    pub fn apply_server_status(&self, id: &str, status: State, note: Option<&str>) -> Result<()> {
        let (id, env) = (id_of(id)?, self.env());
        self.write(|tx| request::learned_status(tx, env, &id, status, note))?;
        self.reindex(&id)?;
        self.tell_from(Origin::Sync, &id, ChangeKind::Status);
        Ok(())
    }

    // ---- news and listeners ----

    /// The city's news about the user's requests (new statuses, public notes) not yet marked
    /// seen, oldest first, at most `limit`.
    pub fn unread_updates(&self, limit: u32) -> Result<Vec<Update>> {
        self.read(|c| request::unread(c, limit))
    }

    /// Marks the news about one request seen (the user opened it); returns how many were
    /// unseen.
    pub fn mark_seen(&self, id: &str) -> Result<usize> {
        let id = id_of(id)?;
        let seen = self.write(|tx| request::mark_seen(tx, &id.to_string()))?;
        if seen > 0 {
            self.tell(&id, ChangeKind::Seen);
        }
        Ok(seen)
    }

    /// Registers `listener` to hear about every later commit that changes requests.
    pub fn listen(&self, listener: Arc<dyn Listener>) -> ListenerId {
        self.listeners.add(listener)
    }

    /// Stops a listener; false when it had stopped already.
    pub fn unlisten(&self, id: ListenerId) -> bool {
        self.listeners.remove(id)
    }

    fn tell(&self, id: &RequestId, kind: ChangeKind) {
        self.tell_from(Origin::Local, id, kind)
    }

    fn tell_from(&self, origin: Origin, id: &RequestId, kind: ChangeKind) {
        self.listeners
            .notify(&[RequestEvent::new(id, origin, kind)]);
    }

    // ---- location ----

    /// The wards requests are placed in (Toronto's 25 unless set).
    pub fn jurisdiction(&self) -> Arc<Jurisdiction> {
        self.jurisdiction
            .get_or_init(Jurisdiction::toronto_shared)
            .clone()
    }

    /// Uses other ward boundaries (another city, or a newer ward model).
    pub fn set_jurisdiction(&mut self, jurisdiction: Arc<Jurisdiction>) {
        self.jurisdiction = OnceLock::from(jurisdiction);
    }

    pub fn set_nearby_params(&mut self, params: NearbyParams) {
        self.nearby_params = params;
    }

    pub fn ward_at(&self, lat: f64, lon: f64) -> Result<Ward> {
        Ok(self.jurisdiction().ward_at(lat, lon)?.clone())
    }

    /// Adds or updates requests known from elsewhere (an Open311 `requests.json`); closed ones
    /// leave the duplicate check.
    pub fn cache_requests(&self, requests: &[KnownRequest]) -> Result<()> {
        let now = self.now_ms();
        self.write(|tx| known::upsert(tx, requests, now))?;
        if let Some(index) = self.nearby_index().as_mut() {
            for r in requests {
                index.upsert(r.clone());
            }
        }
        Ok(())
    }

    /// Open requests of the same service that may be the problem being reported at `at`
    /// (the user's own sent ones and those synced in), nearest first. `exclude` leaves out
    /// the draft being written.
    pub fn nearby(
        &self,
        service_code: &str,
        at: &Location,
        exclude: Option<&str>,
    ) -> Result<Vec<NearbyHit>> {
        if let Some(p) = at.problem() {
            return Err(Error::invalid(p));
        }
        let mut guard = self.nearby_index();
        if guard.is_none() {
            let (own, synced) = self.read(|c| Ok((request::all_known(c)?, known::all(c)?)))?;
            *guard = Some(NearbyIndex::build(
                self.origin_lat(),
                own.into_iter().chain(synced),
            ));
        }
        let index = guard.as_ref().expect("built above");
        Ok(index.query(
            service_code.trim(),
            at,
            self.now_ms(),
            &self.nearby_params,
            exclude,
        ))
    }

    fn origin_lat(&self) -> f64 {
        let (lo, hi) = self.jurisdiction().bounds();
        (lo[1] + hi[1]) / 2.0
    }

    fn nearby_index(&self) -> MutexGuard<'_, Option<NearbyIndex>> {
        self.nearby.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings one of the user's requests up to date in the duplicate index, if it is built.
    fn reindex(&self, id: &RequestId) -> Result<()> {
        if self.nearby_index().is_none() {
            return Ok(());
        }
        let known = self.read(|c| request::as_known(c, id))?;
        if let Some(index) = self.nearby_index().as_mut() {
            match known {
                Some(k) => index.upsert(k),
                None => index.remove(&id.to_string()),
            }
        }
        Ok(())
    }

    fn reindex_touched(&self, touched: request::Touched) -> Result<()> {
        for id in &touched.own {
            self.reindex(id)?;
        }
        if let Some(index) = self.nearby_index().as_mut() {
            for k in touched.known {
                if k.open {
                    index.upsert(k);
                } else {
                    index.remove(&k.id);
                }
            }
        }
        Ok(())
    }
}

/// Refuses a file that is not SQLite, or is shorter than its own header says, before SQLite
/// opens it for writing.
fn check_header(path: &Path) -> Result<()> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut header = [0u8; 100];
    if len < 100 || file.read_exact(&mut header).is_err() || &header[..16] != b"SQLite format 3\0" {
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
        });
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let pages = u64::from(u32::from_be_bytes([
        header[28], header[29], header[30], header[31],
    ]));
    // The page count is only valid when the change counter matches "version-valid-for".
    let valid = header[24..28] == header[92..96];
    if valid && pages > 0 && len < pages * page_size {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "the file is {len} bytes but its header says {} (truncated?)",
                pages * page_size
            ),
        });
    }
    Ok(())
}

fn classify(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotADatabase {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => Error::Sqlite(e),
    }
}
