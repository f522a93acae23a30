//! The change log and the merged state it implies, in the replica's SQLite file.
//!
//! Every change is kept (`sync_changes`); the merged state (`sync_registers`, `sync_members`)
//! is a function of the *set* of changes, so applying is idempotent, commutative and
//! associative: replicas that hold the same changes hold the same state, whatever the order,
//! duplication or delay of delivery. A batch is checked whole before any of it is applied.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use serde_json::Value;

use super::change::{kind_of, set_of, Change, ChangeError, Kind};
use super::clock::{Clock, Hlc};
use crate::error::{Error, Result};

/// The tables a replica needs for the change log (also run by the server on its own file).
///
/// Replica ids, request ids and field names are stored once and referred to by number, and a
/// change's id is `{replica}:{counter}`, kept as the counter: the bookkeeping of each change
/// is a few small integers and two stamps, less than the data it carries. Readers use the
/// `sync_change_rows` view, which puts the names back.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_replicas (n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sync_requests (n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sync_fields (n INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
-- seq: the order changes arrived here in (the server's cursor).
CREATE TABLE IF NOT EXISTS sync_changes (
    request  INTEGER NOT NULL,
    replica  INTEGER NOT NULL,
    counter  INTEGER NOT NULL,
    field    INTEGER NOT NULL,
    value    TEXT NOT NULL,
    hlc      INTEGER NOT NULL,
    replaced INTEGER,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (request, replica, counter)
) WITHOUT ROWID;
-- This replica's own changes the server has not yet acknowledged, in the order they were made.
-- A draft's stay here, unsent, until it is submitted.
CREATE TABLE IF NOT EXISTS sync_outbox (
    seq     INTEGER PRIMARY KEY,
    request INTEGER NOT NULL,
    replica INTEGER NOT NULL,
    counter INTEGER NOT NULL
);
CREATE VIEW IF NOT EXISTS sync_change_rows AS
    SELECT q.id AS request_id, r.id || ':' || c.counter AS id, f.name AS field, c.value AS value,
           c.hlc AS hlc, r.id AS replica, c.replaced AS replaced, c.seq AS seq,
           c.request AS request_n, c.replica AS replica_n, c.counter AS counter
    FROM sync_changes c
    JOIN sync_requests q ON q.n = c.request
    JOIN sync_replicas r ON r.n = c.replica
    JOIN sync_fields f ON f.n = c.field;";

/// The change log as schema versions up to 3 (client) kept it: what migrations start from.
pub const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_changes (
    request_id TEXT NOT NULL,
    id         TEXT NOT NULL,
    field      TEXT NOT NULL,
    value      TEXT NOT NULL,
    hlc        INTEGER NOT NULL,
    replica    TEXT NOT NULL,
    replaced   INTEGER,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (request_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_outbox (
    seq        INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    id         TEXT NOT NULL
);";

/// Moves a change log from [`SCHEMA_V3`] to [`SCHEMA`], keeping every change and the outbox:
/// the old tables step aside, [`SCHEMA`] makes the new ones, and the rows move across.
/// Ids are `{replica}:{counter}` by construction; one that is not keeps its place by arrival.
pub fn upgrade_from_v3() -> String {
    format!(
        "ALTER TABLE sync_changes RENAME TO sync_changes_v3;
ALTER TABLE sync_outbox RENAME TO sync_outbox_v3;
DROP INDEX IF EXISTS sync_changes_by_seq;
{SCHEMA}
INSERT INTO sync_replicas (id) SELECT DISTINCT replica FROM sync_changes_v3;
INSERT INTO sync_requests (id) SELECT DISTINCT request_id FROM sync_changes_v3;
INSERT INTO sync_fields (name) SELECT DISTINCT field FROM sync_changes_v3;
INSERT OR IGNORE INTO sync_changes
    SELECT q.n, r.n,
           CASE WHEN c.id = c.replica || ':' || CAST(substr(c.id, length(c.replica) + 2) AS INTEGER)
                THEN CAST(substr(c.id, length(c.replica) + 2) AS INTEGER) ELSE -c.seq END,
           f.n, c.value, c.hlc, c.replaced, c.seq
    FROM sync_changes_v3 c
    JOIN sync_requests q ON q.id = c.request_id
    JOIN sync_replicas r ON r.id = c.replica
    JOIN sync_fields f ON f.name = c.field;
INSERT INTO sync_outbox (seq, request, replica, counter)
    SELECT o.seq, c.request, c.replica, c.counter FROM sync_outbox_v3 o
    JOIN sync_requests q ON q.id = o.request_id
    JOIN sync_changes c ON c.request = q.n
    JOIN sync_replicas r ON r.n = c.replica AND r.id || ':' || c.counter = o.id;
DROP TABLE sync_changes_v3;
DROP TABLE sync_outbox_v3;"
    )
}

/// A change's place in `sync_changes`: request, replica and counter numbers.
type Key = (i64, i64, i64);

/// Numbers for replica ids, request ids and field names, remembered for one batch.
#[derive(Default)]
struct Names {
    requests: HashMap<String, i64>,
    replicas: HashMap<String, i64>,
    fields: HashMap<String, i64>,
    /// Requests numbered by this batch: the log held no change of them before it.
    new_requests: HashSet<String>,
}

impl Names {
    fn number(
        tx: &Transaction,
        cache: &mut HashMap<String, i64>,
        table: &str,
        column: &str,
        name: &str,
    ) -> Result<(i64, bool)> {
        if let Some(n) = cache.get(name) {
            return Ok((*n, false));
        }
        let found: Option<i64> = tx
            .prepare_cached(&format!("SELECT n FROM {table} WHERE {column} = ?1"))?
            .query_row([name], |r| r.get(0))
            .optional()?;
        let (n, new) = match found {
            Some(n) => (n, false),
            None => {
                tx.prepare_cached(&format!("INSERT INTO {table} ({column}) VALUES (?1)"))?
                    .execute([name])?;
                (tx.last_insert_rowid(), true)
            }
        };
        cache.insert(name.to_string(), n);
        Ok((n, new))
    }

    /// The numbers of a change's request, replica and field, and its counter.
    fn key(&mut self, tx: &Transaction, c: &Change) -> Result<(i64, i64, i64, i64)> {
        let counter = c
            .counter()
            .ok_or_else(|| Error::Sync(format!("change id {:?} is not replica:counter", c.id)))?;
        let (request, new) =
            Self::number(tx, &mut self.requests, "sync_requests", "id", &c.request_id)?;
        if new {
            self.new_requests.insert(c.request_id.clone());
        }
        Ok((
            request,
            Self::number(tx, &mut self.replicas, "sync_replicas", "id", &c.replica)?.0,
            counter as i64,
            Self::number(tx, &mut self.fields, "sync_fields", "name", &c.field)?.0,
        ))
    }
}

/// The number of a request id, if the log holds any change of it.
fn request_number(conn: &Connection, request_id: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT n FROM sync_requests WHERE id = ?1")?
        .query_row([request_id], |r| r.get(0))
        .optional()?)
}

/// Whether the log holds a change of `request_id` (of `field`, if given).
pub fn holds(conn: &Connection, request_id: &str, field: Option<&str>) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sync_change_rows
                            WHERE request_id = ?1 AND (?2 IS NULL OR field = ?2))",
        )?
        .query_row(params![request_id, field], |r| r.get(0))?)
}

/// Forgets a request that never left this replica: its changes and its queue entries.
pub fn forget(tx: &Transaction, request_id: &str) -> Result<()> {
    if let Some(n) = request_number(tx, request_id)? {
        tx.prepare_cached("DELETE FROM sync_changes WHERE request = ?1")?
            .execute([n])?;
        tx.prepare_cached("DELETE FROM sync_outbox WHERE request = ?1")?
            .execute([n])?;
    }
    Ok(())
}

/// Drops a request's changes the server has not acknowledged (it refused them).
pub fn drop_unsent(tx: &Transaction, request_id: &str) -> Result<()> {
    if let Some(n) = request_number(tx, request_id)? {
        tx.execute(
            "DELETE FROM sync_changes WHERE (request, replica, counter) IN
                 (SELECT request, replica, counter FROM sync_outbox WHERE request = ?1)",
            [n],
        )?;
        tx.execute("DELETE FROM sync_outbox WHERE request = ?1", [n])?;
    }
    Ok(())
}

/// Drops every change the server holds, keeping the unsent ones: before a full resync.
pub fn drop_sent(tx: &Transaction) -> Result<()> {
    tx.execute(
        "DELETE FROM sync_changes WHERE (request, replica, counter) NOT IN
             (SELECT request, replica, counter FROM sync_outbox)",
        [],
    )?;
    Ok(())
}

/// The columns every reader selects, in this order, for [`change_from_row`].
pub(crate) const CHANGE_COLUMNS: &str = "id, request_id, field, value, hlc, replica, replaced";

pub(crate) fn change_from_row(r: &rusqlite::Row) -> rusqlite::Result<Change> {
    let value: String = r.get(3)?;
    Ok(Change {
        id: r.get(0)?,
        request_id: r.get(1)?,
        field: r.get(2)?,
        value: serde_json::from_str(&value).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        hlc: Hlc(r.get::<_, i64>(4)? as u64),
        replica: r.get(5)?,
        replaced: r.get::<_, Option<i64>>(6)?.map(|h| Hlc(h as u64)),
    })
}

/// Changes that arrived after `after_seq`, in arrival order, for one request id filter.
/// Needs an index on `seq` to be fast (the server has one).
pub fn changes_since(
    conn: &Connection,
    after_seq: u64,
    limit: usize,
    mut keep: impl FnMut(&Change) -> bool,
) -> Result<(Vec<Change>, u64, bool)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHANGE_COLUMNS}, seq FROM sync_change_rows WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    // A page scans at most this many rows, kept or not, so a device that may see little
    // of the log still gets an answer (and a cursor further on) in bounded time.
    let scan = (limit as i64).saturating_mul(4).max(64);
    let mut rows = stmt.query(params![after_seq as i64, scan])?;
    let mut out = Vec::new();
    let (mut cursor, mut scanned) = (after_seq, 0);
    while let Some(r) = rows.next()? {
        if out.len() == limit {
            return Ok((out, cursor, true));
        }
        scanned += 1;
        let change = change_from_row(r)?;
        cursor = r.get::<_, i64>(7)? as u64;
        if keep(&change) {
            out.push(change);
        }
    }
    Ok((out, cursor, scanned == scan))
}

/// Stamps further ahead of the receiver's clock than this are refused: a phone whose clock
/// runs days ahead must not win every race.
pub const MAX_AHEAD_MS: u64 = 5 * 60 * 1000;

pub(crate) fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub(crate) fn set_meta(tx: &Transaction, key: &str, value: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// This replica's id, made once (random) and kept.
pub fn replica_id(tx: &Transaction) -> Result<String> {
    if let Some(id) = meta(tx, "replica_id")? {
        return Ok(id);
    }
    // The random tail of a UUIDv7: 64 bits, enough to never meet another replica.
    let id = uuid::Uuid::now_v7().simple().to_string()[16..].to_string();
    set_meta(tx, "replica_id", &id)?;
    Ok(id)
}

pub fn clock(conn: &Connection) -> Result<Clock> {
    let last = meta(conn, "hlc_last")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let offset = meta(conn, "clock_offset_ms")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Clock::new(Hlc(last), offset))
}

fn save_clock(tx: &Transaction, clock: &Clock) -> Result<()> {
    set_meta(tx, "hlc_last", &clock.last.0.to_string())
}

/// A local edit: stamps it, notes which value it replaces, and logs it, in the caller's
/// transaction (the same one that changes the app's own tables).
pub fn local_change(
    tx: &Transaction,
    request_id: &str,
    field: &str,
    value: Value,
    now_ms: i64,
) -> Result<Change> {
    Ok(local_changes(tx, request_id, vec![(field.to_string(), value)], now_ms)?.remove(0))
}

/// Several local edits of one request, stamped in order, with one clock update, and queued
/// for the server.
pub fn local_changes(
    tx: &Transaction,
    request_id: &str,
    edits: Vec<(String, Value)>,
    now_ms: i64,
) -> Result<Vec<Change>> {
    let changes = stamp_changes(tx, request_id, edits, now_ms)?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO sync_outbox (request, replica, counter)
         SELECT request_n, replica_n, counter FROM sync_change_rows
         WHERE request_id = ?1 AND replica = ?2 AND counter = ?3",
    )?;
    for c in &changes {
        stmt.execute(params![
            c.request_id,
            c.replica,
            c.counter().map(|n| n as i64)
        ])?;
    }
    Ok(changes)
}

/// Stamps and logs edits made by this replica, without queueing them: what the server does
/// with its own changes (it has no one to push them to).
pub fn stamp_changes(
    tx: &Transaction,
    request_id: &str,
    edits: Vec<(String, Value)>,
    now_ms: i64,
) -> Result<Vec<Change>> {
    let replica = replica_id(tx)?;
    let mut clock = clock(tx)?;
    let mut counter: u64 = meta(tx, "change_counter")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Only the stamps are needed to know what each edit replaces: no values are read.
    let logged: Vec<(String, Hlc, String)> = tx
        .prepare_cached("SELECT field, hlc, replica FROM sync_change_rows WHERE request_id = ?1")?
        .query_map([request_id], |r| {
            Ok((r.get(0)?, Hlc(r.get::<_, i64>(1)? as u64), r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut current: HashMap<String, (Hlc, String)> =
        winners(logged.iter().map(|(f, h, r)| (f.as_str(), *h, r.as_str())))
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    let mut out = Vec::with_capacity(edits.len());
    let mut names = Names::default();
    let mut stmt = tx.prepare_cached(INSERT)?;
    for (field, value) in edits {
        counter += 1;
        let replaced = match kind_of(&field) {
            Some(Kind::Register) => current.get(field.as_str()).map(|c| c.0),
            _ => None,
        };
        let change = Change {
            id: format!("{replica}:{counter}"),
            request_id: request_id.to_string(),
            field,
            value,
            hlc: clock.tick(now_ms),
            replica: replica.clone(),
            replaced,
        };
        change
            .check(now_ms.saturating_add(clock.offset_ms), MAX_AHEAD_MS)
            .map_err(sync_error)?;
        insert(tx, &mut stmt, &mut names, &change, counter)?;
        current.insert(change.field.clone(), (change.hlc, change.replica.clone()));
        out.push(change);
    }
    save_clock(tx, &clock)?;
    set_meta(tx, "change_counter", &counter.to_string())?;
    Ok(out)
}

fn sync_error(e: ChangeError) -> Error {
    Error::Sync(e.to_string())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub applied: usize,
    pub duplicates: usize,
}

/// Applies changes from other replicas: all or nothing. A change seen before is a no-op.
pub fn apply(tx: &Transaction, changes: &[Change], now_ms: i64) -> Result<ApplyReport> {
    Ok(apply_noting_new(tx, changes, now_ms)?.0)
}

/// [`apply`], also telling which requests the log held nothing of before: their state is
/// `changes` alone, which materialising then reads without a query.
pub(crate) fn apply_noting_new(
    tx: &Transaction,
    changes: &[Change],
    now_ms: i64,
) -> Result<(ApplyReport, HashSet<String>)> {
    let mut clock = clock(tx)?;
    let now = now_ms.saturating_add(clock.offset_ms);
    for c in changes {
        c.check(now, MAX_AHEAD_MS).map_err(sync_error)?;
    }
    let mut seq: u64 = meta(tx, "change_counter")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut report = ApplyReport::default();
    let mut names = Names::default();
    let mut stmt = tx.prepare_cached(INSERT)?;
    for c in changes {
        seq += 1;
        if insert(tx, &mut stmt, &mut names, c, seq)? {
            report.applied += 1;
        } else {
            report.duplicates += 1;
        }
        clock.observe(c.hlc, now_ms);
    }
    save_clock(tx, &clock)?;
    set_meta(tx, "change_counter", &seq.to_string())?;
    Ok((report, names.new_requests))
}

const INSERT: &str =
    "INSERT INTO sync_changes (request, replica, counter, field, value, hlc, replaced, seq)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (request, replica, counter) DO NOTHING";

/// Logs one change with the prepared [`INSERT`]; false when it was already there.
fn insert(
    tx: &Transaction,
    stmt: &mut rusqlite::CachedStatement,
    names: &mut Names,
    c: &Change,
    seq: u64,
) -> Result<bool> {
    let (request, replica, counter, field) = names.key(tx, c)?;
    let inserted = stmt.execute(params![
        request,
        replica,
        counter,
        field,
        c.value.to_string(),
        c.hlc.0 as i64,
        c.replaced.map(|h| h.0 as i64),
        seq as i64
    ])?;
    Ok(inserted == 1)
}

/// A request's changes in (stamp, replica, id) order.
pub fn load(conn: &Connection, request_id: &str) -> Result<Vec<Change>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHANGE_COLUMNS} FROM sync_change_rows WHERE request_id = ?1"
    ))?;
    let mut changes: Vec<Change> = stmt
        .query_map([request_id], change_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    changes.sort_by(|a, b| (a.hlc, &a.replica, &a.id).cmp(&(b.hlc, &b.replica, &b.id)));
    Ok(changes)
}

/// The change in force for each register and set-once field: the highest (stamp, replica)
/// for a register, the lowest for a set-once field, whatever the order of `stamps`.
fn winners<'a>(
    stamps: impl IntoIterator<Item = (&'a str, Hlc, &'a str)>,
) -> HashMap<&'a str, (Hlc, String)> {
    let mut out: HashMap<&str, (Hlc, String)> = HashMap::new();
    for (field, hlc, replica) in stamps {
        let newer = |cur: &(Hlc, String)| (hlc, replica) > (cur.0, cur.1.as_str());
        let take = match kind_of(field) {
            Some(Kind::Register) => out.get(field).is_none_or(newer),
            Some(Kind::Once) => out.get(field).is_none_or(|cur| !newer(cur)),
            _ => false,
        };
        if take {
            out.insert(field, (hlc, replica.to_string()));
        }
    }
    out
}

fn stamps(changes: &[Change]) -> impl Iterator<Item = (&str, Hlc, &str)> {
    changes
        .iter()
        .map(|c| (c.field.as_str(), c.hlc, c.replica.as_str()))
}

/// The merged values of a few fields of one request (registers and set-once fields), without
/// building the whole document: what the app's tables and the server's scope columns mirror.
pub fn current_values(
    conn: &Connection,
    request_id: &str,
    fields: &[&str],
) -> Result<HashMap<String, Value>> {
    // Filtering the fields here rather than in SQL keeps the statement one cached plan.
    let mut stmt = conn.prepare_cached(
        "SELECT field, value, hlc, replica FROM sync_change_rows WHERE request_id = ?1",
    )?;
    let rows: Vec<(String, String, Hlc, String)> = stmt
        .query_map([request_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                Hlc(r.get::<_, i64>(2)? as u64),
                r.get(3)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(in_force(
        rows.iter()
            .map(|(f, v, h, r)| (f.as_str(), *h, r.as_str(), v)),
        fields,
    )
    .filter_map(|(f, v)| Some((f.to_string(), serde_json::from_str(v).ok()?)))
    .collect())
}

/// The items of `fields` in force by the winner rule, among (field, stamp, replica, item)
/// rows of one request.
fn in_force<'a, T>(
    rows: impl IntoIterator<Item = (&'a str, Hlc, &'a str, T)>,
    fields: &[&str],
) -> impl Iterator<Item = (&'a str, T)> {
    let wanted: Vec<_> = rows
        .into_iter()
        .filter(|(f, _, _, _)| fields.contains(f))
        .collect();
    let winners = winners(wanted.iter().map(|(f, h, r, _)| (*f, *h, *r)));
    wanted.into_iter().filter_map(move |(f, h, r, item)| {
        winners
            .get(f)
            .is_some_and(|(wh, wr)| *wh == h && wr == r)
            .then_some((f, item))
    })
}

/// [`current_values`] of changes in memory, all of one request.
pub fn merged_values<'a>(
    changes: impl IntoIterator<Item = &'a Change>,
    fields: &[&str],
) -> HashMap<String, Value> {
    in_force(
        changes
            .into_iter()
            .map(|c| (c.field.as_str(), c.hlc, c.replica.as_str(), &c.value)),
        fields,
    )
    .map(|(f, v)| (f.to_string(), v.clone()))
    .collect()
}

/// One entry of a request's replicated history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryItem {
    pub change: Change,
    /// For registers: this value is the one in force.
    pub current: bool,
    /// Written without seeing a concurrent write of the same field: the merge picked one, a
    /// person should look at both.
    pub conflict: bool,
}

/// A request as every replica holding the same changes sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub request_id: String,
    /// Registers and set-once fields: field → value.
    pub fields: BTreeMap<String, Value>,
    /// Notes and photos in force (added, not removed), in stamp order.
    pub notes: Vec<Value>,
    pub photos: Vec<Value>,
    /// Every change, in (stamp, replica, id) order.
    pub history: Vec<HistoryItem>,
}

pub fn document(conn: &Connection, request_id: &str) -> Result<Document> {
    let changes = load(conn, request_id)?;
    let winners = winners(stamps(&changes));
    let mut fields = BTreeMap::new();
    for c in &changes {
        if winners.get(c.field.as_str()) == Some(&(c.hlc, c.replica.clone())) {
            fields.insert(c.field.clone(), c.value.clone());
        }
    }
    // Set members: in force when added and never removed; the earliest add gives the value.
    let removed: std::collections::HashSet<(&str, String)> = changes
        .iter()
        .filter(|c| kind_of(&c.field) == Some(Kind::Remove))
        .filter_map(|c| Some((set_of(&c.field)?, c.member()?)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let (mut notes, mut photos) = (Vec::new(), Vec::new());
    for c in changes
        .iter()
        .filter(|c| kind_of(&c.field) == Some(Kind::Add))
    {
        let (Some(set), Some(member)) = (set_of(&c.field), c.member()) else {
            continue;
        };
        if removed.contains(&(set, member.clone())) || !seen.insert((set, member)) {
            continue;
        }
        if set == "note" {
            &mut notes
        } else {
            &mut photos
        }
        .push(c.value.clone());
    }
    // Siblings: register writes of one field that replaced the same value. Decided from the
    // set of changes alone, so every replica flags the same ones.
    let mut siblings: HashMap<(&str, Option<Hlc>), usize> = HashMap::new();
    for c in changes
        .iter()
        .filter(|c| kind_of(&c.field) == Some(Kind::Register))
    {
        *siblings.entry((c.field.as_str(), c.replaced)).or_default() += 1;
    }
    let history = changes
        .iter()
        .map(|c| {
            let register = kind_of(&c.field) == Some(Kind::Register);
            HistoryItem {
                current: register
                    && winners.get(c.field.as_str()) == Some(&(c.hlc, c.replica.clone())),
                conflict: register && siblings[&(c.field.as_str(), c.replaced)] > 1,
                change: c.clone(),
            }
        })
        .collect();
    Ok(Document {
        request_id: request_id.to_string(),
        fields,
        notes,
        photos,
        history,
    })
}

/// Every change this replica holds, in arrival order (what a full exchange sends).
pub fn all_changes(conn: &Connection) -> Result<Vec<Change>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CHANGE_COLUMNS} FROM sync_change_rows ORDER BY seq"
    ))?;
    let rows = stmt.query_map([], change_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The ids of the requests this replica holds changes for.
pub fn request_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT id FROM sync_requests q WHERE EXISTS (SELECT 1 FROM sync_changes c WHERE c.request = q.n) ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Forgets queued changes the server has acknowledged.
pub fn acknowledge(tx: &Transaction, changes: &[(String, String)]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "DELETE FROM sync_outbox WHERE (request, replica, counter) =
             (SELECT request_n, replica_n, counter FROM sync_change_rows
              WHERE request_id = ?1 AND id = ?2)",
    )?;
    for (request_id, id) in changes {
        stmt.execute(params![request_id, id])?;
    }
    Ok(())
}

/// Takes the server's estimate of this device's clock error and moves every change not yet
/// sent by the correction, so a clock that ran a day ahead (or behind) does not win (or lose)
/// every race. Stamps stay increasing, later than everything already sent or received, and
/// references between unsent changes follow. Returns how many changes were re-stamped.
pub fn set_clock_offset(tx: &Transaction, offset_ms: i64) -> Result<usize> {
    let old = clock(tx)?;
    set_meta(tx, "clock_offset_ms", &offset_ms.to_string())?;
    let delta = offset_ms.saturating_sub(old.offset_ms);
    if delta == 0 {
        return Ok(0);
    }
    let base: i64 = tx.query_row(
        "SELECT COALESCE(MAX(hlc), 0) FROM sync_changes
         WHERE (request, replica, counter) NOT IN (SELECT request, replica, counter FROM sync_outbox)",
        [],
        |r| r.get(0),
    )?;
    let unsent: Vec<(Key, i64, Option<i64>)> = tx
        .prepare(
            "SELECT c.request, c.replica, c.counter, c.hlc, c.replaced FROM sync_outbox o
             JOIN sync_changes c USING (request, replica, counter) ORDER BY o.seq",
        )?
        .query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stamps = Clock::new(Hlc(base as u64), 0);
    let mut moved: HashMap<i64, i64> = HashMap::new();
    let mut update = tx.prepare_cached(
        "UPDATE sync_changes SET hlc = ?4, replaced = ?5
         WHERE request = ?1 AND replica = ?2 AND counter = ?3",
    )?;
    for (key, hlc, replaced) in &unsent {
        let target = (Hlc(*hlc as u64).ms() as i64).saturating_add(delta);
        let new = stamps.tick(target).0 as i64;
        moved.insert(*hlc, new);
        let replaced = replaced.map(|r| moved.get(&r).copied().unwrap_or(r));
        update.execute(params![key.0, key.1, key.2, new, replaced])?;
    }
    // The clock restarts from what others have seen, not from the wrong stamps it issued.
    save_clock(tx, &Clock::new(stamps.last, offset_ms))?;
    Ok(unsent.len())
}

/// Drops what no replica needs once a retention period has passed: register values that were
/// overwritten, and notes and photos that were removed (with their removals, the tombstones),
/// where the overwrite or removal is stamped before `horizon`. The merged state is unchanged.
/// Returns how many changes went and the highest arrival number among them: a replica whose
/// cursor is older may have missed a removal, so it must resync in full.
pub fn compact(tx: &Transaction, horizon: Hlc) -> Result<(usize, u64)> {
    let ids: Vec<String> = tx
        .prepare("SELECT DISTINCT request_id FROM sync_change_rows WHERE hlc < ?1")?
        .query_map([horizon.0 as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let (mut deleted, mut max_seq) = (0usize, 0u64);
    let mut select = tx.prepare_cached(&format!(
        "SELECT {CHANGE_COLUMNS}, seq FROM sync_change_rows WHERE request_id = ?1"
    ))?;
    let mut delete = tx.prepare_cached(
        "DELETE FROM sync_changes WHERE (request, replica, counter) =
             (SELECT request_n, replica_n, counter FROM sync_change_rows
              WHERE request_id = ?1 AND id = ?2)",
    )?;
    for id in ids {
        let rows: Vec<(Change, u64)> = select
            .query_map([&id], |r| {
                Ok((change_from_row(r)?, r.get::<_, i64>(7)? as u64))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let changes: Vec<Change> = rows.iter().map(|(c, _)| c.clone()).collect();
        let winners = winners(stamps(&changes));
        let mut removed: HashMap<(&str, String), Hlc> = HashMap::new();
        for c in changes
            .iter()
            .filter(|c| kind_of(&c.field) == Some(Kind::Remove))
        {
            if let (Some(set), Some(member)) = (set_of(&c.field), c.member()) {
                let at = removed.entry((set, member)).or_insert(c.hlc);
                *at = (*at).max(c.hlc);
            }
        }
        for (c, seq) in &rows {
            let gone = match kind_of(&c.field) {
                Some(Kind::Register | Kind::Once) => {
                    winners.get(c.field.as_str()).is_some_and(|w| {
                        (w.0, w.1.as_str()) != (c.hlc, c.replica.as_str()) && w.0 < horizon
                    })
                }
                Some(Kind::Add | Kind::Remove) => set_of(&c.field)
                    .zip(c.member())
                    .and_then(|key| removed.get(&key))
                    .is_some_and(|at| *at < horizon),
                None => false,
            };
            if gone {
                delete.execute(params![c.request_id, c.id])?;
                deleted += 1;
                max_seq = max_seq.max(*seq);
            }
        }
    }
    Ok((deleted, max_seq))
}
