//! The steps of a push and a pull ([`Tx`]) in PostgreSQL. Each step is one statement where it
//! can be (rows go in as arrays, arrivals come back from the insert), since every statement is
//! a round trip to the database.

use std::collections::HashMap;

use curbside_core::sync::change::Columns;
use curbside_core::sync::{merge, Change, Hlc};
use curbside_core::vocab::{Field, FieldValue, ReplicaId, RequestId};
use postgres::types::ToSql;
use postgres::{Client, Row, Statement, Transaction};

use crate::cursor::LogState;
use crate::scope::{self, RequestScope};
use crate::storage::duplicates::Candidate;
use crate::storage::open311::{
    self, FoundRequest, Param, Post, PriorPost, RequestQuery, StandardTimes,
};
use crate::storage::tx::{
    Arrival, Bbox, Dues, Feed, Known, PhotoEdit, PullContext, ScopeColumns, Tx, R,
};
use crate::ServerError;

/// What a connection keeps between transactions: its prepared statements, by their text, and
/// the replica bindings it has read (a binding never changes, so once read it holds).
#[derive(Default)]
pub struct Cache {
    pub statements: HashMap<&'static str, Statement>,
    owners: HashMap<ReplicaId, String>,
    /// Bindings read in the transaction under way: kept once it commits.
    learned: Vec<(ReplicaId, String)>,
}

/// Bindings a connection remembers at most (then it starts again).
const OWNERS: usize = 100_000;

impl Cache {
    /// The transaction committed: what it read of bindings is settled.
    pub fn committed(&mut self) {
        if self.owners.len() > OWNERS {
            self.owners.clear();
        }
        self.owners.extend(self.learned.drain(..));
    }

    /// The transaction was rolled back: what it read may have been its own.
    pub fn rolled_back(&mut self) {
        self.learned.clear();
    }
}

/// Where statements run: a transaction, or the connection itself (one statement, one snapshot).
enum Session<'t, 'c> {
    Tx(&'t mut Transaction<'c>),
    Plain(&'t mut Client),
}

/// Statements on one connection, with its [`Cache`]. It remembers whether anything was
/// written and whether a statement failed: the writer then knows what a failed write left
/// behind.
pub struct PgTx<'t, 'c> {
    session: Session<'t, 'c>,
    cache: &'t mut Cache,
    wrote: bool,
    broke: bool,
}

impl From<postgres::Error> for ServerError {
    /// The database's message and code, never its detail (which quotes the values concerned).
    fn from(e: postgres::Error) -> Self {
        ServerError::Internal(match e.as_db_error() {
            Some(db) => format!("database: {} ({})", db.message(), db.code().code()),
            None => format!("database: {e}"),
        })
    }
}

/// A change's columns from a row that holds `request_id, replica, counter, field, value, hlc,
/// replaced` from `at` on.
fn columns(r: &Row, at: usize) -> Columns<'_> {
    Columns {
        request_id: r.get(at),
        replica: r.get(at + 1),
        counter: r.get(at + 2),
        field: r.get(at + 3),
        value: r.get(at + 4),
        hlc: r.get(at + 5),
        replaced: r.get(at + 6),
    }
}

fn stored(e: curbside_core::Error) -> ServerError {
    ServerError::Internal(format!("stored change: {e}"))
}

fn arrivals(rows: Vec<Row>) -> R<Vec<Arrival>> {
    let mut out = rows
        .iter()
        .map(|r| {
            let id: &str = r.get(1);
            RequestId::parse(id)
                .map(|id| (r.get::<_, i64>(0) as u64, id))
                .map_err(|e| ServerError::Internal(format!("stored request id: {e}")))
        })
        .collect::<R<Vec<_>>>()?;
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// A request's scope from a row holding `created_by, ward, lat, lon, public` from `at` on.
fn scope_of(r: &Row, at: usize) -> RequestScope {
    RequestScope {
        created_by: r.get(at),
        ward: r.get(at + 1),
        lat: r.get(at + 2),
        lon: r.get(at + 3),
        public: r.get(at + 4),
    }
}

impl<'t, 'c> PgTx<'t, 'c> {
    /// Statements in a transaction.
    pub fn new(tx: &'t mut Transaction<'c>, cache: &'t mut Cache) -> Self {
        PgTx {
            session: Session::Tx(tx),
            cache,
            wrote: false,
            broke: false,
        }
    }

    /// Statements on their own, each its own snapshot: for reads of one statement.
    pub fn plain(client: &'t mut Client, cache: &'t mut Cache) -> Self {
        PgTx {
            session: Session::Plain(client),
            cache,
            wrote: false,
            broke: false,
        }
    }

    /// Whether a write statement ran.
    pub fn wrote(&self) -> bool {
        self.wrote
    }

    /// Whether a statement failed: PostgreSQL refuses the rest of the transaction.
    pub fn broke(&self) -> bool {
        self.broke
    }

    fn failed(&mut self, e: postgres::Error) -> ServerError {
        self.broke = true;
        e.into()
    }

    fn statement(&mut self, sql: &'static str) -> R<Statement> {
        if let Some(s) = self.cache.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = match &mut self.session {
            Session::Tx(tx) => tx.prepare(sql),
            Session::Plain(client) => client.prepare(sql),
        };
        let s = prepared.map_err(|e| self.failed(e))?;
        self.cache.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// Runs a statement that reads.
    pub fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
        let s = self.statement(sql)?;
        let rows = match &mut self.session {
            Session::Tx(tx) => tx.query(&s, params),
            Session::Plain(client) => client.query(&s, params),
        };
        rows.map_err(|e| self.failed(e))
    }

    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> R<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs a statement that writes (and may return rows): only in a transaction (the
    /// writer's, which holds the log's turn).
    pub fn write(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
        if matches!(self.session, Session::Plain(_)) {
            return Err(ServerError::Internal(
                "a write outside a transaction".into(),
            ));
        }
        self.wrote = true;
        self.query(sql, params)
    }

    /// Runs a read whose text is made for it (not kept prepared: its shape varies).
    pub fn query_made(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
        let rows = match &mut self.session {
            Session::Tx(tx) => tx.query(sql, params),
            Session::Plain(client) => client.query(sql, params),
        };
        rows.map_err(|e| self.failed(e))
    }

    /// A value of the `meta` table.
    pub fn meta(&mut self, key: &str) -> R<Option<String>> {
        Ok(self
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> R<()> {
        self.write(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }
}

/// A feed key as the feed table keeps it: 64 bits of its SHA-256.
fn feed_key(key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The `logged` step of a statement: a device's changes, [`ChangeArrays`] as $1 to $7, inserted
/// (those seen before skipped) with their arrival numbers, which it returns with their requests.
macro_rules! logged_changes {
    () => {
        "WITH logged AS (
             INSERT INTO sync_changes
                 (seq, request_id, replica, counter, field, value, hlc, replaced)
             SELECT nextval('arrival_numbers'), c.request_id, c.replica, c.counter, c.field,
                    c.value, c.hlc, c.replaced
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[],
                         $6::int8[], $7::int8[]) WITH ORDINALITY
                  AS c(request_id, replica, counter, field, value, hlc, replaced, n)
             ORDER BY c.n
             ON CONFLICT (request_id, replica, counter) DO NOTHING
             RETURNING seq, request_id)"
    };
}

/// The `counted` step: what `logged` inserted, added to its requests' counts of changes.
/// It also marks them updated at `$now` (Open311's `updated_datetime`), always later than
/// before, if only by a millisecond: a cached public side is kept by that time.
macro_rules! counted {
    ($now:literal) => {
        concat!(
            "counted AS (
             UPDATE requests r SET changes = r.changes + l.n,
                 updated_at = CASE WHEN r.updated_at IS NULL OR r.updated_at < ",
            $now,
            "::int8 THEN ",
            $now,
            "::int8 ELSE r.updated_at + 1 END
             FROM (SELECT request_id, count(*) AS n FROM logged GROUP BY request_id) l
             WHERE r.request_id = l.request_id)"
        )
    };
}

/// A batch of changes as the arrays the log's insert takes ($1 to $7).
struct ChangeArrays<'c> {
    requests: Vec<String>,
    replicas: Vec<&'c str>,
    counters: Vec<i64>,
    fields: Vec<String>,
    values: Vec<String>,
    hlcs: Vec<i64>,
    replaced: Vec<Option<i64>>,
}

impl<'c> ChangeArrays<'c> {
    fn of(changes: &'c [Change]) -> Self {
        ChangeArrays {
            requests: changes.iter().map(|c| c.request_id.to_string()).collect(),
            replicas: changes.iter().map(|c| c.id.replica.as_str()).collect(),
            counters: changes.iter().map(|c| c.id.counter as i64).collect(),
            fields: changes
                .iter()
                .map(|c| c.field().name().into_owned())
                .collect(),
            values: changes.iter().map(|c| c.value.to_json_text()).collect(),
            hlcs: changes.iter().map(|c| c.hlc.0 as i64).collect(),
            replaced: changes
                .iter()
                .map(|c| c.replaced.map(|h| h.0 as i64))
                .collect(),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.requests,
            &self.replicas,
            &self.counters,
            &self.fields,
            &self.values,
            &self.hlcs,
            &self.replaced,
        ]
    }
}

/// Request ids as the text the tables keep.
fn texts(ids: &[RequestId]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn request_id(r: &Row, at: usize) -> R<RequestId> {
    RequestId::parse(r.get(at))
        .map_err(|e| ServerError::Internal(format!("stored request id: {e}")))
}

/// A duplicate candidate from a row of its columns.
fn candidate(r: &Row) -> R<Candidate> {
    Ok(Candidate {
        id: request_id(r, 0)?,
        service_code: r.get(1),
        lat: r.get(2),
        lon: r.get(3),
        accuracy_m: r.get(4),
        created_at_ms: r.get(5),
    })
}

impl Tx for PgTx<'_, '_> {
    fn replica_owners(&mut self, replicas: &[&ReplicaId]) -> R<HashMap<ReplicaId, String>> {
        let mut out = HashMap::new();
        let mut unknown = Vec::new();
        for r in replicas {
            match self.cache.owners.get(*r) {
                Some(owner) => {
                    out.insert((*r).clone(), owner.clone());
                }
                None => unknown.push(r.as_str()),
            }
        }
        if unknown.is_empty() {
            return Ok(out);
        }
        let rows = self.query(
            "SELECT replica, device_id FROM replicas WHERE replica = ANY($1)",
            &[&unknown],
        )?;
        for r in &rows {
            if let Some(replica) = ReplicaId::parse(r.get(0)) {
                let owner: String = r.get(1);
                self.cache.learned.push((replica.clone(), owner.clone()));
                out.insert(replica, owner);
            }
        }
        Ok(out)
    }

    fn replicas_of(&mut self, device_id: &str) -> R<Vec<ReplicaId>> {
        let rows = self.query(
            "SELECT replica FROM replicas WHERE device_id = $1",
            &[&device_id],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| ReplicaId::parse(r.get(0)))
            .collect())
    }

    fn bind_replicas(&mut self, replicas: &[&ReplicaId], device_id: &str) -> R<()> {
        let ids: Vec<&str> = replicas.iter().map(|r| r.as_str()).collect();
        self.write(
            "INSERT INTO replicas (replica, device_id) SELECT unnest($1::text[]), $2",
            &[&ids, &device_id],
        )?;
        Ok(())
    }

    fn known(&mut self, ids: &[RequestId], _count: bool) -> R<HashMap<RequestId, Known>> {
        let rows = self.query(
            "SELECT r.request_id, r.created_by, r.ward, r.lat, r.lon, r.public,
                    r.service_request_id,
                    r.changes, r.acknowledged_at IS NOT NULL
             FROM requests r WHERE r.request_id = ANY($1)",
            &[&texts(ids)],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    request_id(r, 0)?,
                    Known {
                        scope: scope_of(r, 1),
                        number: r.get(6),
                        changes: r.get::<_, i64>(7) as u64,
                        acknowledged: r.get(8),
                    },
                ))
            })
            .collect()
    }

    fn number(&mut self, ids: &[(RequestId, Dues)], device_id: &str, now_ms: i64) -> R<Vec<i64>> {
        let acknowledge: Vec<Option<i64>> = ids.iter().map(|(_, d)| d.acknowledge).collect();
        let resolve: Vec<Option<i64>> = ids.iter().map(|(_, d)| d.resolve).collect();
        let only: Vec<RequestId> = ids.iter().map(|(id, _)| *id).collect();
        let rows = self.write(
            "INSERT INTO requests
                 (request_id, service_request_id, created_by, created_at,
                  acknowledge_due, resolve_due)
             SELECT t.id, nextval('request_numbers'), $2, $3, t.ack, t.res
             FROM unnest($1::text[], $4::int8[], $5::int8[]) WITH ORDINALITY
                  AS t(id, ack, res, n) ORDER BY t.n
             RETURNING request_id, service_request_id",
            &[&texts(&only), &device_id, &now_ms, &acknowledge, &resolve],
        )?;
        let ids = &only;
        let numbers: HashMap<RequestId, i64> = rows
            .iter()
            .map(|r| Ok((request_id(r, 0)?, r.get(1))))
            .collect::<R<_>>()?;
        Ok(ids
            .iter()
            .map(|id| numbers.get(id).copied().unwrap_or_default())
            .collect())
    }

    fn record_own(&mut self, values: &[(RequestId, FieldValue)], now_ms: i64) -> R<Vec<Arrival>> {
        let ids: Vec<String> = values.iter().map(|(id, _)| id.to_string()).collect();
        let fields: Vec<String> = values
            .iter()
            .map(|(_, v)| v.field().name().into_owned())
            .collect();
        let texts: Vec<String> = values.iter().map(|(_, v)| v.to_json_text()).collect();
        // The server's replica is every instance's: its counter is a sequence they share.
        let rows = self.write(
            concat!(
                "WITH logged AS (
             INSERT INTO sync_changes (seq, request_id, replica, counter, field, value, hlc)
             SELECT nextval('arrival_numbers'), v.request_id, m.value, nextval('own_counter'),
                    v.field, v.value, $4
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                  AS v(request_id, field, value, n)
             CROSS JOIN meta m WHERE m.key = 'replica_id'
             ORDER BY v.n
             RETURNING seq, request_id), ",
                counted!("$5"),
                " SELECT seq, request_id FROM logged"
            ),
            &[
                &ids,
                &fields,
                &texts,
                &(Hlc::new(now_ms.max(0) as u64, 0).0 as i64),
                &now_ms,
            ],
        )?;
        arrivals(rows)
    }

    fn apply(&mut self, changes: &[Change], now_ms: i64) -> R<Vec<Arrival>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let c = ChangeArrays::of(changes);
        let mut params = c.params();
        params.push(&now_ms);
        let rows = self.write(
            concat!(
                logged_changes!(),
                ", ",
                counted!("$8"),
                " SELECT seq, request_id FROM logged"
            ),
            &params,
        )?;
        arrivals(rows)
    }

    /// Logged, counted, filed and marked as arrived in one statement.
    fn apply_filed(
        &mut self,
        changes: &[Change],
        keys: &[(RequestId, String)],
        now_ms: i64,
    ) -> R<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let c = ChangeArrays::of(changes);
        let of: Vec<String> = keys.iter().map(|(id, _)| id.to_string()).collect();
        let hashed: Vec<i64> = keys.iter().map(|(_, k)| feed_key(k)).collect();
        let mut params = c.params();
        params.extend([&of as &(dyn ToSql + Sync), &hashed, &now_ms]);
        self.write(
            concat!(
                logged_changes!(),
                ", ",
                counted!("$10"),
                ",
             filed AS (
                 INSERT INTO feed (key, seq)
                 SELECT k.key, l.seq FROM logged l
                 JOIN unnest($8::text[], $9::int8[]) AS k(request_id, key)
                   ON k.request_id = l.request_id
                 ON CONFLICT DO NOTHING)
             INSERT INTO arrivals (seq, at_ms) SELECT max(seq), $10 FROM logged
             HAVING max(seq) IS NOT NULL
             ON CONFLICT (seq) DO UPDATE SET at_ms = excluded.at_ms"
            ),
            &params,
        )?;
        Ok(())
    }

    fn photo_refs(&mut self, edits: &[PhotoEdit], device_id: &str) -> R<()> {
        // In push order, the last edit of a reference is what holds (removed, then attached
        // again: attached).
        let mut last: HashMap<(&str, RequestId), bool> = HashMap::new();
        for e in edits {
            last.insert((e.sha256.as_str(), e.request_id), e.present);
        }
        for present in [true, false] {
            let (shas, ids): (Vec<&str>, Vec<String>) = last
                .iter()
                .filter(|(_, p)| **p == present)
                .map(|((sha, id), _)| (*sha, id.to_string()))
                .unzip();
            if shas.is_empty() {
                continue;
            }
            let sql = if present {
                "INSERT INTO photo_refs (sha256, request_id, device_id)
                 SELECT s, r, $3 FROM unnest($1::text[], $2::text[]) AS t(s, r)
                 ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM photo_refs p USING unnest($1::text[], $2::text[]) AS t(s, r)
                 WHERE p.sha256 = t.s AND p.request_id = t.r AND p.device_id = $3"
            };
            self.write(sql, &[&shas, &ids, &device_id])?;
        }
        Ok(())
    }

    fn load(
        &mut self,
        ids: &[RequestId],
        fields: Option<&[Field]>,
    ) -> R<HashMap<RequestId, Vec<Change>>> {
        let ids = texts(ids);
        let rows = match fields {
            Some(fields) => {
                let names: Vec<String> = fields.iter().map(|f| f.name().into_owned()).collect();
                self.query(
                    "SELECT request_id, replica, counter, field, value, hlc, replaced
                     FROM sync_changes WHERE request_id = ANY($1) AND field = ANY($2)",
                    &[&ids, &names],
                )?
            }
            None => self.query(
                "SELECT request_id, replica, counter, field, value, hlc, replaced
                 FROM sync_changes WHERE request_id = ANY($1)",
                &[&ids],
            )?,
        };
        let mut out: HashMap<RequestId, Vec<Change>> = HashMap::new();
        for r in &rows {
            let c = columns(r, 0).change().map_err(stored)?;
            out.entry(c.request_id).or_default().push(c);
        }
        for changes in out.values_mut() {
            merge::sort(changes);
        }
        Ok(out)
    }

    fn set_scopes(&mut self, scopes: &[(RequestId, ScopeColumns)], now_ms: i64) -> R<()> {
        let ids: Vec<String> = scopes.iter().map(|(id, _)| id.to_string()).collect();
        let lats: Vec<Option<f64>> = scopes.iter().map(|(_, s)| s.lat).collect();
        let lons: Vec<Option<f64>> = scopes.iter().map(|(_, s)| s.lon).collect();
        let wards: Vec<Option<&str>> = scopes.iter().map(|(_, s)| s.ward.as_deref()).collect();
        let statuses: Vec<&str> = scopes.iter().map(|(_, s)| s.status).collect();
        let public: Vec<bool> = scopes.iter().map(|(_, s)| s.public).collect();
        let cells: Vec<Option<&str>> = scopes.iter().map(|(_, s)| s.cell.as_deref()).collect();
        let services: Vec<Option<&str>> = scopes
            .iter()
            .map(|(_, s)| s.service_code.as_deref())
            .collect();
        let accuracies: Vec<Option<f64>> = scopes.iter().map(|(_, s)| s.accuracy_m).collect();
        self.write(
            "UPDATE requests r
             SET lat = v.lat, lon = v.lon, ward = v.ward, status = v.status, public = v.public,
                 cell = v.cell, service_code = COALESCE(v.service, r.service_code),
                 accuracy = v.accuracy,
                 closed_at = CASE WHEN v.status IN ('completed', 'cancelled')
                                  THEN COALESCE(r.closed_at, $10) END
             FROM unnest($1::text[], $2::float8[], $3::float8[], $4::text[], $5::text[],
                         $6::bool[], $7::text[], $8::text[], $9::float8[])
                  AS v(id, lat, lon, ward, status, public, cell, service, accuracy)
             WHERE r.request_id = v.id",
            &[
                &ids,
                &lats,
                &lons,
                &wards,
                &statuses,
                &public,
                &cells,
                &services,
                &accuracies,
                &now_ms,
            ],
        )?;
        Ok(())
    }

    fn acknowledge(&mut self, ids: &[RequestId], now_ms: i64) -> R<()> {
        self.write(
            "UPDATE requests SET acknowledged_at = $2
             WHERE request_id = ANY($1) AND acknowledged_at IS NULL",
            &[&texts(ids), &now_ms],
        )?;
        Ok(())
    }

    fn arrive_again(&mut self, request_id: &RequestId, up_to: u64) -> R<Vec<Arrival>> {
        let old: Vec<i64> = self
            .query(
                "SELECT seq FROM sync_changes WHERE request_id = $1 AND seq <= $2 ORDER BY seq",
                &[&request_id.to_string(), &(up_to as i64)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if old.is_empty() {
            return Ok(Vec::new());
        }
        // A run of new numbers, in the old order. Only one writer holds the log's turn, so
        // nobody else draws from the sequence meanwhile.
        let rows = self.write(
            "WITH n AS (SELECT nextval('arrival_numbers') AS first)
             SELECT first, setval('arrival_numbers', first + $1 - 1) FROM n",
            &[&(old.len() as i64)],
        )?;
        let first: i64 = rows.first().map(|r| r.get(0)).unwrap_or_default();
        let new: Vec<i64> = (first..first + old.len() as i64).collect();
        let rows = self.write(
            "UPDATE sync_changes c SET seq = m.new
             FROM unnest($1::int8[], $2::int8[]) AS m(old, new)
             WHERE c.seq = m.old
             RETURNING c.seq, c.request_id",
            &[&old, &new],
        )?;
        arrivals(rows)
    }

    fn file(&mut self, entries: &[(String, u64)], now_ms: i64) -> R<()> {
        let keys: Vec<i64> = entries.iter().map(|(k, _)| feed_key(k)).collect();
        let seqs: Vec<i64> = entries.iter().map(|(_, s)| *s as i64).collect();
        self.write(
            "WITH filed AS (
                 INSERT INTO feed (key, seq) SELECT * FROM unnest($1::int8[], $2::int8[])
                 ON CONFLICT DO NOTHING)
             INSERT INTO arrivals (seq, at_ms) SELECT max(seq), $3 FROM sync_changes
             HAVING max(seq) IS NOT NULL
             ON CONFLICT (seq) DO UPDATE SET at_ms = excluded.at_ms",
            &[&keys, &seqs, &now_ms],
        )?;
        Ok(())
    }

    fn arrived_by(&mut self, at_ms: i64) -> R<Option<u64>> {
        let seq: Option<i64> = self
            .query_opt("SELECT max(seq) FROM arrivals WHERE at_ms <= $1", &[&at_ms])?
            .and_then(|r| r.get(0));
        if let Some(seq) = seq {
            self.write("DELETE FROM arrivals WHERE seq < $1", &[&seq])?;
        }
        Ok(seq.map(|s| s as u64))
    }

    fn requests_after(&mut self, after: Option<&RequestId>, limit: usize) -> R<Vec<RequestId>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let rows = self.query(
            "SELECT request_id FROM requests WHERE request_id > $1 ORDER BY request_id LIMIT $2",
            &[&after, &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| RequestId::parse(r.get(0)).ok())
            .collect())
    }

    fn load_arrived(&mut self, request_id: &RequestId) -> R<Vec<(Change, u64)>> {
        let rows = self.query(
            "SELECT request_id, replica, counter, field, value, hlc, replaced, seq
             FROM sync_changes WHERE request_id = $1",
            &[&request_id.to_string()],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    columns(r, 0).change().map_err(stored)?,
                    r.get::<_, i64>(7) as u64,
                ))
            })
            .collect()
    }

    fn forget(&mut self, seqs: &[u64]) -> R<()> {
        let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
        self.write("DELETE FROM sync_changes WHERE seq = ANY($1)", &[&seqs])?;
        Ok(())
    }

    fn note_compaction(&mut self, reached: u64) -> R<()> {
        self.write(
            "INSERT INTO meta (key, value) VALUES ('compacted_seq', $1::int8::text)
             ON CONFLICT (key) DO UPDATE
             SET value = greatest(meta.value::int8, excluded.value::int8)::text",
            &[&(reached as i64)],
        )?;
        self.write(
            "INSERT INTO meta (key, value) VALUES ('compactions', '1')
             ON CONFLICT (key) DO UPDATE SET value = (meta.value::int8 + 1)::text",
            &[],
        )?;
        Ok(())
    }

    fn pull_context(&mut self, device_id: &str, places: bool) -> R<PullContext> {
        let row = self
            .query_opt(
                "SELECT (SELECT value FROM meta WHERE key = 'server_id'),
                    (SELECT value FROM meta WHERE key = 'compacted_seq'),
                    (SELECT value FROM meta WHERE key = 'compactions'),
                    (SELECT COALESCE(max(seq), 0) FROM sync_changes),
                    ARRAY(SELECT replica FROM replicas WHERE device_id = $1),
                    p.lats, p.lons
             FROM (SELECT array_agg(lat ORDER BY created_at DESC, request_id) AS lats,
                          array_agg(lon ORDER BY created_at DESC, request_id) AS lons
                   FROM (SELECT lat, lon, created_at, request_id FROM requests
                         WHERE $2 AND created_by = $1 AND lat IS NOT NULL
                         ORDER BY created_at DESC LIMIT $3) q) p",
                &[&device_id, &places, &(scope::MAX_PLACES as i64)],
            )?
            .ok_or_else(|| ServerError::Internal("the log's state is missing".into()))?;
        let number = |i: usize| -> u64 {
            row.get::<_, Option<&str>>(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let replicas: Vec<String> = row.get(4);
        let lats: Option<Vec<f64>> = row.get(5);
        let lons: Option<Vec<f64>> = row.get(6);
        Ok(PullContext {
            state: LogState {
                server_id: row.get::<_, Option<String>>(0).unwrap_or_default(),
                compacted_seq: number(1),
                compactions: number(2),
            },
            end: row.get::<_, i64>(3) as u64,
            places: lats
                .unwrap_or_default()
                .into_iter()
                .zip(lons.unwrap_or_default())
                .collect(),
            own: replicas
                .iter()
                .filter_map(|r| ReplicaId::parse(r))
                .collect(),
        })
    }

    fn scope_rows(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, RequestScope>> {
        let rows = self.query(
            "SELECT request_id, created_by, ward, lat, lon, public FROM requests
             WHERE request_id = ANY($1)",
            &[&texts(ids)],
        )?;
        rows.iter()
            .map(|r| Ok((request_id(r, 0)?, scope_of(r, 1))))
            .collect()
    }

    fn places(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, (f64, f64)>> {
        let rows = self.query(
            "SELECT request_id, lat, lon FROM requests
             WHERE request_id = ANY($1) AND lat IS NOT NULL",
            &[&texts(ids)],
        )?;
        rows.iter()
            .map(|r| Ok((request_id(r, 0)?, (r.get(1), r.get(2)))))
            .collect()
    }

    fn open_near(&mut self, cells: &[String], not_by: &str, limit: usize) -> R<Vec<RequestId>> {
        let rows = self.query(
            "SELECT request_id FROM requests
             WHERE cell = ANY($1) AND public AND status NOT IN ('completed', 'cancelled')
               AND created_by <> $2
             LIMIT $3",
            &[&cells, &not_by, &(limit as i64)],
        )?;
        rows.iter().map(|r| request_id(r, 0)).collect()
    }

    /// Each key's feed read from its index (the entries only, not the changes) up to a limit
    /// of its own; the union is complete up to the lowest last entry among keys that reached
    /// their limit, and cut to `limit`; then the changes of those entries, by their numbers.
    /// At most about `limit + keys × 256` index entries, however much is filed.
    fn duplicate_subjects(&mut self, ids: &[RequestId]) -> R<Vec<Candidate>> {
        let rows = self.query(
            "SELECT request_id, service_code, lat, lon, accuracy, created_at FROM requests
             WHERE request_id = ANY($1) AND lat IS NOT NULL AND service_code IS NOT NULL",
            &[&texts(ids)],
        )?;
        rows.iter().map(candidate).collect()
    }

    fn duplicate_candidates(
        &mut self,
        cells: &[String],
        service_code: &str,
        ((lat0, lat1), (lon0, lon1)): Bbox,
        since_ms: i64,
        not: &RequestId,
        limit: usize,
    ) -> R<Vec<Candidate>> {
        let rows = self.query(
            "SELECT request_id, service_code, lat, lon, accuracy, created_at FROM requests
             WHERE cell = ANY($1) AND service_code = $2 AND lat BETWEEN $6 AND $7
               AND lon BETWEEN $8 AND $9 AND public
               AND status NOT IN ('completed', 'cancelled') AND created_at >= $3
               AND request_id <> $4
             LIMIT $5",
            &[
                &cells,
                &service_code,
                &since_ms,
                &not.to_string(),
                &(limit as i64),
                &lat0,
                &lat1,
                &lon0,
                &lon1,
            ],
        )?;
        rows.iter().map(candidate).collect()
    }

    fn record_duplicates(&mut self, found: &[(RequestId, RequestId, f64)]) -> R<()> {
        let ids: Vec<String> = found.iter().map(|(id, _, _)| id.to_string()).collect();
        let others: Vec<String> = found.iter().map(|(_, o, _)| o.to_string()).collect();
        let metres: Vec<f64> = found.iter().map(|(_, _, m)| *m).collect();
        self.write(
            "INSERT INTO likely_duplicates (request_id, other_id, distance_m)
             SELECT * FROM unnest($1::text[], $2::text[], $3::float8[])
             ON CONFLICT (request_id, other_id) DO UPDATE SET distance_m = excluded.distance_m",
            &[&ids, &others, &metres],
        )?;
        Ok(())
    }

    fn likely_duplicates(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, Vec<(i64, f64)>>> {
        let rows = self.query(
            "SELECT d.request_id, r.service_request_id, d.distance_m FROM likely_duplicates d
             JOIN requests r ON r.request_id = d.other_id
             WHERE d.request_id = ANY($1) AND r.public ORDER BY d.distance_m",
            &[&texts(ids)],
        )?;
        let mut out: HashMap<RequestId, Vec<(i64, f64)>> = HashMap::new();
        for r in &rows {
            out.entry(request_id(r, 0)?)
                .or_default()
                .push((r.get(1), r.get(2)));
        }
        Ok(out)
    }

    fn prior_post(&mut self, key_id: &str, idempotency_key: &str) -> R<Option<PriorPost>> {
        Ok(self
            .query_opt(
                "SELECT p.fingerprint, r.service_request_id, p.token FROM open311_posts p
                 JOIN requests r ON r.request_id = p.request_id
                 WHERE p.key_id = $1 AND p.idempotency_key = $2",
                &[&key_id, &idempotency_key],
            )?
            .map(|r| PriorPost {
                fingerprint: r.get(0),
                service_request_id: r.get(1),
                token: r.get(2),
            }))
    }

    fn save_post(&mut self, p: &Post) -> R<()> {
        self.write(
            "INSERT INTO open311_posts
                 (request_id, key_id, idempotency_key, fingerprint, token, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &p.request_id.to_string(),
                &p.key_id,
                &p.idempotency_key,
                &p.fingerprint,
                &p.token,
                &p.now_ms,
            ],
        )?;
        Ok(())
    }

    fn find_requests(&mut self, q: &RequestQuery) -> R<Vec<FoundRequest>> {
        let (sql, found_params) = open311::query_sql(q, |n| format!("${n}"));
        let boxed: Vec<Box<dyn ToSql + Sync>> = found_params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync> {
                match p {
                    Param::Int(n) => Box::new(n),
                    Param::Real(x) => Box::new(x),
                    Param::Text(t) => Box::new(t),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self.query_made(&sql, &refs)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(FoundRequest {
                request_id: request_id(&r, 0)?,
                number: r.get(1),
                ward: r.get(2),
                created_at_ms: r.get(3),
                updated_at_ms: r.get(4),
                standard: StandardTimes {
                    acknowledge_due_ms: r.get(5),
                    resolve_due_ms: r.get(6),
                    acknowledged_at_ms: r.get(7),
                    closed_at_ms: r.get(8),
                },
                changes: Vec::new(),
                likely_duplicates: Vec::new(),
                duplicate_of: None,
            });
        }
        Ok(out)
    }

    fn feed(&mut self, keys: &[String], after: u64, limit: usize) -> R<Feed> {
        let per_key = if keys.len() <= 4 {
            limit
        } else {
            (limit / keys.len()).max(256).min(limit)
        };
        let rows = self.query(
            "WITH f AS (
                 SELECT k.i, s.seq
                 FROM unnest($1::int8[]) WITH ORDINALITY AS k(key, i)
                 CROSS JOIN LATERAL (
                     SELECT seq FROM feed WHERE feed.key = k.key AND feed.seq > $2
                     ORDER BY seq LIMIT $3) s),
             horizon AS (
                 SELECT min(last) AS h
                 FROM (SELECT max(seq) AS last FROM f GROUP BY i HAVING count(*) = $3) filled),
             picked AS (
                 SELECT DISTINCT f.seq FROM f, horizon WHERE horizon.h IS NULL OR f.seq <= horizon.h
                 ORDER BY f.seq LIMIT $4)
             SELECT p.seq, (SELECT h FROM horizon),
                    c.request_id, c.replica, c.counter, c.field, c.value, c.hlc, c.replaced
             FROM picked p LEFT JOIN sync_changes c ON c.seq = p.seq
             ORDER BY p.seq",
            &[
                &keys.iter().map(|k| feed_key(k)).collect::<Vec<_>>(),
                &(after as i64),
                &(per_key as i64),
                &(limit as i64),
            ],
        )?;
        let Some(last) = rows.last().map(|r| r.get::<_, i64>(0) as u64) else {
            return Ok(Feed {
                reached: after,
                exhausted: true,
                ..Feed::default()
            });
        };
        let horizon: Option<i64> = rows[0].get(1);
        let (reached, exhausted) = match horizon {
            _ if rows.len() == limit => (last, false),
            Some(h) => ((h as u64).max(last), false),
            None => (last, true),
        };
        let mut changes = Vec::with_capacity(rows.len());
        for r in &rows {
            // An entry whose change has moved on (it arrived again) or was compacted.
            if r.get::<_, Option<&str>>(2).is_some() {
                changes.push((
                    r.get::<_, i64>(0) as u64,
                    columns(r, 2).stored().map_err(stored)?,
                ));
            }
        }
        Ok(Feed {
            changes,
            reached,
            covered: rows.len(),
            exhausted,
        })
    }
}
