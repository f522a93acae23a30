//! The change log in a replica's SQLite file (a device's store or the server's): every change
//! kept, numbered names, this replica's clock and counter, and the outbox of its own changes the
//! server has not acknowledged. The merged state is computed from it by [`super::merge`].
//!
//! Writes here are reached through their owners: on a device only `request` logs changes of a
//! request (so no edit can skip its change); the server applies what devices push.

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use super::change::{Change, Columns, StoredChange};
use super::clock::{Clock, Hlc};
use super::merge::{self, Document, Kind};
use crate::error::{Error, Result};
use crate::sql::{self, Key};
use crate::vocab::{ChangeId, Entropy, Field, FieldValue, ReplicaId, RequestId};

/// Stamps further ahead of the receiver's clock than this are refused: a phone whose clock runs
/// days ahead must not win every race.
pub const MAX_AHEAD_MS: u64 = 5 * 60 * 1000;

/// A change's place in `sync_changes`: request, replica and counter numbers.
type Key3 = (i64, i64, i64);

/// Numbers for replica ids, request ids and field names, remembered for one batch.
#[derive(Default)]
struct Names {
    requests: HashMap<RequestId, i64>,
    replicas: HashMap<ReplicaId, i64>,
    fields: HashMap<Field, i64>,
    fields_loaded: bool,
    /// Requests numbered by this batch: the log held no change of them before it.
    new_requests: HashSet<RequestId>,
}

fn number(tx: &Transaction, table: &str, column: &str, name: &str) -> Result<(i64, bool)> {
    let found: Option<i64> = tx
        .prepare_cached(&format!("SELECT n FROM {table} WHERE {column} = ?1"))?
        .query_row([name], |r| r.get(0))
        .optional()?;
    Ok(match found {
        Some(n) => (n, false),
        None => {
            tx.prepare_cached(&format!("INSERT INTO {table} ({column}) VALUES (?1)"))?
                .execute([name])?;
            (tx.last_insert_rowid(), true)
        }
    })
}

impl Names {
    fn request(&mut self, tx: &Transaction, id: &RequestId) -> Result<i64> {
        if let Some(n) = self.requests.get(id) {
            return Ok(*n);
        }
        let (n, new) = number(tx, "sync_requests", "id", &id.to_string())?;
        if new {
            self.new_requests.insert(*id);
        }
        self.requests.insert(*id, n);
        Ok(n)
    }

    fn replica(&mut self, tx: &Transaction, id: &ReplicaId) -> Result<i64> {
        if let Some(n) = self.replicas.get(id) {
            return Ok(*n);
        }
        let n = number(tx, "sync_replicas", "id", id.as_str())?.0;
        self.replicas.insert(id.clone(), n);
        Ok(n)
    }

    fn field(&mut self, tx: &Transaction, field: Field) -> Result<i64> {
        if let Some(n) = self.fields.get(&field) {
            return Ok(*n);
        }
        // Fields are few: one read learns them all.
        if !self.fields_loaded {
            self.fields_loaded = true;
            let mut stmt = tx.prepare_cached("SELECT n, name FROM sync_fields")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                if let Some(f) = Field::parse(r.get_ref(1)?.as_str().map_err(stored)?) {
                    self.fields.insert(f, r.get(0)?);
                }
            }
            if let Some(n) = self.fields.get(&field) {
                return Ok(*n);
            }
        }
        let n = number(tx, "sync_fields", "name", &field.name())?.0;
        self.fields.insert(field, n);
        Ok(n)
    }

    fn key(&mut self, tx: &Transaction, c: &Change) -> Result<(Key3, i64)> {
        Ok((
            (
                self.request(tx, &c.request_id)?,
                self.replica(tx, c.replica())?,
                c.id.counter as i64,
            ),
            self.field(tx, c.field())?,
        ))
    }
}

/// The number of a request id, if the log holds any change of it.
fn request_number(conn: &Connection, id: &RequestId) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT n FROM sync_requests WHERE id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?)
}

/// This replica's id.
pub fn replica_id(conn: &Connection) -> Result<ReplicaId> {
    stored_replica(sql::get(conn, Key::REPLICA_ID)?)
}

fn stored_replica(id: Option<String>) -> Result<ReplicaId> {
    id.as_deref()
        .and_then(ReplicaId::parse)
        .ok_or(Error::Stored {
            what: "the replica id",
            detail: "missing or unreadable".into(),
        })
}

/// Makes this replica's id once (random) and keeps it.
pub fn init_replica(tx: &Transaction, entropy: &dyn Entropy) -> Result<ReplicaId> {
    if let Some(id) = sql::get(tx, Key::REPLICA_ID)?.and_then(|id| ReplicaId::parse(&id)) {
        return Ok(id);
    }
    let id = ReplicaId::random(entropy);
    sql::set(tx, Key::REPLICA_ID, id.as_str())?;
    Ok(id)
}

/// This replica's clock: its offset and the last stamp it issued or saw.
pub fn clock(conn: &Connection) -> Result<Clock> {
    Ok(local(conn)?.clock)
}

fn save_clock(tx: &Transaction, clock: &Clock) -> Result<()> {
    Ok(sql::set(tx, Key::HLC_LAST, &clock.last.0.to_string())?)
}

/// What a replica needs to make changes: its id, clock and counter.
struct Local {
    replica: ReplicaId,
    clock: Clock,
    counter: u64,
}

/// Replica id, last stamp, clock offset and counter in `meta`; counter and stamp of the
/// outbox's last row.
type LocalRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// [`Local`] in one read: recording an edit is on every write path. The counter and the last
/// stamp are in `meta`, or later in the outbox's last row: an edit queued for the server needs
/// no other write to remember them ([`remember_local`] moves them to `meta` before outbox rows
/// go).
fn local(conn: &Connection) -> Result<Local> {
    let (replica, last, offset, counter, queued_counter, queued_hlc): LocalRow = conn
        .prepare_cached(
            "SELECT (SELECT value FROM meta WHERE key = ?1), (SELECT value FROM meta WHERE key = ?2),
                    (SELECT value FROM meta WHERE key = ?3), (SELECT value FROM meta WHERE key = ?4),
                    o.counter, c.hlc
             FROM (SELECT 1) LEFT JOIN
                  (SELECT * FROM sync_outbox WHERE counter > 0 ORDER BY counter DESC LIMIT 1) o
             LEFT JOIN sync_changes c
               ON c.request = o.request AND c.replica = o.replica AND c.counter = o.counter",
        )?
        .query_row(
            [
                Key::REPLICA_ID.name(),
                Key::HLC_LAST.name(),
                Key::CLOCK_OFFSET.name(),
                Key::CHANGE_COUNTER.name(),
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?;
    let num = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let offset = offset.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let last = num(last).max(queued_hlc.unwrap_or(0) as u64);
    let counter = num(counter).max(queued_counter.unwrap_or(0) as u64);
    Ok(Local {
        replica: stored_replica(replica)?,
        clock: Clock::new(Hlc(last), offset),
        counter,
    })
}

/// Moves the counter and the last stamp into `meta` before outbox rows are removed.
fn remember_local(tx: &Transaction) -> Result<()> {
    let l = local(tx)?;
    save_local(tx, &l.clock, l.counter)
}

/// Saves the clock and the counter in one write.
fn save_local(tx: &Transaction, clock: &Clock, counter: u64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2), (?3, ?4)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![
        Key::HLC_LAST.name(),
        clock.last.0.to_string(),
        Key::CHANGE_COUNTER.name(),
        counter.to_string()
    ])?;
    Ok(())
}

const INSERT: &str =
    "INSERT INTO sync_changes (request, replica, counter, field, value, hlc, replaced, seq)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (request, replica, counter) DO NOTHING";

/// Logs one change with the prepared [`INSERT`]; false when it was already there.
fn insert(
    stmt: &mut rusqlite::CachedStatement,
    key: Key3,
    field: i64,
    c: &Change,
    seq: u64,
) -> Result<bool> {
    let inserted = stmt.execute(params![
        key.0,
        key.1,
        key.2,
        field,
        c.value.to_json_text(),
        c.hlc.0 as i64,
        c.replaced.map(|h| h.0 as i64),
        seq as i64
    ])?;
    Ok(inserted == 1)
}

/// Rows one multi-row INSERT of a local edit carries at most.
const ROWS_PER_INSERT: usize = 16;

/// `{head} VALUES (?, …), …`: `rows` rows of `columns` parameters.
fn rows_sql(head: &str, columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!("{head} VALUES {}", vec![row; rows].join(", "))
}

/// Where a replica's own new changes go besides the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbox {
    /// Into the outbox, for the server (a caller may hold some back: see [`pending`]).
    Queued,
    /// Nowhere: the server's own changes (it has no one to push them to).
    None,
}

/// Stamps edits this replica makes to one request, notes which value each replaces, and logs
/// them in the caller's transaction.
pub fn record(
    tx: &Transaction,
    request_id: RequestId,
    values: Vec<FieldValue>,
    now_ms: i64,
    outbox: Outbox,
) -> Result<Vec<Change>> {
    let Local {
        replica,
        mut clock,
        mut counter,
    } = local(tx)?;
    let mut names = Names::default();
    // A creation is the first change of its request: number it without looking first.
    let request_n = if matches!(values.first(), Some(FieldValue::Create(_))) {
        let fresh: Option<i64> = tx
            .prepare_cached(
                "INSERT INTO sync_requests (id) VALUES (?1) ON CONFLICT (id) DO NOTHING RETURNING n",
            )?
            .query_row([request_id.to_string()], |r| r.get(0))
            .optional()?;
        match fresh {
            Some(n) => {
                names.requests.insert(request_id, n);
                names.new_requests.insert(request_id);
                n
            }
            None => names.request(tx, &request_id)?,
        }
    } else {
        names.request(tx, &request_id)?
    };
    let replica_n = names.replica(tx, &replica)?;
    // Only the stamps are needed to know what each edit replaces: no values are read.
    let logged: Vec<(String, Hlc, String)> = if names.new_requests.is_empty() {
        tx.prepare_cached("SELECT field, hlc, replica FROM sync_change_rows WHERE request_n = ?1")?
            .query_map([request_n], |r| {
                Ok((r.get(0)?, Hlc(r.get::<_, i64>(1)? as u64), r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    let logged: Vec<(Field, Hlc, ReplicaId)> = logged
        .into_iter()
        .filter_map(|(f, h, r)| Some((Field::parse(&f)?, h, ReplicaId::parse(&r)?)))
        .collect();
    let mut current: HashMap<Field, (Hlc, ReplicaId)> =
        merge::winners(logged.iter().map(|(f, h, r)| (f, *h, r)))
            .into_iter()
            .map(|(f, (h, r))| (f.clone(), (h, r.clone())))
            .collect();
    let mut out = Vec::with_capacity(values.len());
    let mut fields = Vec::with_capacity(values.len());
    for value in values {
        counter += 1;
        let field = value.field();
        let replaced = match merge::kind(&field) {
            Kind::Register => current.get(&field).map(|c| c.0),
            _ => None,
        };
        let change = Change {
            id: ChangeId {
                replica: replica.clone(),
                counter,
            },
            request_id,
            value,
            hlc: clock.tick(now_ms),
            replaced,
        };
        fields.push(names.field(tx, field.clone())?);
        current.insert(field, (change.hlc, replica.clone()));
        out.push(change);
    }
    // One statement per table for the whole edit: an edit is on every write path.
    for (changes, fields) in out
        .chunks(ROWS_PER_INSERT)
        .zip(fields.chunks(ROWS_PER_INSERT))
    {
        let mut values = Vec::with_capacity(changes.len() * 8);
        for (c, field) in changes.iter().zip(fields) {
            values.extend([
                Sql::Integer(request_n),
                Sql::Integer(replica_n),
                Sql::Integer(c.id.counter as i64),
                Sql::Integer(*field),
                Sql::Text(c.value.to_json_text()),
                Sql::Integer(c.hlc.0 as i64),
                c.replaced.map_or(Sql::Null, |h| Sql::Integer(h.0 as i64)),
                Sql::Integer(c.id.counter as i64),
            ]);
        }
        tx.prepare_cached(&rows_sql(
            "INSERT INTO sync_changes (request, replica, counter, field, value, hlc, replaced, seq)",
            8,
            changes.len(),
        ))?
        .execute(params_from_iter(values))?;
        if outbox == Outbox::Queued {
            let queued = changes.iter().flat_map(|c| {
                [
                    Sql::Integer(c.id.counter as i64),
                    Sql::Integer(request_n),
                    Sql::Integer(replica_n),
                ]
            });
            tx.prepare_cached(&rows_sql(
                "INSERT INTO sync_outbox (counter, request, replica)",
                3,
                changes.len(),
            ))?
            .execute(params_from_iter(queued))?;
        }
    }
    // Queued, the last change is the outbox's last row, which remembers the clock and counter.
    if outbox == Outbox::None || out.is_empty() {
        save_local(tx, &clock, counter)?;
    }
    Ok(out)
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
pub fn apply_noting_new(
    tx: &Transaction,
    changes: &[Change],
    now_ms: i64,
) -> Result<(ApplyReport, HashSet<RequestId>)> {
    let Local {
        mut clock,
        counter: mut seq,
        ..
    } = local(tx)?;
    let now = now_ms.saturating_add(clock.offset_ms);
    for c in changes {
        c.check_stamp(now, MAX_AHEAD_MS)?;
    }
    let mut report = ApplyReport::default();
    let mut names = Names::default();
    let mut stmt = tx.prepare_cached(INSERT)?;
    for c in changes {
        seq += 1;
        let (key, field) = names.key(tx, c)?;
        if insert(&mut stmt, key, field, c, seq)? {
            report.applied += 1;
        } else {
            report.duplicates += 1;
        }
        clock.observe(c.hlc, now_ms);
    }
    save_local(tx, &clock, seq)?;
    Ok((report, names.new_requests))
}

/// The columns every reader selects, in this order, for [`change_from_row`].
const CHANGE_COLUMNS: &str = "request_id, replica, counter, field, value, hlc, replaced";

fn stored(detail: impl ToString) -> Error {
    Error::Stored {
        what: "a logged change",
        detail: detail.to_string(),
    }
}

/// A row of the log ([`CHANGE_COLUMNS`]) as its columns, the value still the text stored.
fn columns<'r>(r: &'r rusqlite::Row) -> Result<Columns<'r>> {
    Ok(Columns {
        request_id: r.get_ref(0)?.as_str().map_err(stored)?,
        replica: r.get_ref(1)?.as_str().map_err(stored)?,
        counter: r.get(2)?,
        field: r.get_ref(3)?.as_str().map_err(stored)?,
        value: r.get_ref(4)?.as_str().map_err(stored)?,
        hlc: r.get(5)?,
        replaced: r.get(6)?,
    })
}

/// A change read back from the log, its value decoded.
fn change_from_row(r: &rusqlite::Row) -> Result<Change> {
    columns(r)?.change()
}

/// A change read back as stored: its value is not decoded again.
fn stored_from_row(r: &rusqlite::Row) -> Result<StoredChange> {
    columns(r)?.stored()
}

/// A request's changes in (stamp, replica, counter) order.
pub fn load(conn: &Connection, request_id: &RequestId) -> Result<Vec<Change>> {
    load_where(conn, request_id, |_| true)
}

/// The changes of a few fields of one request, in (stamp, replica, counter) order. Only those
/// fields are decoded.
pub fn load_fields(
    conn: &Connection,
    request_id: &RequestId,
    fields: &[Field],
) -> Result<Vec<Change>> {
    let names: Vec<String> = fields.iter().map(|f| f.name().into_owned()).collect();
    load_where(conn, request_id, |field| names.iter().any(|n| n == field))
}

/// The changes of one request whose field name `wanted` keeps, decoded and sorted. Filtering
/// here rather than in SQL keeps the statement one cached plan.
fn load_where(
    conn: &Connection,
    request_id: &RequestId,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<Change>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHANGE_COLUMNS} FROM sync_change_rows WHERE request_id = ?1"
    ))?;
    let mut rows = stmt.query([request_id.to_string()])?;
    let mut changes = Vec::new();
    while let Some(r) = rows.next()? {
        if wanted(r.get_ref(3)?.as_str().map_err(stored)?) {
            changes.push(change_from_row(r)?);
        }
    }
    merge::sort(&mut changes);
    Ok(changes)
}

/// The values in force of a few fields of one request, without building the whole document:
/// what the app's tables and the server's scope columns mirror.
pub fn current(
    conn: &Connection,
    request_id: &RequestId,
    fields: &[Field],
) -> Result<HashMap<Field, FieldValue>> {
    Ok(merge::current(
        &load_fields(conn, request_id, fields)?,
        fields,
    ))
}

/// The request as every replica holding the same changes sees it.
pub fn document(conn: &Connection, request_id: &RequestId) -> Result<Document> {
    Ok(merge::document(*request_id, load(conn, request_id)?))
}

/// Every change this replica holds, in arrival order (what a full exchange sends).
pub fn all_changes(conn: &Connection) -> Result<Vec<Change>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CHANGE_COLUMNS} FROM sync_change_rows ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(change_from_row(r)?);
    }
    Ok(out)
}

/// The ids of the requests this replica holds changes for.
pub fn request_ids(conn: &Connection) -> Result<Vec<RequestId>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM sync_requests q
         WHERE EXISTS (SELECT 1 FROM sync_changes c WHERE c.request = q.n) ORDER BY id",
    )?;
    let ids: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ids.iter()
        .map(|id| RequestId::parse(id).map_err(stored))
        .collect()
}

/// Whether the log holds a change of `request_id` (of `field`, if given).
pub fn holds(conn: &Connection, request_id: &RequestId, field: Option<&Field>) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sync_change_rows
                            WHERE request_id = ?1 AND (?2 IS NULL OR field = ?2))",
        )?
        .query_row(
            params![request_id.to_string(), field.map(|f| f.name())],
            |r| r.get(0),
        )?)
}

/// Forgets a request that never left this replica: its changes and its queue entries.
pub fn forget(tx: &Transaction, request_id: &RequestId) -> Result<()> {
    if let Some(n) = request_number(tx, request_id)? {
        remember_local(tx)?;
        tx.prepare_cached("DELETE FROM sync_changes WHERE request = ?1")?
            .execute([n])?;
        tx.prepare_cached("DELETE FROM sync_outbox WHERE request = ?1")?
            .execute([n])?;
    }
    Ok(())
}

/// Drops a request's changes the server has not acknowledged (it refused them).
pub fn drop_unsent(tx: &Transaction, request_id: &RequestId) -> Result<()> {
    if let Some(n) = request_number(tx, request_id)? {
        remember_local(tx)?;
        tx.execute(
            "DELETE FROM sync_changes WHERE (request, replica, counter) IN
                 (SELECT request, replica, counter FROM sync_outbox WHERE request = ?1)",
            [n],
        )?;
        tx.execute("DELETE FROM sync_outbox WHERE request = ?1", [n])?;
    }
    Ok(())
}

/// Drops every change the server holds, keeping the unsent ones (the outbox): before a full
/// resync.
pub fn drop_sent(tx: &Transaction) -> Result<()> {
    tx.execute(
        "DELETE FROM sync_changes WHERE NOT EXISTS (SELECT 1 FROM sync_outbox o
             WHERE o.request = sync_changes.request AND o.replica = sync_changes.replica
               AND o.counter = sync_changes.counter)",
        [],
    )?;
    Ok(())
}

/// The next changes to push, oldest first, at most `limit`, leaving out those of requests
/// `held` holds back (a device's drafts: their changes wait in the outbox until submitted).
pub fn pending(
    conn: &Connection,
    limit: usize,
    mut held: impl FnMut(&RequestId) -> Result<bool>,
) -> Result<Vec<Change>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.request_id, c.replica, c.counter, c.field, c.value, c.hlc, c.replaced
         FROM sync_outbox o JOIN sync_change_rows c
           ON c.request_n = o.request AND c.replica_n = o.replica AND c.counter = o.counter
         ORDER BY o.counter",
    )?;
    let mut rows = stmt.query([])?;
    let mut verdicts: HashMap<RequestId, bool> = HashMap::new();
    let mut changes = Vec::new();
    while changes.len() < limit {
        let Some(r) = rows.next()? else { break };
        let change = change_from_row(r)?;
        let held = match verdicts.get(&change.request_id) {
            Some(h) => *h,
            None => {
                let h = held(&change.request_id)?;
                verdicts.insert(change.request_id, h);
                h
            }
        };
        if !held {
            changes.push(change);
        }
    }
    Ok(changes)
}

/// How many changes wait to be pushed, those `held` holds back not counted.
pub fn pending_count(
    conn: &Connection,
    mut held: impl FnMut(&RequestId) -> Result<bool>,
) -> Result<u64> {
    let mut stmt = conn.prepare_cached(
        "SELECT q.id, count(*) FROM sync_outbox o JOIN sync_requests q ON q.n = o.request
         GROUP BY o.request",
    )?;
    let mut rows = stmt.query([])?;
    let mut total = 0;
    while let Some(r) = rows.next()? {
        let id = RequestId::parse(r.get_ref(0)?.as_str().map_err(stored)?).map_err(stored)?;
        if !held(&id)? {
            total += r.get::<_, i64>(1)? as u64;
        }
    }
    Ok(total)
}

/// Forgets queued changes the server has acknowledged.
pub fn acknowledge(tx: &Transaction, changes: &[Change]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    remember_local(tx)?;
    each_queued(
        tx,
        changes,
        "DELETE FROM sync_outbox WHERE counter = ?3 AND request = ?1 AND replica = ?2",
    )
}

/// Marks queued changes as pushed: from now on the server may hold them, even if the answer
/// that would say so is lost.
pub fn mark_pushed(tx: &Transaction, changes: &[Change]) -> Result<()> {
    each_queued(
        tx,
        changes,
        "UPDATE sync_outbox SET pushed = 1 WHERE counter = ?3 AND request = ?1 AND replica = ?2",
    )
}

/// Runs `sql` on the outbox row of each change (`?1` request, `?2` replica, `?3` counter).
fn each_queued(tx: &Transaction, changes: &[Change], sql: &str) -> Result<()> {
    let mut names = Names::default();
    let mut stmt = tx.prepare_cached(sql)?;
    for c in changes {
        let (key, _) = names.key(tx, c)?;
        stmt.execute(params![key.0, key.1, key.2])?;
    }
    Ok(())
}

/// Takes the server's estimate of this device's clock error and moves the stamps of changes
/// not yet sent by the correction, so a clock that ran a day ahead (or behind) does not win (or
/// lose) every race. A change already pushed keeps its stamp — the server may hold it with that
/// stamp, its answer lost — unless `refused_at` (the server's time when it refused a push for
/// stamps ahead of it) shows the server could not have taken it. Moved stamps stay increasing,
/// later than everything kept, sent or received, and references between them follow. Returns
/// how many changes were re-stamped.
pub fn set_clock_offset(
    tx: &Transaction,
    offset_ms: i64,
    refused_at: Option<i64>,
) -> Result<usize> {
    let old = clock(tx)?;
    sql::set(tx, Key::CLOCK_OFFSET, &offset_ms.to_string())?;
    let delta = offset_ms.saturating_sub(old.offset_ms);
    if delta == 0 {
        return Ok(0);
    }
    let sent: i64 = tx.query_row(
        "SELECT COALESCE(MAX(hlc), 0) FROM sync_changes
         WHERE NOT EXISTS (SELECT 1 FROM sync_outbox o WHERE o.request = sync_changes.request
                             AND o.replica = sync_changes.replica AND o.counter = sync_changes.counter)",
        [],
        |r| r.get(0),
    )?;
    let queued: Vec<(Key3, i64, Option<i64>, bool)> = tx
        .prepare(
            "SELECT c.request, c.replica, c.counter, c.hlc, c.replaced, o.pushed FROM sync_outbox o
             JOIN sync_changes c USING (request, replica, counter) ORDER BY o.counter",
        )?
        .query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?),
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let refusable = |hlc: i64| {
        refused_at.is_some_and(|at| Hlc(hlc as u64).ms() as i64 > at + MAX_AHEAD_MS as i64)
    };
    let (restamp, kept): (Vec<_>, Vec<_>) = queued
        .into_iter()
        .partition(|(_, hlc, _, pushed)| !pushed || refusable(*hlc));
    let base = kept.iter().map(|(_, hlc, _, _)| *hlc).fold(sent, i64::max);
    let mut stamps = Clock::new(Hlc(base as u64), 0);
    let mut moved: HashMap<i64, i64> = HashMap::new();
    let mut update = tx.prepare_cached(
        "UPDATE sync_changes SET hlc = ?4, replaced = ?5
         WHERE request = ?1 AND replica = ?2 AND counter = ?3",
    )?;
    for (key, hlc, replaced, _) in &restamp {
        let target = (Hlc(*hlc as u64).ms() as i64).saturating_add(delta);
        let new = stamps.tick(target).0 as i64;
        moved.insert(*hlc, new);
        let replaced = replaced.map(|r| moved.get(&r).copied().unwrap_or(r));
        update.execute(params![key.0, key.1, key.2, new, replaced])?;
    }
    // The clock restarts from what others have seen, not from the wrong stamps it issued.
    save_clock(tx, &Clock::new(stamps.last, offset_ms))?;
    Ok(restamp.len())
}

/// A request's changes with their arrival numbers, decoded: what compaction weighs.
pub fn load_arrived(conn: &Connection, request_id: &RequestId) -> Result<Vec<(Change, u64)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHANGE_COLUMNS}, seq FROM sync_change_rows WHERE request_id = ?1"
    ))?;
    let mut rows = stmt.query([request_id.to_string()])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push((change_from_row(r)?, r.get::<_, i64>(7)? as u64));
    }
    Ok(out)
}

/// Drops the changes that arrived as these numbers (compaction's choice). Needs an index on
/// `seq` (the server has one).
pub fn forget_arrivals(tx: &Transaction, seqs: &[u64]) -> Result<usize> {
    let mut delete = tx.prepare_cached("DELETE FROM sync_changes WHERE seq = ?1")?;
    let mut n = 0;
    for seq in seqs {
        n += delete.execute([*seq as i64])?;
    }
    Ok(n)
}

/// The log's own columns of a change in `sync_changes c`, its names still numbers, in the
/// order [`NumberNames::stored`] reads them.
pub const NUMBERED_COLUMNS: &str =
    "c.request, c.replica, c.counter, c.field, c.value, c.hlc, c.replaced";

/// The names behind the log's numbers, each read once when first met: a reader of many changes
/// of a few requests (the server's feed) looks up a request's id once, not once per change
/// through the `sync_change_rows` view's joins.
#[derive(Default)]
pub struct NumberNames {
    requests: HashMap<i64, RequestId>,
    replicas: HashMap<i64, ReplicaId>,
    fields: HashMap<i64, Field>,
    /// The last request and replica met: a request's changes mostly come one after another.
    last: Option<(i64, RequestId, i64, ReplicaId)>,
}

impl NumberNames {
    /// A change as stored, from a row that starts with [`NUMBERED_COLUMNS`].
    pub fn stored(&mut self, conn: &Connection, r: &rusqlite::Row) -> Result<StoredChange> {
        let (request, replica, field): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(3)?);
        let (request_id, replica) = match &self.last {
            Some((q, id, p, rid)) if *q == request && *p == replica => (*id, rid.clone()),
            _ => {
                let ids = (self.request(conn, request)?, self.replica(conn, replica)?);
                self.last = Some((request, ids.0, replica, ids.1.clone()));
                ids
            }
        };
        if !self.fields.contains_key(&field) {
            // Fields are few: one read learns them all.
            let mut stmt = conn.prepare_cached("SELECT n, name FROM sync_fields")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                if let Some(f) = Field::parse(row.get_ref(1)?.as_str().map_err(stored)?) {
                    self.fields.insert(row.get(0)?, f);
                }
            }
        }
        let field = self
            .fields
            .get(&field)
            .cloned()
            .ok_or_else(|| stored(format!("field number {field}")))?;
        Ok(StoredChange {
            id: ChangeId {
                replica,
                counter: r.get::<_, i64>(2)? as u64,
            },
            request_id,
            field,
            value: serde_json::value::RawValue::from_string(
                r.get_ref(4)?.as_str().map_err(stored)?.to_string(),
            )
            .map_err(stored)?,
            hlc: Hlc(r.get::<_, i64>(5)? as u64),
            replaced: r.get::<_, Option<i64>>(6)?.map(|h| Hlc(h as u64)),
        })
    }

    fn request(&mut self, conn: &Connection, n: i64) -> Result<RequestId> {
        if let Some(id) = self.requests.get(&n) {
            return Ok(*id);
        }
        let text: String = conn
            .prepare_cached("SELECT id FROM sync_requests WHERE n = ?1")?
            .query_row([n], |r| r.get(0))?;
        let id = RequestId::parse(&text).map_err(stored)?;
        self.requests.insert(n, id);
        Ok(id)
    }

    fn replica(&mut self, conn: &Connection, n: i64) -> Result<ReplicaId> {
        if let Some(id) = self.replicas.get(&n) {
            return Ok(id.clone());
        }
        let text: String = conn
            .prepare_cached("SELECT id FROM sync_replicas WHERE n = ?1")?
            .query_row([n], |r| r.get(0))?;
        let id = ReplicaId::parse(&text).ok_or_else(|| stored("replica id"))?;
        self.replicas.insert(n, id.clone());
        Ok(id)
    }
}

/// The change that arrived as number `seq`, as stored (`None`: compacted away). Needs an index
/// on `seq` (the server has one).
pub fn stored_at(conn: &Connection, seq: u64) -> Result<Option<StoredChange>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHANGE_COLUMNS} FROM sync_change_rows WHERE seq = ?1"
    ))?;
    let mut rows = stmt.query([seq as i64])?;
    match rows.next()? {
        Some(r) => Ok(Some(stored_from_row(r)?)),
        None => Ok(None),
    }
}

/// How many changes of `request_id` the log holds.
pub fn count(conn: &Connection, request_id: &RequestId) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM sync_changes
             WHERE request = (SELECT n FROM sync_requests WHERE id = ?1)",
        )?
        .query_row([request_id.to_string()], |r| r.get::<_, i64>(0))? as u64)
}

/// Moves the changes of `request_id` that arrived at or before arrival number `up_to` to the
/// end of the arrival order, as if they arrived again, keeping their order: for a store whose
/// readers follow arrival numbers (the server's cursors) when a request comes into sight of
/// readers that have passed them. Returns how many moved.
pub fn arrive_again(tx: &Transaction, request_id: &RequestId, up_to: u64) -> Result<usize> {
    let Some(n) = request_number(tx, request_id)? else {
        return Ok(0);
    };
    let Local {
        clock,
        counter: mut seq,
        ..
    } = local(tx)?;
    let moving: Vec<(i64, i64)> = tx
        .prepare_cached(
            "SELECT replica, counter FROM sync_changes WHERE request = ?1 AND seq <= ?2
             ORDER BY seq",
        )?
        .query_map(params![n, up_to as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = tx.prepare_cached(
        "UPDATE sync_changes SET seq = ?4 WHERE request = ?1 AND replica = ?2 AND counter = ?3",
    )?;
    for (replica, counter) in &moving {
        seq += 1;
        update.execute(params![n, replica, counter, seq as i64])?;
    }
    save_local(tx, &clock, seq)?;
    Ok(moving.len())
}

/// The highest arrival number in the log (0 when empty).
pub fn last_seq(conn: &Connection) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM sync_changes")?
        .query_row([], |r| r.get::<_, i64>(0))? as u64)
}

/// The arrival numbers after `after_seq` with their requests, in order: what one push added.
pub fn arrivals_after(conn: &Connection, after_seq: u64) -> Result<Vec<(u64, RequestId)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.seq, q.id FROM sync_changes c JOIN sync_requests q ON q.n = c.request
         WHERE c.seq > ?1 ORDER BY c.seq",
    )?;
    let mut rows = stmt.query([after_seq as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: &str = r.get_ref(1)?.as_str().map_err(stored)?;
        out.push((
            r.get::<_, i64>(0)? as u64,
            RequestId::parse(id).map_err(stored)?,
        ));
    }
    Ok(out)
}

/// Changes that arrived after `after_seq`, in arrival order, those `keep` keeps, at most
/// `limit`, as stored (their values not decoded); with the arrival number reached and whether
/// more may follow. Needs an index on `seq` to be fast (the server has one).
pub fn changes_since(
    conn: &Connection,
    after_seq: u64,
    limit: usize,
    mut keep: impl FnMut(&StoredChange) -> bool,
) -> Result<(Vec<StoredChange>, u64, bool)> {
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
        let change = stored_from_row(r)?;
        cursor = r.get::<_, i64>(7)? as u64;
        if keep(&change) {
            out.push(change);
        }
    }
    Ok((out, cursor, scanned == scan))
}
