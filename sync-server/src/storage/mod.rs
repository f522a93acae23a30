//! The server's storage boundary: the only place with SQL. Handlers and the sync logic see this
//! trait; the SQLite implementation ([`sqlite`]) is the embedded default, and a PostgreSQL one
//! (for several instances on one database) will implement the same trait. Each method is one
//! transaction, and blocking: callers run it off the async executor.

mod compact;
mod conns;
pub mod duplicates;
pub mod open311;
pub mod postgres;
mod pull;
mod push;
pub mod sqlite;
mod tx;

use curbside_core::sync::protocol::Assigned;
use curbside_core::sync::protocol::Role;
use curbside_core::sync::{Change, Hlc, StoredChange};
use curbside_core::vocab::ReplicaId;
use curbside_core::Catalog;
use std::sync::Arc;

use crate::scope::{Device, RequestScope};

pub use self::postgres::PgStorage;
pub use self::sqlite::SqliteStorage;
use crate::ServerError;

/// A device being registered: only the hash of its token is kept.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub token_hash: String,
    pub device: Device,
    pub created_at_ms: i64,
}

/// A request's reference to a photo: who made it and whether they hold the photo's bytes.
#[derive(Debug, Clone)]
pub struct PhotoRef {
    pub request: RequestScope,
    pub by: String,
    /// The referring device sent the photo's bytes whole: only such a reference lets those
    /// who see the request see the photo (a hash alone opens nothing).
    pub held: bool,
}

/// A registered device, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceRecord {
    pub device_id: String,
    pub role: String,
    pub wards: Vec<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// One sync call, checked already: the device is who its token says, every change is well
/// formed and none is stamped ahead of the server's clock.
#[derive(Debug, Clone)]
pub struct SyncCall {
    pub device: Device,
    /// The catalogue's service standards: a new request's deadlines and expected date.
    pub standards: Arc<Standards>,
    pub changes: Vec<Change>,
    pub cursor: Option<String>,
    /// Leave this replica's own changes out of the pull (it holds them).
    pub replica: Option<ReplicaId>,
    pub now_ms: i64,
    /// Changes the pull's page carries at most.
    pub page: usize,
}

/// Each service's standard, by service code.
pub type Standards = std::collections::HashMap<String, curbside_core::Standard>;

/// The standards of a catalogue's services.
pub fn standards(catalog: &curbside_core::Catalog) -> Standards {
    catalog
        .services
        .iter()
        .map(|s| (s.code.clone(), s.standard))
        .collect()
}

/// When a request of `service_code` received at `now_ms` is due, by its standard (a service the
/// catalogue does not know gets the default one).
pub fn dues(standards: &Standards, service_code: Option<&str>, now_ms: i64) -> tx::Dues {
    let standard = service_code
        .and_then(|code| standards.get(code))
        .copied()
        .unwrap_or_default();
    tx::Dues {
        acknowledge: Some(standard.acknowledge_by(now_ms)),
        resolve: standard.resolve_by(now_ms),
    }
}

/// What a sync call did: the public numbers of the requests pushed, and a page of the pull.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub assigned: Vec<Assigned>,
    /// As stored: sent on without decoding their values.
    pub changes: Vec<StoredChange>,
    pub cursor: String,
    pub more: bool,
}

/// How storage's connections are used, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUse {
    pub readers_open: u64,
    pub readers_busy: u64,
    pub readers_max: u64,
    /// Group commits made, and the writes they carried (their ratio is the batch size).
    pub commits: u64,
    pub writes: u64,
}

/// A writer's tally of commits and the writes they carried, shared with its thread.
#[derive(Debug, Default)]
pub(crate) struct Commits {
    commits: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

impl Commits {
    pub(crate) fn add(&self, writes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.commits.fetch_add(1, Relaxed);
        self.writes.fetch_add(writes as u64, Relaxed);
    }

    /// `use_` with the tally filled in.
    pub(crate) fn with(&self, use_: PoolUse) -> PoolUse {
        use std::sync::atomic::Ordering::Relaxed;
        PoolUse {
            commits: self.commits.load(Relaxed),
            writes: self.writes.load(Relaxed),
            ..use_
        }
    }
}

thread_local! {
    static OFF_EXECUTOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as off the async executor (on the blocking pool): storage may block its thread.
pub fn off_executor<T>(f: impl FnOnce() -> T) -> T {
    let was = OFF_EXECUTOR.replace(true);
    let value = f();
    OFF_EXECUTOR.set(was);
    value
}

/// Runs `f` here if this thread may block, else on a thread of its own: a client that blocks
/// on a runtime of its own (PostgreSQL's) may not do so on a thread that drives async tasks,
/// and a call from one (at start-up, in a test) should not fail for it.
pub(crate) fn where_it_may_block<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if OFF_EXECUTOR.get() || tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(|| off_executor(f)).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// The catalogue as stored: Toronto's until one is imported.
fn stored_catalog(document: Option<String>) -> Result<Catalog, ServerError> {
    match document {
        Some(doc) => Catalog::parse(doc.as_bytes())
            .map_err(|e| ServerError::Internal(format!("stored catalogue: {e}"))),
        None => Ok(Catalog::toronto()),
    }
}

/// A device's wards as the `devices.wards` column keeps them: a JSON array, sorted.
fn wards_column(wards: &std::collections::HashSet<String>) -> String {
    let mut wards: Vec<&String> = wards.iter().collect();
    wards.sort();
    serde_json::to_string(&wards).unwrap_or_default()
}

/// A device from its `devices` row.
fn device_of(id: String, role: &str, wards: &str) -> Device {
    Device {
        id,
        role: Role::parse(role).unwrap_or(Role::Resident),
        wards: serde_json::from_str(wards).unwrap_or_default(),
    }
}

/// A device's record for operators from its `devices` row.
fn record_of(
    device_id: String,
    role: String,
    wards: &str,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
) -> DeviceRecord {
    DeviceRecord {
        device_id,
        role,
        wards: serde_json::from_str(wards).unwrap_or_default(),
        created_at_ms,
        revoked_at_ms,
    }
}

/// The storage `config` names: the SQLite file in the data directory, or a PostgreSQL
/// database.
pub fn open(
    config: &crate::Config,
    now_ms: i64,
    entropy: &dyn curbside_core::vocab::Entropy,
) -> Result<std::sync::Arc<dyn Storage>, ServerError> {
    let database = config.database.trim();
    if database.is_empty() || database == "sqlite" {
        Ok(std::sync::Arc::new(SqliteStorage::open(
            &config.data_dir,
            now_ms,
            entropy,
        )?))
    } else if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStorage::open(
            database, now_ms, entropy,
        )?))
    } else {
        Err(ServerError::Startup(
            "--database is `sqlite` or a postgres:// URL".into(),
        ))
    }
}

pub trait Storage: Send + Sync {
    /// The published catalogue.
    fn catalog(&self) -> Result<Catalog, ServerError>;
    fn replace_catalog(&self, catalog: &Catalog, now_ms: i64) -> Result<(), ServerError>;

    fn add_device(&self, device: &NewDevice) -> Result<(), ServerError>;
    /// The device a token's hash belongs to, unless it was revoked.
    fn device(&self, token_hash: &str) -> Result<Option<Device>, ServerError>;
    /// Every registered device, oldest first.
    fn devices(&self) -> Result<Vec<DeviceRecord>, ServerError>;
    /// Revokes a device's token; false if there is no such device.
    fn revoke_device(&self, device_id: &str, now_ms: i64) -> Result<bool, ServerError>;
    /// Replaces a device's token hash.
    fn rotate_token(&self, device_id: &str, token_hash: &str) -> Result<(), ServerError>;
    /// How its connections are used now.
    fn pool_use(&self) -> PoolUse;
    /// Whether storage takes a write now (for `/readyz`).
    fn writable(&self) -> Result<(), ServerError>;

    /// Admits and applies a push (all or nothing) and numbers the requests it creates, then
    /// pages the pull from the cursor within the device's scope on a snapshot holding the push.
    fn sync(&self, call: SyncCall) -> Result<SyncOutcome, ServerError>;

    /// The references to a photo, with their requests' scope, for the scope rule.
    fn photo_scope(&self, sha256: &str) -> Result<Vec<PhotoRef>, ServerError>;
    /// Whether `device_id` proved it holds the photo's bytes (sent them whole).
    fn photo_held_by(&self, sha256: &str, device_id: &str) -> Result<bool, ServerError>;
    /// Bytes of photos `device_id` stored since `since_ms` (its daily quota).
    fn photo_bytes_stored_by(&self, device_id: &str, since_ms: i64) -> Result<u64, ServerError>;
    /// Where a resident has reported from (their public view is around these).
    fn reported_places(&self, device_id: &str) -> Result<Vec<(f64, f64)>, ServerError>;
    /// Records a photo stored whole (or sent whole again by another device, which then holds
    /// it too): `uploaded_bytes` is the length its uploader sent.
    fn photo_stored(
        &self,
        sha256: &str,
        uploaded_bytes: u64,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), ServerError>;
    /// The length a stored photo was uploaded with, if it is stored.
    fn photo_uploaded_bytes(&self, sha256: &str) -> Result<Option<u64>, ServerError>;

    fn add_api_key(&self, key: &open311::NewApiKey) -> Result<(), ServerError>;
    /// The id of the key with this hash, unless it was revoked.
    fn api_key(&self, key_hash: &str) -> Result<Option<String>, ServerError>;
    /// Every API key, oldest first.
    fn api_keys(&self) -> Result<Vec<open311::ApiKeyRecord>, ServerError>;
    /// Revokes a key; false if there is no such key.
    fn revoke_api_key(&self, key_id: &str, now_ms: i64) -> Result<bool, ServerError>;
    /// Takes in a request posted over Open311 ([`open311::post`]).
    fn post_request(&self, post: open311::Post) -> Result<open311::Posted, ServerError>;
    /// The public number of the request a `batch` post's token stands for.
    fn token_request(&self, token: &str) -> Result<Option<String>, ServerError>;
    /// Every request received within `from_ms..=to_ms` (at most `limit`, oldest first), as
    /// the standards report counts them.
    fn standard_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<open311::StandardRow>, ServerError>;
    /// The public requests a `GET requests` finds, with their changes.
    fn find_requests(
        &self,
        query: &open311::RequestQuery,
        known: &open311::Known<'_>,
    ) -> Result<Vec<open311::FoundRequest>, ServerError>;

    /// Drops overwritten values and removals stamped before `horizon` that also arrived here
    /// at or before `arrived_by_ms`, and remembers how far that reached so older cursors resync
    /// in full. Returns how many changes went.
    fn compact(&self, horizon: Hlc, arrived_by_ms: i64) -> Result<usize, ServerError>;
}
