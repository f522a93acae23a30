//! What every SQLite database of ours shares: the `meta` key/value table and its keys (named
//! here, once), connection settings, and the migration ladder.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// A key of the `meta` table. The keys the core uses are named below; the server names its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(&'static str);

impl Key {
    pub const fn new(name: &'static str) -> Key {
        Key(name)
    }

    pub fn name(self) -> &'static str {
        self.0
    }

    /// This replica's id in the change log.
    pub const REPLICA_ID: Key = Key("replica_id");
    /// The last stamp this replica issued or saw.
    pub const HLC_LAST: Key = Key("hlc_last");
    /// The server's estimate of how wrong this device's clock is.
    pub const CLOCK_OFFSET: Key = Key("clock_offset_ms");
    /// Counts this replica's changes (their ids) and arrivals (their order).
    pub const CHANGE_COUNTER: Key = Key("change_counter");
    /// Bumped by every catalogue import, so every process drops its cached definitions.
    pub const CATALOG_GENERATION: Key = Key("catalog_generation");
    pub const CATALOG_IMPORTED_AT: Key = Key("catalog_imported_at");
    /// The device's registration with its sync server.
    pub const SYNC_SERVER: Key = Key("sync_server");
    pub const SYNC_TOKEN: Key = Key("sync_token");
    pub const SYNC_DEVICE_ID: Key = Key("sync_device_id");
    pub const SYNC_ROLE: Key = Key("sync_role");
    pub const SYNC_WARDS: Key = Key("sync_wards");
    /// Where the last pull ended.
    pub const SYNC_CURSOR: Key = Key("sync_cursor");
    /// Set while a full resync is paging through: the server must send this device's own
    /// changes too.
    pub const SYNC_FULL_PULL: Key = Key("sync_full_pull");
    /// News about the user's requests older than this (ms) is not news: set when a device
    /// with sent requests was upgraded to keep news (schema v7).
    pub const NEWS_FROM: Key = Key("news_from");
    /// When the last sync ended well (milliseconds since 1970).
    pub const SYNC_LAST_OK: Key = Key("sync_last_ok");
    /// How the last sync that failed ended: `{"at":…,"offline":…,"reason":…}`; removed by a
    /// sync that ends well.
    pub const SYNC_LAST_FAILURE: Key = Key("sync_last_failure");
}

pub fn get(conn: &Connection, key: Key) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key.0], |r| r.get(0))
        .optional()
}

/// The value of `key` read as a number; missing or unreadable is `default`.
pub fn get_num<T: std::str::FromStr>(
    conn: &Connection,
    key: Key,
    default: T,
) -> rusqlite::Result<T> {
    Ok(get(conn, key)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(default))
}

pub fn set(tx: &Transaction, key: Key, value: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key.0, value])?;
    Ok(())
}

pub fn remove(tx: &Transaction, key: Key) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM meta WHERE key = ?1")?
        .execute([key.0])?;
    Ok(())
}

/// Adds one to a counter and returns it.
pub fn increment(tx: &Transaction, key: Key) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1
         RETURNING CAST(value AS INTEGER)",
    )?
    .query_row([key.0], |r| r.get(0))
}

/// Keeps a connection's cached statements prepared between calls. Without the planner
/// stability guarantee, SQLite (built with STAT4) expires a cached statement each time its
/// bindings are cleared and parses it again on the next call.
pub fn keep_statements_prepared(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(64);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// One step of a migration ladder: moves the schema from its index to the next version.
pub type Step = fn(&Transaction) -> rusqlite::Result<()>;

/// Climbs `ladder` from `version` to its top, in the caller's transaction, and records the new
/// version. A fresh database climbs from 0, so a table's DDL is written once, in the step that
/// makes it. Returns the version reached.
pub fn climb(tx: &Transaction, version: u32, ladder: &[Step]) -> rusqlite::Result<u32> {
    for step in ladder.iter().skip(version as usize) {
        step(tx)?;
    }
    let top = ladder.len() as u32;
    if version < top {
        tx.execute_batch(&format!("PRAGMA user_version = {top}"))?;
    }
    Ok(top.max(version))
}
